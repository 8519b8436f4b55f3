"""Tests of avsbench.media.video: probing and the frames a sampler picks, on made-up
videos whose frames paint their own index (tests/video_fixtures.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from avsbench.media.video import (
    FrameSampler,
    MediaError,
    VideoFrames,
    probe_video,
    published_frame_indices,
)
from tests.video_fixtures import frame_index, grey_index_frame, index_frame, make_video

NTSC = Fraction(30000, 1001)  # 29.97 frames per second


def on_screen(times: list[Fraction], instant: Fraction) -> int:
    """Index of the last frame whose time is <= instant (the first frame if none)."""
    shown = [i for i, t in enumerate(times) if t <= instant]
    return shown[-1] if shown else 0


@pytest.mark.parametrize("fps", [25, 16, 30])
def test_frame_sampling_matches_the_published_index(tmp_path, fps):
    seconds = 2
    path = make_video(
        tmp_path / "idx.mp4", seconds, fps, 32, 32, frame=grey_index_frame(32, 32, fps)
    )
    sampler = FrameSampler(str(path), 32, 32)
    got = [(s, round(rgb.mean() / 4)) for s, _, rgb in sampler]
    expected = [(i, int(i * fps + 15 / 16 * fps)) for i in range(seconds)]
    assert got == expected
    assert sampler.num_frames == seconds * fps and float(sampler.end_time) == seconds
    # the published rule (preprocessing) picks the same frames at an integer rate
    published = FrameSampler(str(path), 32, 32, seconds=seconds, rule="published")
    assert [(s, round(rgb.mean() / 4)) for s, _, rgb in published] == expected


def test_frame_sampling_partial_last_second_reuses_the_last_frame(tmp_path):
    # 2.5 s at 10 fps: frames 0..24; seconds 0, 1 take frames 9, 19; second 2 (partial)
    # takes the last frame, 24.
    path = make_video(tmp_path / "p.mp4", 2.5, 10, 32, 32, frame=grey_index_frame(32, 32, 10))
    got = [(s, round(t, 3), round(rgb.mean() / 4)) for s, t, rgb in FrameSampler(str(path), 32, 32)]
    assert got == [(0, 0.9, 9), (1, 1.9, 19), (2, 2.4, 24)]


def test_ntsc_rate_time_rule_is_exact_and_published_rule_is_kept(tmp_path):
    """29.97 fps: the frame on screen at i + 15/16 s is floor((i + 15/16) * 30000/1001);
    the release's rule int(i * 30 + 28.125) is one frame later from second 4 on."""
    path = make_video(tmp_path / "ntsc.mp4", 5, NTSC, 32, 32, frame=index_frame(32, 32, NTSC))
    times = [Fraction(k) / NTSC for k in range(150)]
    exact = [on_screen(times, i + Fraction(15, 16)) for i in range(5)]
    assert exact == [28, 58, 88, 118, 147]  # written out: floor((i + 0.9375) * 29.97)
    sampler = FrameSampler(path)
    got = [(s, frame_index(rgb)) for s, _, rgb in sampler]
    assert got == list(enumerate(exact))
    assert sampler.num_frames == 150 and sampler.end_time == Fraction(150) / NTSC
    published = FrameSampler(path, seconds=5, rule="published")
    assert [frame_index(rgb) for _, _, rgb in published] == [28, 58, 88, 118, 148]
    assert published_frame_indices(float(NTSC), 5) == [28, 58, 88, 118, 148]


def test_variable_frame_rate_uses_the_timestamps(tmp_path):
    # frames at irregular times (ms): 10 fps for a second, then 4 fps, then 25 fps
    times = (
        [k / 10 for k in range(10)]
        + [1 + k / 4 for k in range(4)]
        + [2 + k / 25 for k in range(25)]
    )
    path = make_video(
        tmp_path / "vfr.mp4",
        3,
        25,
        32,
        32,
        frame=lambda t: index_frame(32, 32, 1)(times.index(t)),
        frame_times=times,
    )
    exact = [Fraction(round(t * 1000), 1000) for t in times]
    sampler = FrameSampler(path, per_second=2)
    got = [(j, frame_index(rgb)) for j, _, rgb in sampler]
    expected = [(j, on_screen(exact, Fraction(j, 2) + Fraction(15, 16))) for j in range(6)]
    assert got == expected
    assert sampler.num_frames == len(times)


@pytest.mark.parametrize("per_second", [1, 5])
def test_samples_per_second(tmp_path, per_second):
    path = make_video(tmp_path / "n.mp4", 2.3, 10, 32, 32, frame=index_frame(32, 32, 10))
    times = [Fraction(k, 10) for k in range(23)]
    got = [(j, t, frame_index(rgb)) for j, t, rgb in FrameSampler(path, per_second=per_second)]
    count = math.ceil((Fraction(23, 10) - Fraction(1, 20)) * per_second)  # j/N < 2.3 - 0.1/2
    expected = []
    for j in range(count):
        k = on_screen(times, Fraction(j, per_second) + Fraction(15, 16))
        expected.append((j, pytest.approx(float(times[k])), k))
    assert got == expected


def test_published_rule_clamps_to_the_last_frame_and_stops_early(tmp_path):
    path = make_video(tmp_path / "c.mp4", 3.5, 10, 32, 32, frame=index_frame(32, 32, 10))
    sampler = FrameSampler(path, seconds=5, rule="published")
    assert [frame_index(rgb) for _, _, rgb in sampler] == [9, 19, 29, 34, 34]
    short = FrameSampler(path, seconds=2, rule="published")
    assert [frame_index(rgb) for _, _, rgb in short] == [9, 19]
    assert short.num_frames == 20  # decoding stopped at the last frame it needed
    with pytest.raises(ValueError, match="published rule"):
        FrameSampler(path, per_second=2, seconds=2, rule="published")
    with pytest.raises(ValueError, match="valid"):
        FrameSampler(path, rule="nearest")


def test_video_frames_times_and_end(tmp_path):
    path = make_video(tmp_path / "v.mp4", 1.2, NTSC, 32, 32, frame=index_frame(32, 32, NTSC))
    frames = VideoFrames(path)
    times = [t for t, _ in frames]
    assert times == [Fraction(k) / NTSC for k in range(36)]
    assert frames.num_frames == 36 and frames.end_time == Fraction(36) / NTSC


def test_probe_video(tmp_path):
    path = make_video(tmp_path / "a.mp4", 1, NTSC, 48, 32, audio_rate=48000, layout="5.1")
    info = probe_video(path)
    assert (info.width, info.height, info.codec) == (48, 32, "h264")
    assert info.average_rate == NTSC and info.fps == pytest.approx(29.97, abs=1e-3)
    assert info.audio is not None and (info.audio.sample_rate, info.audio.channels) == (48000, 6)
    with pytest.raises(MediaError, match="exceed the limit of 100 pixels"):
        probe_video(path, max_pixels=100)
    (tmp_path / "text.mp4").write_text("not a video " * 20)
    with pytest.raises(MediaError, match="not a readable video"):
        probe_video(tmp_path / "text.mp4")
    with pytest.raises(MediaError, match="cannot open the video"):
        list(FrameSampler(tmp_path / "text.mp4"))
