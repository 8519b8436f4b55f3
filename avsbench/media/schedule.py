"""When each mask is predicted and where it is shown: windows slid over the samples, and
the mask each overlay frame shows (docs/PREDICT.md "More masks per second").

With N masks per second, sample j is the frame on screen at j/N + 15/16 s
(`FrameSampler(per_second=N)`). Phase k = j mod N gathers the samples of seconds
s = j div N into windows of T consecutive seconds (T = frames_per_clip: 5 for S4/MS3, 10
for AVSS); window m of phase k covers seconds mT .. mT + T - 1 shifted by k/N s, and its
audio starts at mT + k/N s. Phase 0 is the published one-window-per-T-seconds schedule.
The overlay frame at time t shows the mask of sample floor(N t - 15 (N - 1) / 16): each
sample's mask is held over an interval of 1/N s that holds its own frame, 15/16 of it
before the frame (for N = 1: second s's mask over [s, s + 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from avsbench.media.video import SAMPLE_OFFSET


@dataclass
class Window:
    """Up to T consecutive seconds of one phase, gathered as model inputs."""

    phase: int
    start: Fraction  # where its audio starts, seconds after the first frame
    samples: list[int] = field(default_factory=list)  # sample numbers j
    times: list[float] = field(default_factory=list)  # times of the sampled frames (s)
    frames: list[np.ndarray] = field(default_factory=list)  # model input per sample
    rgb: list[np.ndarray] = field(default_factory=list)  # frames kept for the caller
    # the method's extra inputs per sample ({key: float32 [3, S, S]}), if it declares any
    extras: list[dict[str, np.ndarray]] = field(default_factory=list)
    log_mel: np.ndarray | None = None  # float32 [n, 96, 64], once its audio is read


class SlidingWindows:
    """Groups samples j = s * N + k, given in order, into the windows of their phase k."""

    def __init__(self, frames_per_clip: int, per_second: int) -> None:
        self.size, self.per_second = frames_per_clip, per_second
        self.open: dict[int, Window] = {}

    def add(self, j: int) -> tuple[Window, bool]:
        """The window of sample j, and whether j completes it. Completed windows come in
        the order of their audio start."""
        second, phase = divmod(j, self.per_second)
        window = self.open.get(phase)
        if window is None:
            first = second - second % self.size
            window = self.open[phase] = Window(phase, first + Fraction(phase, self.per_second))
        window.samples.append(j)
        if len(window.samples) < self.size:
            return window, False
        del self.open[phase]
        return window, True

    def rest(self) -> list[Window]:
        """The unfinished windows at the end, in the order of their audio start."""
        rest, self.open = sorted(self.open.values(), key=lambda w: w.start), {}
        return rest


def mask_slot(time: Fraction, per_second: int) -> int:
    """The sample whose mask is shown at `time` (s): floor(N t - 15 (N - 1) / 16); negative
    before the first sample's interval (show sample 0 there)."""
    return math.floor(per_second * Fraction(time) - SAMPLE_OFFSET * (per_second - 1))
