"""Reading video files: probing, the frames a model sees, and the audio track (PyAV).

The one reader of raw video for `avsbench preprocess` (AVSBench videos -> the official
layouts) and `avsbench predict` (any video -> masks); docs/PREDICT.md "How the video is
read" states the rules. Everything streams: only the frame on screen and a few seconds of
audio are held, whatever the length of the video.

- `probe_video`: the header facts (size, rate, audio stream), refusing unusable files.
- `VideoFrames`: every decoded frame with its presentation time (seconds after the first
  frame, exact `Fraction`s); frames whose timestamp does not increase are dropped.
- `FrameSampler`: the frame on screen at j/N + 15/16 s for j = 0, 1, ... (N samples per
  second, N = 1: the AVSBench rule "near the end of each second"), exact for any rate
  (29.97 fps, variable rates). `rule="published"` picks instead the published index
  int(i * round(fps) + 15/16 * round(fps)), clamped to the last frame, which the release's
  frames were made with; both rules agree for integer frame rates.

The audio track is read by `audio.py` (same conventions: times in seconds after the first
video frame).
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avsbench.errors import MediaError  # noqa: F401 (defined in errors.py)

DEFAULT_MAX_PIXELS = 4096 * 4096  # largest frame (width * height) accepted by default
SAMPLE_OFFSET = Fraction(15, 16)  # the frame of second i is the one on screen at i + 15/16 s
FALLBACK_RATE = Fraction(25)  # frames per second assumed when a stream has no timing at all


def av_errors() -> tuple[type[BaseException], ...]:
    """The exceptions PyAV raises for broken input."""
    import av

    return (av.error.FFmpegError, OSError, EOFError, ValueError, RuntimeError)


def open_media(path: str | os.PathLike[str]) -> Any:
    """av.open(path) for reading; MediaError if the file is not a readable media file."""
    import av

    try:
        return av.open(str(path))
    except av_errors() as exc:
        raise MediaError(
            f"{path}: cannot open the video (not a readable video file: {exc})"
        ) from exc


# ----------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says (decoded facts are counted while reading)."""

    path: str
    width: int
    height: int
    fps: float | None  # average frame rate from the header (None if unknown)
    header_duration: float | None  # seconds, from the stream or the container header
    codec: str
    audio: AudioInfo | None
    average_rate: Fraction | None = None  # the exact average frame rate (e.g. 30000/1001)
    time_base: Fraction | None = None  # unit of the video stream's timestamps


def not_a_regular_file(path: Path) -> str:
    """What `path`, which is not a regular file, is instead (for a message)."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISDIR(mode):
        return "a folder, not a video file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a regular file (predict seeks in the video)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


def probe_video(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Open `path`, check it holds a usable video stream of at most `max_pixels` pixels.

    Raises MediaError for a missing / empty / unreadable file, no video stream or an
    oversized frame. Nothing is decoded beyond the header.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: {not_a_regular_file(path)}; pass the path of a video file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    try:
        with open_media(path) as container:
            if not container.streams.video:
                raise MediaError(
                    f"{path}: the file has no video stream "
                    f"(streams: {[s.type for s in container.streams] or 'none'})"
                )
            vs = container.streams.video[0]
            width, height = int(vs.codec_context.width), int(vs.codec_context.height)
            duration = None
            if vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = Fraction(vs.average_rate) if vs.average_rate else None
            audio = None
            if container.streams.audio:
                acc = container.streams.audio[0].codec_context
                audio = AudioInfo(int(acc.sample_rate or 0), int(acc.channels or 0), acc.name)
            codec = vs.codec_context.name
            time_base = Fraction(vs.time_base) if vs.time_base else None
    except MediaError:
        raise
    except av_errors() as exc:
        raise MediaError(f"{path}: not a readable video file ({exc})") from exc
    if width <= 0 or height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size ({width}x{height})")
    if width * height > max_pixels:
        raise MediaError(
            f"{path}: frames of {width}x{height} = {width * height} pixels exceed the limit of "
            f"{max_pixels} pixels; pass --max-pixels {width * height} (Python: "
            f"max_pixels={width * height}) to process it anyway"
        )
    if audio is not None and audio.sample_rate <= 0:
        raise MediaError(f"{path}: the audio stream has no sample rate")
    fps = float(rate) if rate else None
    return VideoInfo(str(path), width, height, fps, duration, codec, audio, rate, time_base)


# ----------------------------------------------------------------------------- frames


def _decoded(path: str) -> Iterator[tuple[Any, Fraction | None, Fraction | None]]:
    """(frame, absolute time in s or None, nominal rate or None) for every decoded frame of
    the first video stream, in presentation order."""
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        rate = Fraction(rate) if rate else None
        time_base = Fraction(stream.time_base) if stream.time_base else None
        try:
            for frame in container.decode(stream):
                has_time = frame.pts is not None and time_base is not None
                yield frame, Fraction(frame.pts) * time_base if has_time else None, rate
        except av_errors() as exc:
            raise MediaError(
                f"{path}: cannot decode the video ({exc}); the file is damaged or truncated"
            ) from exc


def frame_duration(frame: Any, rate: Fraction | None, last_step: Fraction | None) -> Fraction:
    """How long `frame` stays on screen: its own duration, else 1 / rate, else the last gap."""
    duration = getattr(frame, "duration", None)
    if duration and frame.time_base is not None:
        return Fraction(duration) * Fraction(frame.time_base)
    if rate:
        return 1 / rate
    return last_step or 1 / FALLBACK_RATE


class VideoFrames:
    """Iterate (time, av.VideoFrame) for every frame of the first video stream.

    time: Fraction seconds after the first frame, strictly increasing (a frame whose
    timestamp does not increase is a duplicate and is dropped; frames without timestamps
    are counted at the nominal rate). After iteration: `start_time` (absolute time of the
    first frame), `end_time` (end of the last frame after the first), `last_duration`
    and `num_frames`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.start_time: Fraction | None = None
        self.end_time = Fraction(0)
        self.last_duration = Fraction(0)  # how long the last frame stays on screen
        self.num_frames = 0

    def __iter__(self) -> Iterator[tuple[Fraction, Any]]:
        last: tuple[Fraction, Any] | None = None
        last_step: Fraction | None = None
        rate: Fraction | None = None
        for frame, absolute, rate in _decoded(self.path):
            if absolute is None:  # no timestamps: count frames at the nominal rate
                absolute = (self.start_time or 0) + Fraction(self.num_frames) / (
                    rate or FALLBACK_RATE
                )
            if self.start_time is None:
                self.start_time = absolute
            time = absolute - self.start_time
            if last is not None and time <= last[0]:
                continue
            if last is not None:
                last_step = time - last[0]
            self.num_frames += 1
            last = (time, frame)
            yield time, frame
        if last is not None:
            self.last_duration = frame_duration(last[1], rate, last_step)
            self.end_time = last[0] + self.last_duration


RULES = ("time", "published")


class FrameSampler:
    """Iterate (j, frame_time, rgb uint8 [H, W, 3]) for the sampled frames of a video.

    rule="time" (default): sample j is the frame on screen at j / per_second + 15/16 s
    after the first frame, i.e. the last frame whose time is <= that instant; samples run
    while j / per_second lies before the middle of the last frame (a video of d seconds
    gives about ceil(d * per_second) samples, at least 1); samples past the last frame
    reuse it. `num_samples` counts them. rule="published": per_second must be 1 and `seconds`
    given; second i is the frame with decoding index int(i * r + 15/16 * r), r = round(fps),
    clamped to the last frame (the AVSBench preprocessing). For an integer frame rate both
    rules give the same frames; at 29.97 fps the published rule picks a frame that is not
    yet on screen from second 4 on (frame 148 against 147), and drifts further.

    seconds: stop after this many seconds (decoding stops there). width/height: rescale
    every frame to this size (None: the stream's own size). Only the frame on screen is
    held. After iteration `start_time`, `end_time` and `num_frames` are as `VideoFrames`'.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int | None = None,
        height: int | None = None,
        *,
        per_second: int = 1,
        seconds: int | None = None,
        rule: str = "time",
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown sampling rule {rule!r}; valid: {list(RULES)}")
        if per_second < 1:
            raise ValueError(f"per_second must be >= 1, got {per_second}")
        if rule == "published" and (per_second != 1 or seconds is None):
            raise ValueError("the published rule samples one frame per second of `seconds`")
        self.path, self.width, self.height = str(path), width, height
        self.per_second, self.seconds, self.rule = per_second, seconds, rule
        self.start_time: Fraction | None = None
        self.end_time = Fraction(0)
        self.last_duration = Fraction(0)
        self.num_frames = 0

    def sample_time(self, j: int) -> Fraction:
        """When sample j is taken (rule "time"): j / per_second + 15/16 s."""
        return Fraction(j, self.per_second) + SAMPLE_OFFSET

    def rgb(self, frame: Any) -> np.ndarray:
        """An av.VideoFrame as RGB uint8 [H, W, 3] at the sampler's size."""
        if self.width is None or self.height is None:
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", width=self.width, height=self.height)

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        if self.rule == "published":
            yield from self._by_index()
        else:
            yield from self._by_time()

    def _by_time(self) -> Iterator[tuple[int, float, np.ndarray]]:
        frames = VideoFrames(self.path)
        limit = None if self.seconds is None else self.seconds * self.per_second
        j = 0
        last: tuple[Fraction, Any] | None = None
        decoded = iter(frames)
        try:
            for time, frame in decoded:
                self.start_time = frames.start_time
                while last is not None and time > self.sample_time(j) and j != limit:
                    yield j, float(last[0]), self.rgb(last[1])
                    j += 1
                if j == limit:
                    break
                last = (time, frame)
        finally:
            decoded.close()  # type: ignore[attr-defined]
        self.num_frames, self.end_time = frames.num_frames, frames.end_time
        self.last_duration = frames.last_duration
        if last is None:
            return
        rgb = None
        for k in range(j, self.num_samples):
            rgb = self.rgb(last[1]) if rgb is None else rgb
            yield k, float(last[0]), rgb

    @property
    def num_samples(self) -> int:
        """Samples yielded by a complete iteration (known once the video has been read)."""
        if self.seconds is not None:
            return self.seconds * self.per_second
        # before the middle of the last frame: 150 frames at 29.97 fps (5.005 s) are 5
        # seconds, not 6
        covered = self.end_time - self.last_duration / 2
        return max(1, math.ceil(covered * self.per_second))

    def _by_index(self) -> Iterator[tuple[int, float, np.ndarray]]:
        assert self.seconds is not None
        wanted: list[int] = []
        second = 0
        last: tuple[Fraction, Any] | None = None
        for index, (frame, absolute, rate) in enumerate(_decoded(self.path)):
            if index == 0:
                if not rate:
                    raise MediaError(f"{self.path}: unknown frame rate")
                wanted = published_frame_indices(float(rate), self.seconds)
                self.start_time = absolute
            if absolute is None or self.start_time is None:
                time = Fraction(index) / rate
            else:
                time = absolute - self.start_time
            self.num_frames, last = index + 1, (time, frame)
            while second < self.seconds and wanted[second] == index:
                yield second, float(time), self.rgb(frame)
                second += 1
            if second == self.seconds:
                return
        if last is None:
            return
        rgb = self.rgb(last[1])
        for s in range(second, self.seconds):  # clamped to the last frame
            yield s, float(last[0]), rgb


def published_frame_indices(fps: float, seconds: int, num_frames: int | None = None) -> list[int]:
    """The AVSBench preprocessing's frame indices, one per second: int((i - 1) * r + 15/16 *
    r) for i = 1..seconds with r = round(fps); clamped to num_frames - 1 when given."""
    rate = int(round(fps))
    indices = [int(s * rate + float(SAMPLE_OFFSET) * rate) for s in range(seconds)]
    if num_frames is not None:
        indices = [min(i, num_frames - 1) for i in indices]
    return indices
