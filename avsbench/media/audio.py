"""Reading the audio track of a video file (PyAV), aligned to its first video frame.

Part of the media layer (avsbench.media; docs/PREDICT.md "How the video is read"):

- `audio_chunks`: decoded float32 [C, n] chunks, optionally resampled / remixed by FFmpeg
  and aligned so that sample 0 is at the first video frame (silence before late audio,
  early audio cut);
- `AudioWindows`: the track as mono float32 at its own rate, cut into windows on request
  (what `avsbench predict` feeds VGGish, one window at a time);
- `decode_audio`: a whole track, mono, optionally resampled (the 16 kHz wav of
  `avsbench preprocess`).

Channels are averaged to mono as the AVSBench preprocessing does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from avsbench.media.video import MediaError, av_errors, open_media


def audio_chunks(
    path: str | os.PathLike[str],
    *,
    rate: int | None = None,
    layout: str | None = None,
    video_start: Fraction | None = None,
) -> Iterator[np.ndarray]:
    """Decoded float32 [C, n] chunks (C-contiguous) of the first audio track, in order.

    rate / layout: resample / remix with FFmpeg (None: the stream's own). video_start:
    absolute time (s) of the first video frame; the chunks are then aligned to it: audio
    that starts later is preceded by zeros, audio that starts earlier is cut, so that
    sample 0 is at the first video frame. None: from the track's first sample.
    """
    import av

    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        out_rate = rate or int(stream.codec_context.sample_rate)
        # packed float: PyAV converts planar frames of 8 or more channels wrongly
        resampler = av.AudioResampler(format="flt", layout=layout, rate=out_rate)
        skip: int | None = None  # samples still to drop (audio starting before the video)

        def cut(frames: list[Any]) -> Iterator[np.ndarray]:
            nonlocal skip
            for out in frames:
                channels = out.layout.nb_channels
                samples = np.ascontiguousarray(out.to_ndarray().reshape(-1, channels).T)
                drop = min(skip or 0, samples.shape[1])
                skip = (skip or 0) - drop
                if samples.shape[1] > drop:
                    yield np.ascontiguousarray(samples[:, drop:]) if drop else samples  # [C, n]

        try:
            for frame in container.decode(stream):
                if skip is None:
                    lead = _lead_samples(frame, stream, video_start, out_rate)
                    skip = max(-lead, 0)
                    channels = (av.AudioLayout(layout) if layout else frame.layout).nb_channels
                    while lead > 0:  # silence until the audio starts, a second at a time
                        n = min(lead, out_rate)
                        yield np.zeros((channels, n), np.float32)
                        lead -= n
                yield from cut(resampler.resample(frame))
            yield from cut(resampler.resample(None))
        except av_errors() as exc:
            raise MediaError(
                f"{path}: cannot decode the audio track ({exc}); the file is damaged or truncated"
            ) from exc


def _lead_samples(frame: Any, stream: Any, video_start: Fraction | None, rate: int) -> int:
    """Samples of silence before the first audio frame (negative: samples to drop)."""
    if frame.pts is None or stream.time_base is None or video_start is None:
        return 0
    offset = Fraction(frame.pts) * Fraction(stream.time_base) - video_start
    return int(round(offset * rate))


def decode_audio(path: str | os.PathLike[str], rate: int | None = None) -> np.ndarray:
    """The whole first audio track -> float32 mono [S] (channels averaged), resampled by
    FFmpeg to `rate` when given. MediaError if there is none or it is empty."""
    chunks = [c.mean(axis=0) for c in audio_chunks(path, rate=rate)]  # [n] each
    if not chunks:
        raise MediaError(f"{path}: the audio track is empty")
    return np.concatenate(chunks)


class AudioWindows:
    """The first audio track, mono float32 at its own rate, cut into windows on request.

    Sample 0 is at the first video frame (`video_start()`, absolute seconds, asked when the
    first window is taken). Windows must be asked for in non-decreasing start order; only
    the samples of the current window are held. Use as a context manager, or `close()`.
    """

    def __init__(self, path: str | os.PathLike[str], video_start: Callable[[], Fraction | None]):
        self.path, self.video_start = str(path), video_start
        self.rate = 0
        self.ended_early = False  # a window lacked more than half a second of audio
        self._chunks: Iterator[np.ndarray] | None = None
        self._buffer = np.zeros(0, np.float32)  # samples [_position, _position + len)
        self._position = 0
        self._opened = False

    def __enter__(self) -> AudioWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decoder now (closes the file) rather than at garbage collection."""
        if self._chunks is not None:
            self._chunks.close()  # type: ignore[attr-defined]
            self._chunks = None
        self._opened = True

    def _open(self) -> None:
        self._opened = True
        with open_media(self.path) as container:
            if not container.streams.audio:
                raise MediaError(f"{self.path}: no audio stream")
            self.rate = int(container.streams.audio[0].codec_context.sample_rate)
        chunks = audio_chunks(self.path, video_start=self.video_start())
        self._chunks = (c.mean(axis=0) for c in chunks)  # type: ignore[assignment]

    def take(self, start: Fraction, seconds: int) -> np.ndarray | None:
        """Samples [start, start + seconds) (seconds after the first video frame), float32
        [seconds * rate], zero-padded past the end of the track; None once the track has
        ended before `start` (silence). Sets `ended_early` when the track stops more than
        half a second before the window's end (a few missing milliseconds are normal)."""
        if not self._opened:
            self._open()
        first = int(round(start * self.rate))
        if first < self._position:
            raise ValueError("audio windows must be taken in non-decreasing start order")
        need = first + seconds * self.rate
        pieces = [self._buffer]
        have = self._position + len(self._buffer)
        while have < need and self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
                break
            pieces.append(chunk)
            have += len(chunk)
        buffer = np.concatenate(pieces) if len(pieces) > 1 else self._buffer
        self._buffer, self._position = buffer[first - self._position :], first
        window = self._buffer[: seconds * self.rate]
        if len(window) == 0 and self._chunks is None:
            self.ended_early = True
            return None
        missing = seconds * self.rate - len(window)
        self.ended_early |= missing > self.rate // 2
        if missing:
            window = np.concatenate([window, np.zeros(missing, np.float32)])
        return window
