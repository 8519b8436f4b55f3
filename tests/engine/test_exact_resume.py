"""Ctrl-C then `--resume auto` continues exactly (docs/RELIABILITY.md, "What resume
restores"): a run interrupted at step k of an epoch and resumed ends with the same loss
history, weights and optimizer state, bit for bit, as the run that was never interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsbench.commands import train as cmd_train
from avsbench.engine import train
from tests.engine.engine_helpers import tiny_flags

FLAGS = dict(max_epoches=2, max_steps_per_epoch=3)  # 8 clips, batch 2: 3 of 4 steps


def _last(log_dir: Path) -> dict:
    (run,) = log_dir.iterdir()
    return torch.load(run / "checkpoints" / "last.pth", weights_only=True)


def _losses(history: list[dict]) -> list[dict]:
    timing = ("seconds", "clips_per_second")
    return [
        {**{k: v for k, v in h["train"].items() if k not in timing}, "val": h.get("val")}
        for h in history
    ]


@pytest.mark.slow
@pytest.mark.parametrize("stop_epoch,stop_step", [(0, 2), (1, 1)])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, s4_toy, monkeypatch,
                                                      stop_epoch, stop_step):  # fmt: skip
    straight = tmp_path / "straight"
    assert cmd_train.main("s4", tiny_flags(s4_toy, straight, **FLAGS)) == 0

    def ctrl_c(self, epoch, steps):  # Ctrl-C during step `stop_step` of `stop_epoch`
        if (epoch, steps) == (stop_epoch, stop_step):
            self.interrupt.requested = True

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(train.Trainer, "after_step", ctrl_c)
    assert cmd_train.main("s4", tiny_flags(s4_toy, stopped, **FLAGS)) == 130
    (run,) = stopped.iterdir()
    interrupted = torch.load(run / "checkpoints" / "interrupted.pth", weights_only=True)
    assert interrupted["position"]["epoch"] == stop_epoch
    assert interrupted["position"]["step"] == stop_step
    monkeypatch.undo()
    resumed = tiny_flags(s4_toy, stopped, resume="auto", **FLAGS)
    assert cmd_train.main("s4", resumed) == 0

    a, b = _last(straight), _last(stopped)
    assert a["epoch"] == b["epoch"] == 1
    assert _losses(a["history"]) == _losses(b["history"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    log = (run / "log" / "train.log").read_text()
    assert f"resuming {run / 'checkpoints' / 'interrupted.pth'} at epoch {stop_epoch + 1}, " \
           f"step {stop_step + 1}" in log  # fmt: skip


def test_ctrl_c_is_deferred_to_the_step_boundary_and_a_second_one_forces():
    import os
    import signal

    from avsbench.engine.resume import DeferredInterrupt

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup, else Python's default
    interrupt = DeferredInterrupt()
    with interrupt.installed():
        os.kill(os.getpid(), signal.SIGINT)  # the step goes on
        assert interrupt.requested and not interrupt.forced
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.forced
    assert signal.getsignal(signal.SIGINT) is before  # the handler found is put back


def test_the_sampler_skips_the_samples_of_the_steps_done():
    from torch.utils.data import DistributedSampler

    from avsbench.engine.resume import ResumableSampler

    sampler = ResumableSampler(DistributedSampler(list(range(10)), 1, 0, seed=3))
    sampler.set_epoch(2)
    order = sampler.order()
    assert sorted(order) == list(range(10)) and order != list(range(10))
    sampler.skip = 4
    assert len(sampler) == 6 and list(sampler) == order[4:]
    assert list(sampler) == order  # the skip is for one pass only
