"""Made-up videos for the media and predict tests (PyAV): moving shapes and tones.

The scene: a red square (the sounding object) moving left -> right in the top half and
a silent blue disc moving right -> left in the bottom half, on a grey background; the
audio a TONE_HZ tone whose loudness follows `loud(t)`. `grey_index_frame` paints each
frame with its own index, to check which frame a sampler picks.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BACKGROUND = (40, 40, 40)
RED = (230, 40, 40)
BLUE = (40, 40, 230)
TONE_HZ = 440.0


def red_box(t: float, duration: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the red square at time t: moves left -> right in the top half."""
    side = max(4, height // 4)
    x0 = int(round(2 + (width - side - 4) * t / duration))
    y0 = height // 4 - side // 2
    return x0, y0, x0 + side, y0 + side


def blue_centre(t: float, duration: float, width: int, height: int) -> tuple[float, float]:
    """Centre of the blue (silent) disc: moves right -> left in the bottom half."""
    r = max(3, height // 8)
    return width - r - 2 - (width - 2 * r - 4) * t / duration, 3 * height / 4


def scene(t: float, duration: float, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BACKGROUND
    yy, xx = np.mgrid[:height, :width]
    cx, cy = blue_centre(t, duration, width, height)
    r = max(3, height // 8)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = BLUE
    x0, y0, x1, y1 = red_box(t, duration, width, height)
    img[y0:y1, x0:x1] = RED
    return img


def make_video(
    path: Path,
    seconds: float,
    fps: float,
    width: int,
    height: int,
    *,
    audio_rate: int | None = None,
    channels: int = 1,
    loud: callable = lambda t: np.ones_like(t),
    frame: callable | None = None,
    pix_fmt: str = "yuv420p",
    audio_seconds: float | None = None,
    audio_start: float = 0.0,
    layout: str | None = None,
    audio_codec: str = "aac",
    frame_times: list[float] | None = None,
    video_start: float = 0.0,
    wave: callable | None = None,
) -> Path:
    """Write an H.264 MP4 of `scene` (or `frame(t)`) with an AAC tone of TONE_HZ scaled by
    `loud(t)` (0..1) at `audio_rate` (no audio track when None), `channels` channels (or
    the channel `layout`, e.g. "5.1"). fps may be a Fraction (30000/1001). audio_codec:
    e.g. "pcm_s16le" (lossless; needs a .mkv or .mov path). frame_times: explicit frame
    times in s (a variable frame rate, millisecond timestamps) instead of i / fps.
    video_start: time of the first frame (s, a multiple of 1 / fps). wave(t, channel):
    the audio samples (float in [-1, 1]) instead of the tone."""
    frame = frame or (lambda t: scene(t, seconds, width, height))
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = {"crf": "10"}
        if frame_times is not None:
            video.time_base = Fraction(1, 1000)
        layout = layout or ("mono" if channels == 1 else "stereo")
        channels = av.AudioLayout(layout).nb_channels
        audio = None
        if audio_rate:
            audio = container.add_stream(audio_codec, rate=audio_rate, layout=layout)
        times = frame_times or [i / rate for i in range(int(round(seconds * rate)))]
        for i, t in enumerate(times):
            vf = av.VideoFrame.from_ndarray(frame(float(t)), format="rgb24")
            if frame_times is not None:
                vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            else:
                vf.pts = i + int(round(video_start * rate))
            for packet in video.encode(vf):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            total = int((audio_seconds or seconds) * audio_rate)
            for start in range(0, total, 1024):
                t = np.arange(start, min(start + 1024, total)) / audio_rate
                if wave is None:
                    tone = (0.4 * loud(t) * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
                    samples = np.repeat(tone[None], channels, 0)
                else:
                    samples = np.stack([wave(t, c) for c in range(channels)]).astype(np.float32)
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
                af.sample_rate, af.pts = audio_rate, start + int(audio_start * audio_rate)
                for packet in audio.encode(af):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return path


def grey_index_frame(width: int, height: int, fps: float):
    """Frames whose grey level encodes their index (index * 4), to check the sampling."""

    def frame(t: float) -> np.ndarray:
        return np.full((height, width, 3), int(round(t * fps)) * 4, np.uint8)

    return frame


def no_leftovers(folder: Path) -> list[str]:
    """Entries of `folder` left by predict (temporary or output folders)."""
    return sorted(p for p in os.listdir(folder) if p.startswith((".out", "out")))


def read_overlay(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def index_frame(width: int, height: int, fps: float | Fraction):
    """Frames whose colour encodes their index n < 256 (red 8 + 16 (n % 16), green
    8 + 16 (n // 16)), to check which frame a sampler picks; `frame_index` reads it back."""

    def frame(t: float) -> np.ndarray:
        n = int(round(t * fps))
        img = np.empty((height, width, 3), np.uint8)
        img[:] = (8 + 16 * (n % 16), 8 + 16 * (n // 16), 128)
        return img

    return frame


def frame_index(rgb: np.ndarray) -> int:
    """The index painted by `index_frame` (from the mean colour of the image centre)."""
    h, w = rgb.shape[:2]
    r, g, _ = rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)
    return int(round((r - 8) / 16)) + 16 * int(round((g - 8) / 16))
