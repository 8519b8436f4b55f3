"""Tests of avsbench.media.schedule against loops written from the documented rules."""

from __future__ import annotations

from fractions import Fraction

import pytest

from avsbench.media.schedule import SlidingWindows, mask_slot


@pytest.mark.parametrize("per_clip, per_second, count", [(5, 1, 12), (5, 3, 31), (10, 5, 57)])
def test_sliding_windows(per_clip, per_second, count):
    windows = SlidingWindows(per_clip, per_second)
    done = []
    for j in range(count):
        window, full = windows.add(j)
        assert j in window.samples
        if full:
            done.append(window)
    done += windows.rest()
    assert windows.rest() == []
    # every sample in exactly one window; starts never decrease (the audio is read once)
    assert sorted(j for w in done for j in w.samples) == list(range(count))
    starts = [w.start for w in done]
    assert starts == sorted(starts)
    for w in done:
        seconds = [j // per_second for j in w.samples]
        first = seconds[0] - seconds[0] % per_clip
        # one phase, consecutive seconds of one published window, shifted by phase / N
        assert {j % per_second for j in w.samples} == {w.phase}
        assert seconds == list(range(first, first + len(seconds)))
        assert len(seconds) == per_clip or seconds[-1] == (count - 1 - w.phase) // per_second
        assert w.start == first + Fraction(w.phase, per_second)


@pytest.mark.parametrize("per_second", [1, 2, 5])
def test_mask_slot_holds_each_mask_around_its_own_frame(per_second):
    n = per_second
    for step in range(0, 400):
        t = Fraction(step, 64)
        # the sample j whose interval [tau_j - 15/(16N), tau_j + 1/(16N)) holds t,
        # tau_j = j/N + 15/16 being the time of its frame (negative before sample 0's)
        holding = [
            j
            for j in range(-20, 100)
            if Fraction(j, n) + Fraction(15, 16) - Fraction(15, 16 * n)
            <= t
            < Fraction(j, n) + Fraction(15, 16) + Fraction(1, 16 * n)
        ]
        assert holding == [mask_slot(t, n)]
    # N = 1: the mask of second s is held over [s, s + 1)
    assert [mask_slot(Fraction(k, 10), 1) for k in (0, 9, 10, 19, 20)] == [0, 0, 1, 1, 2]
    # every sample's own frame shows its own mask
    assert all(mask_slot(Fraction(j, n) + Fraction(15, 16), n) == j for j in range(50))
