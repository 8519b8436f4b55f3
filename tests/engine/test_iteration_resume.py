"""A run by iterations (AdamW, poly schedule with linear warm-up, backbone lr x 0.1,
full-model gradient clipping, validation every 2 iterations) stopped with Ctrl-C in the
middle of an epoch and resumed, or killed and resumed from its last mid-epoch last.pth,
ends with the same weights, optimizer state, schedule and history, bit for bit, as the run
that was never interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsbench.commands import train as cmd_train
from avsbench.engine import train
from tests.engine.engine_helpers import tiny_flags

# 8 clips, batch 2, capped at 3 steps per epoch: epochs of 3, 3 and 1 steps
FLAGS = dict(
    max_iters=7, max_steps_per_epoch=3, eval_interval_iters=2, optimizer="adamw",
    weight_decay=0.05, schedule="poly", poly_power=0.9, warmup_iters=2, backbone_lr_mult=0.1,
    grad_clip_norm=0.5, lr=1e-3,
)  # fmt: skip


def _run(log_dir: Path) -> Path:
    (run,) = log_dir.iterdir()
    return run


def _load(log_dir: Path, name: str = "last.pth") -> dict:
    return torch.load(_run(log_dir) / "checkpoints" / name, weights_only=True)


def _records(history: list[dict]) -> list[dict]:
    timing = ("seconds", "clips_per_second")
    return [{**h, "train": {k: v for k, v in h["train"].items() if k not in timing}}
            for h in history]  # fmt: skip


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["scheduler"] == b["scheduler"]
    assert _records(a["history"]) == _records(b["history"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, s4_toy) -> dict:
    log_dir = tmp_path_factory.mktemp("straight")
    assert cmd_train.main("s4", tiny_flags(s4_toy, log_dir, **FLAGS)) == 0
    return {**_load(log_dir), "best": _load(log_dir, "S4_best.pth")}


@pytest.mark.slow
def test_the_uninterrupted_run_follows_the_plan(straight):
    assert straight["scheduler"]["iteration"] == 7 and straight["iteration"] == 7
    assert straight["epoch"] == 2  # three epochs (passes), the last one of 1 step
    validated = [h["iteration"] for h in straight["history"] if "val" in h]
    assert validated == [2, 4, 6, 7]
    assert [h["iteration"] for h in straight["history"]] == [2, 3, 4, 6, 7]  # + epoch ends
    backbone, rest = straight["optimizer"]["param_groups"]
    assert backbone["initial_lr"] == pytest.approx(1e-4) and rest["initial_lr"] == 1e-3
    assert backbone["weight_decay"] == rest["weight_decay"] == 0.05
    assert backbone["lr"] == rest["lr"] == 0.0  # poly at its horizon
    assert straight["scheduler"]["base_lrs"] == [backbone["initial_lr"], 1e-3]
    best = straight["best"]  # weights only: no position, optimizer, schedule or RNG
    assert best["iteration"] in validated and "position" not in best
    assert not {"optimizer", "scheduler", "rng"} & best.keys()


@pytest.mark.slow
@pytest.mark.parametrize("stop_epoch,stop_step", [(0, 1), (1, 1)])
def test_ctrl_c_mid_epoch_then_resume_equals_the_uninterrupted_run(
    tmp_path, s4_toy, monkeypatch, straight, stop_epoch, stop_step
):
    """(0, 1): inside the warm-up; (1, 1): at iteration 4, a validation inside epoch 2."""

    def ctrl_c(self, epoch, steps):
        if (epoch, steps) == (stop_epoch, stop_step):
            self.interrupt.requested = True

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(train.Trainer, "after_step", ctrl_c)
    assert cmd_train.main("s4", tiny_flags(s4_toy, stopped, **FLAGS)) == 130
    interrupted = _load(stopped, "interrupted.pth")
    assert interrupted["position"]["step"] == stop_step
    assert interrupted["scheduler"]["iteration"] == 3 * stop_epoch + stop_step
    monkeypatch.undo()
    assert cmd_train.main("s4", tiny_flags(s4_toy, stopped, resume="auto", **FLAGS)) == 0
    _assert_same_run(straight, _load(stopped))


@pytest.mark.slow
def test_killed_after_a_mid_epoch_validation_resumes_from_its_last_pth(
    tmp_path, s4_toy, monkeypatch, straight
):
    """Stopped at iteration 5 with no interrupted.pth (as after kill -9): last.pth of the
    validation at iteration 4 (epoch 2, step 1) holds its position, the run replays step 2."""

    def ctrl_c(self, epoch, steps):
        if (epoch, steps) == (1, 2):
            self.interrupt.requested = True

    stopped = tmp_path / "killed"
    monkeypatch.setattr(train.Trainer, "after_step", ctrl_c)
    assert cmd_train.main("s4", tiny_flags(s4_toy, stopped, **FLAGS)) == 130
    (_run(stopped) / "checkpoints" / "interrupted.pth").unlink()
    last = _load(stopped)
    assert last["iteration"] == 4 and last["epoch"] == 0
    assert last["position"]["epoch"] == 1 and last["position"]["step"] == 1
    monkeypatch.undo()
    assert cmd_train.main("s4", tiny_flags(s4_toy, stopped, resume="auto", **FLAGS)) == 0
    _assert_same_run(straight, _load(stopped))
    log = (_run(stopped) / "log" / "train.log").read_text()
    assert "resuming" in log and "at epoch 2, step 2" in log
