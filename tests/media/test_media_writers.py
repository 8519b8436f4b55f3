"""Tests of avsbench.media.writers and describe: overlay.mp4 keeps the source's frames,
rate and sound; what summary.json says of a mask."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from avsbench.media.describe import classes_present, mask_summary
from avsbench.media.video import VideoFrames
from avsbench.media.writers import OverlayWriter
from tests.video_fixtures import make_video

NTSC = Fraction(30000, 1001)


def stream_facts(path) -> dict:
    """Frame times, rate and decoded audio samples of a file, read back independently."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times = [f.pts * video.time_base for f in container.decode(video)]
        rate = video.average_rate
    facts = {"times": [t - times[0] for t in times], "rate": rate, "audio": None}
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            context = stream.codec_context
            samples = sum(f.samples for f in container.decode(stream))
            duration = float(stream.duration * stream.time_base)
            facts["audio"] = (
                context.name,
                context.channels,
                context.sample_rate,
                samples,
                duration,
            )
    return facts


def copy_through(source, target, **kwargs) -> OverlayWriter:
    """Write every frame of `source` (painted grey at the right half) into `target`."""
    frames = VideoFrames(source)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate, time_base = stream.average_rate, stream.time_base
        width, height = stream.codec_context.width, stream.codec_context.height
    writer = OverlayWriter(target, width, height, rate=rate, time_base=time_base, **kwargs)
    for t, frame in frames:
        rgb = frame.to_ndarray(format="rgb24")
        rgb[:, width // 2 :] = 128
        writer.write(rgb, t)
    writer.close()
    return writer


def test_overlay_keeps_the_frames_rate_and_surround_sound_of_the_source(tmp_path):
    source = make_video(tmp_path / "s.mp4", 2, NTSC, 64, 36, audio_rate=48000, layout="5.1")
    writer = copy_through(source, tmp_path / "o.mp4", audio_source=source, video_start=Fraction(0))
    src, out = stream_facts(source), stream_facts(tmp_path / "o.mp4")
    assert writer.frames == len(src["times"]) == 60
    assert out["times"] == src["times"] and out["rate"] == src["rate"] == NTSC
    codec, channels, rate, samples, duration = out["audio"]
    assert (codec, channels, rate) == ("aac", 6, 48000)
    assert abs(samples - src["audio"][3]) <= 1024  # within one AAC frame
    assert abs(duration - src["audio"][4]) <= 1024 / 48000


def test_overlay_audio_at_a_rate_aac_lacks_is_resampled(tmp_path):
    source = make_video(
        tmp_path / "s.mkv",
        1.5,
        10,
        33,
        21,
        audio_rate=22000,
        audio_codec="pcm_s16le",
        pix_fmt="yuv444p",
    )
    copy_through(source, tmp_path / "o.mp4", audio_source=source, video_start=Fraction(0))
    out = stream_facts(tmp_path / "o.mp4")
    codec, channels, rate, samples, _ = out["audio"]
    assert (codec, channels, rate) == ("aac", 1, 48000)
    assert abs(samples - 1.5 * 48000) <= 2 * 1024
    with av.open(str(tmp_path / "o.mp4")) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (34, 22)  # padded to even sizes


def test_overlay_without_audio_and_times_must_increase(tmp_path):
    writer = OverlayWriter(tmp_path / "o.mp4", 16, 16, rate=Fraction(10))
    writer.write(np.zeros((16, 16, 3), np.uint8), Fraction(0))
    with pytest.raises(ValueError, match="must increase"):
        writer.write(np.zeros((16, 16, 3), np.uint8), Fraction(0))
    writer.close()
    facts = stream_facts(tmp_path / "o.mp4")
    assert facts["audio"] is None and facts["times"] == [0]


def test_mask_summaries():
    binary = np.zeros((4, 5), np.uint8)
    binary[1:3, 1:4] = 1
    assert mask_summary(binary, semantic=False) == {"pixels": 6, "area_fraction": 6 / 20}
    ids = np.zeros((4, 5), np.uint8)
    ids[0, :2], ids[1:, 4] = 7, 12
    entry = mask_summary(ids, semantic=True)
    assert entry["area_fraction"] == 5 / 20
    assert [(c["id"], c["pixels"]) for c in entry["classes"]] == [(12, 3), (7, 2)]
    entries = [entry, mask_summary(np.full((4, 5), 7, np.uint8), semantic=True)]
    assert [(c["id"], c["seconds"], c["pixels"]) for c in classes_present(entries)] == [
        (7, 2, 22),
        (12, 1, 3),
    ]


def test_mpeg4_fallback_keeps_variable_frame_times_of_a_fine_time_base(tmp_path, monkeypatch):
    """Without libx264 (MPEG-4 part 2, time units of at least 1/65535 s), a source counted
    in 1/90000 s (MPEG-TS) still gives every frame, each within 1/65535 s of its time."""
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    times = [Fraction(k, 30) for k in (0, 1, 2, 4, 5, 7, 8)]  # 30 fps, frames dropped
    writer = OverlayWriter(
        tmp_path / "o.mp4", 32, 32, rate=Fraction(24), time_base=Fraction(1, 90000)
    )
    for t in times:
        writer.write(np.zeros((32, 32, 3), np.uint8), t)
    writer.close()
    facts = stream_facts(tmp_path / "o.mp4")
    assert writer.codec == "mpeg4" and len(facts["times"]) == len(times)
    assert all(abs(a - b) <= Fraction(1, 65535) for a, b in zip(facts["times"], times))
