"""`checkpoints.load` on every kind: a project checkpoint of a tiny run, official TPAVI state
dicts of all six published layouts (with and without `module.`), hostile and broken files."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from avsbench import checkpoints
from avsbench import config as C
from avsbench.commands import train as cmd_train
from avsbench.data.synthetic import make_toy_data
from avsbench.engine.checkpoint import atomic_save, make_checkpoint
from avsbench.models import registry
from avsbench.models.registry import build_model_for
from avsbench.models.tpavi.official_names import to_official_state_dict
from tests.golden_files import read_tsv
from tests.state_dict_files import compact_state_dict

UNUSED = re.compile(r"^(module\.)?resnet\.layer[34]_2\.")
LAYOUTS = {  # tsv -> (setting, backbone, prefix); three with the DataParallel prefix
    "avs_s4_resnet.tsv": ("s4", "resnet50", ""),
    "avs_ms3_resnet.tsv": ("ms3", "resnet50", "module."),
    "avss_resnet.tsv": ("avss", "resnet50", "module."),
    "avs_s4_pvt.tsv": ("s4", "pvt_v2_b5", "module."),
    "avs_ms3_pvt.tsv": ("ms3", "pvt_v2_b5", ""),
    "avss_pvt.tsv": ("avss", "pvt_v2_b5", ""),
}


def _tiny_config() -> C.Config:
    return C.override(
        registry.synthetic(registry.preset("s4")),
        {"data.image_size": 64, "model.arch.decoder_channels": 16},
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Iterator[Path]:
    """`<session>_best.pth` of a two-step S4 run on a tiny synthetic dataset (the run's
    200 MB of data and checkpoints are removed when this module's tests are done)."""
    base = tmp_path_factory.mktemp("ckpt_run")
    make_toy_data(base, seed=0, scale=0.05, settings=("s4",), num_categories=3)
    argv = ["--synthetic", "--data_root", str(base / "Single-source"), "--log_dir",
            str(base / "logs"), "--image_size", "64", "--decoder_channels", "16",
            "--train_batch_size", "2", "--val_batch_size", "2", "--max_epoches", "1",
            "--max_steps_per_epoch", "2", "--num_workers", "0", "--device", "cpu"]  # fmt: skip
    assert cmd_train.main("s4", argv) == 0
    (best,) = (base / "logs").glob("S4_*/checkpoints/S4_best.pth")
    yield best
    shutil.rmtree(base)


@pytest.mark.slow
def test_project_checkpoint_of_a_tiny_run(tiny_run):
    stored = torch.load(tiny_run, weights_only=True)
    loaded = checkpoints.load(tiny_run)
    assert loaded.report.kind == "project" and loaded.report.loaded == len(stored["model"])
    assert loaded.config == C.override(registry.config_from_dict(stored["config"]), {})
    assert loaded.config.model.backbone_weights is None and loaded.vggish_state is None
    assert loaded.raw["epoch"] == 0 and loaded.report.vggish == "random (no file)"
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, stored["model"][key]), key

    # the user's config gives the data root; flags may change what is not the architecture
    base = C.override(registry.synthetic(registry.preset("s4")), {"data.root": "/data/S4"})
    again = checkpoints.load(
        tiny_run,
        base_config=base,
        overrides={"model.arch.tpavi_dense": True, "runtime.amp": "bf16"},
    )
    assert again.config.data.root == "/data/S4" and again.config.runtime.amp == "bf16"
    assert again.config.model.arch.tpavi_dense and again.config.model.arch.decoder_channels == 16
    with pytest.raises(checkpoints.CheckpointError, match="decoder_channels: checkpoint 16"):
        checkpoints.load(tiny_run, overrides={"model.arch.decoder_channels": 32})
    with pytest.raises(checkpoints.CheckpointError, match="holds an S4 model, not MS3: use "
                       "avs_scripts/avs_s4/"):  # fmt: skip
        checkpoints.load(tiny_run, expect_setting="ms3")
    with pytest.raises(checkpoints.CheckpointError, match="expected an official AVSBench"):
        checkpoints.load(tiny_run, kinds=("official_tpavi",))

    # into: the caller's model (an MS3 run initialised from an S4 model, as published)
    ms3 = build_model_for(C.override(_tiny_config(), {"model.setting": "ms3"}))
    init = checkpoints.load(tiny_run, into=ms3, what="--trained_s4_model_path file")
    assert init.model is ms3 and init.config.model.setting == "s4"
    assert torch.equal(
        ms3.decoder.output_conv[4].weight, stored["model"]["decoder.output_conv.4.weight"]
    )
    wider = build_model_for(C.override(_tiny_config(), {"model.arch.decoder_channels": 32}))
    with pytest.raises(checkpoints.CheckpointError, match=r"--weights file .*S4_best.pth: the "
                       r"checkpoint does not fit this model:\n  shape mismatches"):  # fmt: skip
        checkpoints.load(tiny_run, into=wider, what="--weights file")


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_official_state_dicts_load_with_the_architecture_read_off_the_keys(layout, tmp_path):
    setting, backbone, prefix = LAYOUTS[layout]
    # distinct values per tensor in a 2 MB file (tests/state_dict_files.py); a file of the
    # published size goes through the test command in tests/engine/test_evaluation.py
    sd = {prefix + k: v for k, v in compact_state_dict(read_tsv(layout), seed=3).items()}
    path = tmp_path / "official.pth"
    torch.save(sd, path)
    # keys cannot tell S4 from MS3: MS3 says which it wants, S4 is the default
    loaded = checkpoints.load(path, expect_setting="ms3" if setting == "ms3" else None)
    m = loaded.config.model
    assert loaded.report.kind == "official_tpavi" and loaded.report.stripped_prefix == prefix
    assert (m.setting, m.backbone, m.arch.tpavi_stages) == (setting, backbone, (0, 1, 2, 3))
    classes = C.SETTINGS[setting].num_classes
    assert (m.num_classes, m.arch.align_bias) == (classes, setting != "avss")
    assert m.arch.decoder_channels == 256 and m.backbone_weights is None
    dropped = sorted(k for k in sd if UNUSED.match(k))
    assert sorted(loaded.report.dropped) == [k.removeprefix(prefix) for k in dropped]
    assert loaded.report.loaded == len(sd) - len(dropped) == len(loaded.model.state_dict())
    back = to_official_state_dict(loaded.model, prefix=prefix)
    for key, value in sd.items():
        if not UNUSED.match(key):
            assert torch.equal(back[key], value), key
    if setting == "s4":
        with pytest.raises(checkpoints.CheckpointError, match="holds an S4 model, not AVSS"):
            checkpoints.load(path, expect_setting="avss")


def test_a_small_official_state_dict_needs_no_flags_but_its_backbone(tmp_path):
    torch.manual_seed(0)
    cfg = C.override(
        registry.preset("avss"), {"model.backbone": "resnet18", "model.arch.decoder_channels": 32}
    )
    model = build_model_for(cfg)
    path = tmp_path / "avss_r18.pth"
    torch.save({"state_dict": to_official_state_dict(model)}, path)  # a wrapped state dict
    # `resnet.*` reads as the published ResNet-50; a ResNet-18 file says which it is by flag
    with pytest.raises(checkpoints.CheckpointError, match="official checkpoint does not fit"):
        checkpoints.load(path)
    loaded = checkpoints.load(path, overrides={"model.backbone": "resnet18"})
    assert loaded.config.model.setting == "avss" and not loaded.config.model.arch.align_bias
    frames, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128)
    with torch.no_grad():
        expected = model.eval()(frames, audio).logits
        assert torch.equal(loaded.model.eval()(frames, audio).logits, expected)


def test_hostile_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "S4_best.pth"
    torch.save({"format": "avsbench/1", "model": {"w": Hostile()}, "config": {}}, path)
    with pytest.raises(checkpoints.CheckpointError, match="Python objects other than tensors"):
        checkpoints.load(path)
    assert not marker.exists()


def test_files_that_are_no_checkpoint_are_one_line_errors(tmp_path):
    empty, text, folder = tmp_path / "empty.pth", tmp_path / "text.pth", tmp_path / "dir.pth"
    empty.touch()
    text.write_text("best model: epoch 12\n")
    folder.mkdir()
    flat = tmp_path / "flat.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, flat)
    for path, match in [
        (empty, "empty"),
        (text, "text file"),
        (folder, "folder"),
        (tmp_path / "missing.pth", "not found"),
    ]:
        with pytest.raises(checkpoints.CheckpointError, match=match) as info:
            checkpoints.load(path, what="--weights file")
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(checkpoints.CheckpointError, match="not a checkpoint this project reads"):
        checkpoints.load(flat)


def test_a_newer_format_is_refused(tmp_path):
    cfg = _tiny_config()
    ckpt = make_checkpoint({}, C.to_dict(cfg), epoch=0, best_miou=0, history=[], with_rng=False)
    path = atomic_save({**ckpt, "format": "avsbench/2"}, tmp_path / "new.pth")
    with pytest.raises(checkpoints.CheckpointError, match="this version of avsbench reads"):
        checkpoints.load(path)
