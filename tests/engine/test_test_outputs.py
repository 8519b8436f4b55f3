"""What test.sh writes and refuses (docs/RELIABILITY.md): every file it writes is inside
its run folder, a failed run leaves no run folder behind, bad flags are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.checkpoints import build_model_for
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import cmd_test

TINY = ["--image_size", "64", "--num_workers", "0", "--device", "cpu"]


def tiny_config(**changes: object) -> C.Config:
    cfg = C.synthetic(C.preset("s4"))
    return C.override(cfg, {"data.image_size": 64, "model.decoder_channels": 16, **changes})


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
