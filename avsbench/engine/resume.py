"""Stopping and continuing a training run exactly, from any step (docs/RELIABILITY.md,
"What resume restores").

A run stops either at an epoch end (`last.pth`: kill -9 or a crash replays the epoch that
was running, from its start) or, on Ctrl-C, at the next step boundary (`interrupted.pth`
with a `position`). Ctrl-C is deferred: the step that is running finishes (an optimizer
update is never cut in half), then KeyboardInterrupt is raised; a second Ctrl-C stops at
once, without a checkpoint. The position holds what continuing from the next step needs:

    epoch, step            the epoch (0-based) and the steps of it already done
    order                  the sampler's order of the epoch (rank 0), checked on resume
    epoch_start_rng        RNG states just before the epoch's loader iterator was made
                           (the iterator draws its worker base seed from the global RNG)
    sums, clips            the running loss sums and clip count of the epoch

The checkpoint's `rng` holds the RNG states at the step boundary. Resuming restores
`epoch_start_rng`, makes the iterator (same worker seeds), restores `rng`, and the sampler
skips the samples of the steps done (`ResumableSampler`), so the remaining steps see the
same batches and random numbers as an uninterrupted run. The datasets draw no random
numbers from the workers' generators, so persistent workers need no state: a training
augmentation (data/augment.py, `epoch_keys`) gets (index, epoch) from the sampler and
seeds its draw with them and the run's seed.

`RunPlan` says where a run ends and when it validates: after max_epoches epochs, or after
max_iters iterations (the epochs, passes over the loader, continue as they would, the last
one cut short). Every epoch has the same number of steps, so the iteration of a position is
epoch * steps_per_epoch + step.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from avsbench import config as C
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine.distributed import DistInfo


def build_train_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, *, seed: int, num_workers: int
) -> tuple[DataLoader, ResumableSampler]:
    """Shuffled training batches of `batch_size` clips PER PROCESS.

    The same sampler serves one and many processes: a permutation seeded with
    seed + epoch (`set_epoch`); process r takes positions r, r + N, ... of it, so the
    per-process batches of step j together are batch j of a one-process run with the
    global batch size. `drop_last` only drops the n mod N samples that would otherwise be
    duplicated (nothing for one process); the last, smaller batch is kept as published."""
    sampler = DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    # can start inside an epoch; yields (index, epoch) to an augmented dataset
    resumable = ResumableSampler(sampler, epoch_keys=getattr(dataset, "epoch_keys", False))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=resumable,
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=False,
        persistent_workers=num_workers > 0,
    )
    return loader, resumable


def should_validate(epoch: int, cfg: C.Config) -> bool:
    """Epoch (0-based) with validation, as the published avss/train.py decides it: at least
    start_eval_epoch AND a multiple of eval_interval (AVSS recipe 15 / 2: 16, 18, ..., 58)."""
    start, every = cfg.train.start_eval_epoch, max(1, cfg.train.eval_interval)
    return epoch >= start and epoch % every == 0


def steps_in_epoch(loader: DataLoader, cfg: C.Config) -> int:
    cap = cfg.train.max_steps_per_epoch
    return len(loader) if cap is None else min(len(loader), cap)


@dataclass(frozen=True)
class RunPlan:
    """How long a run is and when it validates (see the module docstring)."""

    cfg: C.Config
    steps_per_epoch: int  # steps_in_epoch: the loader's batches, capped

    @property
    def by_iters(self) -> bool:
        return self.cfg.train.max_iters is not None

    @property
    def total_iters(self) -> int:
        """max_iters, or max_epoches x steps per epoch (the horizon of a poly schedule)."""
        t = self.cfg.train
        return t.max_iters if t.max_iters is not None else t.max_epoches * self.steps_per_epoch

    @property
    def num_epochs(self) -> int:
        if not self.by_iters:
            return self.cfg.train.max_epoches
        return math.ceil(self.total_iters / max(1, self.steps_per_epoch))

    def epoch_steps(self, epoch: int) -> int:
        """Steps of `epoch`: all, but in the last epoch of a run by iterations."""
        if not self.by_iters:
            return self.steps_per_epoch
        return max(0, min(self.steps_per_epoch, self.total_iters - epoch * self.steps_per_epoch))

    def validation_due(self, epoch: int, iteration: int) -> bool:
        """By epochs: at the end of `epoch` if `should_validate`; by iterations: when
        `iteration` iterations are done, every eval_interval_iters and at the end."""
        if not self.by_iters:
            return should_validate(epoch, self.cfg)
        every = self.cfg.train.eval_interval_iters
        return iteration >= self.total_iters or bool(every and iteration % every == 0)


class ResumableSampler(Sampler[int]):
    """A DistributedSampler whose next pass can start `skip` samples into the epoch."""

    def __init__(self, inner: DistributedSampler, *, epoch_keys: bool = False) -> None:
        self.inner = inner
        self.skip = 0  # samples of the next pass to leave out (reset after that pass)
        self.epoch_keys = epoch_keys  # yield (index, epoch): the augmentation's seed

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        order = self.order()[skip:]
        if self.epoch_keys:
            return iter([(index, self.inner.epoch) for index in order])
        return iter(order)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def order(self) -> list[int]:
        """This process's samples of the current epoch, in order."""
        return list(self.inner)

    def __len__(self) -> int:
        return len(self.inner) - self.skip


@dataclass
class Progress:
    """Where the running epoch is (see the module docstring); `in_step` is True while a
    step runs (a checkpoint then would be half-way through an update)."""

    epoch: int = 0
    step: int = 0
    order: list[int] = field(default_factory=list)
    epoch_start_rng: dict[str, Any] | None = None
    sums: dict[str, float] = field(default_factory=dict)
    clips: int = 0
    in_step: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "order": list(self.order),
            "epoch_start_rng": self.epoch_start_rng,
            "sums": dict(self.sums),
            "clips": self.clips,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(
            epoch=int(d["epoch"]), step=int(d["step"]), order=[int(i) for i in d["order"]],
            epoch_start_rng=d["epoch_start_rng"], sums={k: float(v) for k, v in d["sums"].items()},
            clips=int(d["clips"]),
        )  # fmt: skip


def start_epoch_iterator(
    loader: Any, sampler: ResumableSampler, progress: Progress, resume: Progress | None,
    batch_size: int, rng_at_stop: dict[str, Any] | None,
) -> Iterator[Any]:  # fmt: skip
    """The epoch's batch iterator; with `resume` (same epoch), positioned after its steps
    with the RNG states of the stop (ValueError if the sampler's order differs: the data
    changed). Fills `progress` for this epoch."""
    if resume is not None:
        order = sampler.order()
        if order != resume.order:
            raise ValueError(
                "the interrupted epoch's sample order differs from this run's (the dataset "
                "or the number of processes changed); resume from last.pth instead"
            )
        ckpt_io.set_rng_state(resume.epoch_start_rng)
        progress.epoch_start_rng = resume.epoch_start_rng
        progress.step, progress.sums, progress.clips = resume.step, dict(resume.sums), resume.clips
        progress.order = order
        sampler.skip = resume.step * batch_size
        iterator = iter(loader)  # draws the worker base seed as the first run did
        assert rng_at_stop is not None
        ckpt_io.set_rng_state(rng_at_stop)
        return iterator
    progress.epoch_start_rng = ckpt_io.rng_state()
    progress.step, progress.sums, progress.clips = 0, {}, 0
    progress.order = sampler.order()
    return iter(loader)


class DeferredInterrupt:
    """Ctrl-C (SIGINT) sets `requested`; the loop raises KeyboardInterrupt at the next step
    boundary (`Trainer.stop_if_interrupted`). A second Ctrl-C raises at once. Only in the
    main thread."""

    def __init__(self) -> None:
        self.requested = False
        self.forced = False  # a second Ctrl-C: raised wherever the run was

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[DeferredInterrupt]:
        try:
            previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Ctrl-C behaves as usual
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
