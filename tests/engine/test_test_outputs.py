"""What test.sh writes and refuses (docs/RELIABILITY.md): every file it writes is inside
its run folder, a failed run leaves no run folder behind, bad flags are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.engine import checkpoint as ckpt_io
from avsbench.models import registry
from avsbench.models.registry import build_model_for

TINY = ["--image_size", "64", "--num_workers", "0", "--device", "cpu"]
OFFICIAL = ["--visual_backbone", "resnet18"]  # keys read as the published ResNet-50


def tiny_config(**changes: object) -> C.Config:
    cfg = registry.synthetic(registry.preset("s4"))
    return C.override(cfg, {"data.image_size": 64, "model.arch.decoder_channels": 16, **changes})


@pytest.fixture(scope="module")
def project_ckpt(tmp_path_factory) -> Path:
    """A project checkpoint of a tiny random S4 model, trained (as recorded) with the
    random VGGish of --synthetic."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model_for(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "S4_best.pth"
    ckpt = ckpt_io.make_checkpoint(
        model.state_dict(), C.to_dict(cfg), epoch=0, best_miou=0.0, history=[], with_rng=False
    )
    ckpt_io.atomic_save(ckpt, path)
    return path


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_every_file_test_sh_writes_is_inside_its_run_folder(tmp_path, s4_toy, project_ckpt,
                                                            monkeypatch):  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _files(tmp_path) | _files(s4_toy)
    status = cmd_test.main("s4", ["--synthetic", "--data_root", str(s4_toy), "--weights",
                                  str(project_ckpt), *TINY, "--log_dir", str(tmp_path / "logs"),
                                  "--save_pred_mask", "--report"])  # fmt: skip
    assert status == 0
    (run,) = (tmp_path / "logs").iterdir()
    new = (_files(tmp_path) | _files(s4_toy)) - before
    assert new and all(p.is_relative_to(run) for p in new), sorted(new - _files(run))
    assert (run / "metrics.json") in new and any(p.parent.name == "report" for p in new)


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory) -> Path:
    """The same kind of tiny model as an official flat state dict (holds no VGGish)."""
    from avsbench.models.tpavi.official_names import to_official_state_dict

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("official") / "official.pth"
    torch.save(to_official_state_dict(build_model_for(tiny_config())), path)
    return path


def _test(s4_toy, weights, logs, *extra) -> int:
    return cmd_test.main("s4", ["--synthetic", "--data_root", str(s4_toy), "--weights",
                                str(weights), *TINY, "--log_dir", str(logs), *extra])  # fmt: skip


def test_an_official_checkpoint_never_runs_with_a_random_vggish(tmp_path, s4_toy, official_ckpt,
                                                                vggish_file, capsys):  # fmt: skip
    logs = tmp_path / "logs"
    assert _test(s4_toy, official_ckpt, logs, *OFFICIAL) == 2
    err = capsys.readouterr().err
    assert "the checkpoint holds no VGGish weights" in err and "--vggish_weights PATH" in err
    assert "Traceback" not in err
    assert not logs.exists() or not any(logs.iterdir())  # no run folder left behind

    out = tmp_path / "m.json"
    status = _test(s4_toy, official_ckpt, logs, *OFFICIAL, "--vggish_weights", str(vggish_file),
                   "--out_json", str(out))  # fmt: skip
    assert status == 0
    assert json.loads(out.read_text())["vggish"] == {
        "source": "flag", "weights": str(vggish_file), "pca": None
    }  # fmt: skip


def test_metrics_say_a_checkpoint_trained_with_a_random_vggish_used_one(tmp_path, s4_toy,
                                                                        project_ckpt):  # fmt: skip
    out = tmp_path / "m.json"
    assert _test(s4_toy, project_ckpt, tmp_path / "logs", "--out_json", str(out)) == 0
    assert json.loads(out.read_text())["vggish"]["source"] == "random"


def test_a_new_training_run_needs_vggish_weights_unless_synthetic():
    from avsbench.checkpoints import CheckpointError, choose_vggish

    cfg = registry.preset("s4")  # VGGish file None
    assert choose_vggish(None, cfg, synthetic=True).source == "random"
    with pytest.raises(CheckpointError, match="no VGGish weights are configured"):
        choose_vggish(None, cfg)
    with pytest.raises(CheckpointError, match="VGGish weights not found: /nowhere/v.pth"):
        choose_vggish(None, C.override(cfg, {"model.vggish_weights": "/nowhere/v.pth"}))


def test_swap_audio_runs_and_records_whose_audio_each_clip_got(tmp_path, s4_toy, project_ckpt):
    """test.sh --swap_audio (scripts/demo.sh's second test): the samples carry the donor
    clip's id beside the base keys, which are not model inputs."""
    own, swapped = tmp_path / "own.json", tmp_path / "swapped.json"
    assert _test(s4_toy, project_ckpt, tmp_path / "logs", "--out_json", str(own)) == 0
    status = _test(s4_toy, project_ckpt, tmp_path / "logs", "--swap_audio",
                   "--out_json", str(swapped))  # fmt: skip
    assert status == 0
    a, b = json.loads(own.read_text()), json.loads(swapped.read_text())
    assert (a["swap_audio"], b["swap_audio"]) == (False, True)
    assert a["num_clips"] == b["num_clips"] and set(a["metrics"]) == set(b["metrics"])
