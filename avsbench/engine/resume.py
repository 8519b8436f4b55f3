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
numbers (the published transforms are deterministic), so persistent workers need no state.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DistributedSampler, Sampler

from avsbench.engine import checkpoint as ckpt_io


class ResumableSampler(Sampler[int]):
    """A DistributedSampler whose next pass can start `skip` samples into the epoch."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self.skip = 0  # samples of the next pass to leave out (reset after that pass)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def order(self) -> list[int]:
        """This process's samples of the current epoch, in order."""
        return list(self.inner)

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return iter(self.order()[skip:])

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
