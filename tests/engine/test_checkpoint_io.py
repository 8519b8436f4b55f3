"""Atomic checkpoint files, RNG state round trips, the layout of project checkpoints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from avsbench import checkpoints
from avsbench.engine import checkpoint as ckpt_io


def test_atomic_save_round_trip(tmp_path):
    obj = {"a": torch.arange(5.0), "b": [1, 2.5, "x"]}
    path = ckpt_io.atomic_save(obj, tmp_path / "sub" / "x.pth")
    back = torch.load(path, weights_only=True)
    assert torch.equal(back["a"], obj["a"]) and back["b"] == obj["b"]
    assert [p.name for p in path.parent.iterdir()] == ["x.pth"]  # no temp file left


def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    ckpt_io.atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # write a full payload into the temp file ...
        f.write(b"garbage")
        raise OSError("disk full")  # ... and die before the rename

    monkeypatch.setattr(ckpt_io.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt_io.atomic_save({"epoch": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ckpt_io.rng_state()
    ckpt_io.atomic_save({"rng": state}, tmp_path / "r.pth")
    expected = (random.random(), np.random.rand(3), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    loaded = checkpoints.safe_torch_load(tmp_path / "r.pth")  # weights_only: plain types only
    ckpt_io.set_rng_state(loaded["rng"])
    again = (random.random(), np.random.rand(3), torch.rand(3))
    assert again[0] == expected[0]
    assert np.array_equal(again[1], expected[1])
    assert torch.equal(again[2], expected[2])


def test_make_checkpoint_layout_and_detection(tmp_path):
    model = torch.nn.Linear(2, 3)
    opt = torch.optim.Adam(model.parameters())
    full = ckpt_io.make_checkpoint(
        model.state_dict(), {"model": {}}, epoch=4, best_miou=0.5, history=[{"epoch": 0}],
        optimizer=opt,
    )  # fmt: skip
    assert full["format"] == "avsbench/1" and full["epoch"] == 4 and "rng" in full
    assert checkpoints.is_project_checkpoint(full)
    assert checkpoints.detect(full) == "project"
    best = ckpt_io.make_checkpoint(
        model.state_dict(), {}, epoch=4, best_miou=0.5, history=[], with_rng=False
    )
    assert "optimizer" not in best and "rng" not in best
    assert not checkpoints.is_project_checkpoint(model.state_dict())
    torch.save(model.state_dict(), tmp_path / "flat.pth")
    with pytest.raises(ValueError, match="not a checkpoint this project reads.*project checkp"):
        checkpoints.load(tmp_path / "flat.pth", kinds=("project",))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        checkpoints.safe_torch_load(tmp_path / "missing.pth")
