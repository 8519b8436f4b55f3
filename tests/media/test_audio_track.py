"""Tests of avsbench.media.audio on lossless (PCM) tracks, sample by sample: channel
averaging, alignment to the first video frame, windows, the end of the track."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from avsbench.media.audio import AudioWindows, decode_audio
from avsbench.media.video import MediaError
from tests.video_fixtures import TONE_HZ, make_video

RATE = 8000


def wave(t: np.ndarray, channel: int) -> np.ndarray:
    """Left: a tone; right: a slower, quieter tone (so the channel mean is checked)."""
    if channel == 0:
        return 0.5 * np.sin(2 * np.pi * 300 * t)
    return 0.25 * np.sin(2 * np.pi * 70 * t + 1.0)


def pcm(x: np.ndarray) -> np.ndarray:
    """What a float sample becomes through 16-bit PCM and back (FFmpeg: rint(x * 32768))."""
    return (np.clip(np.rint(x * 32768), -32768, 32767) / 32768).astype(np.float32)


def expected_mono(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (pcm(wave(t, 0).astype(np.float32)) + pcm(wave(t, 1).astype(np.float32))) / 2


def pcm_video(tmp_path, name, seconds=3.0, **kwargs):
    return make_video(
        tmp_path / name,
        seconds,
        10,
        32,
        32,
        audio_rate=RATE,
        channels=2,
        audio_codec="pcm_s16le",
        wave=wave,
        **kwargs,
    )


def test_decode_audio_averages_the_channels(tmp_path):
    path = pcm_video(tmp_path, "a.mkv")
    np.testing.assert_allclose(decode_audio(path), expected_mono(3.0), atol=1e-7)


def test_decode_audio_resamples(tmp_path):
    path = make_video(tmp_path / "b.mp4", 2, 10, 32, 32, audio_rate=44100, channels=2)
    mono = decode_audio(path, rate=16000)
    assert abs(len(mono) - 2 * 16000) < 0.05 * 16000
    spectrum = np.abs(np.fft.rfft(mono))
    assert abs(np.argmax(spectrum) * 16000 / len(mono) - TONE_HZ) < 2
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(make_video(tmp_path / "mute.mp4", 1, 10, 32, 32))


@pytest.mark.parametrize("audio_start, video_start", [(0.0, 0.0), (1.5, 0.0), (0.0, 0.7)])
def test_windows_are_aligned_to_the_first_video_frame(tmp_path, audio_start, video_start):
    """Audio starting after the video is preceded by silence; audio starting before the
    video is cut: sample 0 of every window timeline is at the first video frame."""
    path = pcm_video(tmp_path, "c.mkv", audio_start=audio_start, video_start=video_start)
    track = expected_mono(3.0)
    lead = int(round((audio_start - video_start) * RATE))
    timeline = np.concatenate([np.zeros(max(lead, 0), np.float32), track[max(-lead, 0) :]])
    windows = AudioWindows(path, lambda: Fraction(video_start).limit_denominator(100))
    for start in (Fraction(0), Fraction(1, 5), Fraction(6, 5), Fraction(2)):
        got = windows.take(start, 1)
        first = int(start * RATE)
        want = timeline[first : first + RATE]
        want = np.concatenate([want, np.zeros(RATE - len(want), np.float32)])
        np.testing.assert_allclose(got, want, atol=1e-7)
    assert windows.rate == RATE
    with pytest.raises(ValueError, match="non-decreasing"):
        windows.take(Fraction(1), 1)
    windows.close()


def test_the_end_of_the_track(tmp_path):
    path = pcm_video(tmp_path, "d.mkv", seconds=4.0, audio_seconds=2.2)
    with AudioWindows(path, lambda: Fraction(0)) as windows:
        first = windows.take(Fraction(0), 2)
        assert len(first) == 2 * RATE and not windows.ended_early
        second = windows.take(Fraction(2), 1)  # 0.2 s of sound, 0.8 s missing
        assert np.all(second[int(0.2 * RATE) :] == 0) and np.any(second[: int(0.2 * RATE)])
        assert windows.ended_early
        assert windows.take(Fraction(3), 1) is None  # after the end: silence
