"""Writing what `avsbench predict` produces: mask PNGs and the overlay video with sound.

- `save_mask`: one mask as the release's PNG (0/255 mode L; AVSS: class ids, mode P with
  the AVSS palette), written atomically (avsbench.fileio).
- `OverlayWriter`: overlay.mp4, H.264 (libx264; MPEG-4 part 2 where FFmpeg lacks it) at
  the source's frame times, so its frame rate and frame count are the source's, with the
  source's first audio track re-encoded to AAC and interleaved as the video is written.
  It streams: one frame and a few audio packets are held at a time.
- `OverlayFeed`: feeds it every frame of the source (read a second time) with the mask
  of its slot (`schedule.mask_slot`) painted in (in the decoded Y'CbCr planes,
  `paint.YUVOverlay`) as soon as that mask is predicted.

The output folder itself (temporary folder, manifest, --overwrite) is `folders.py`.
docs/PREDICT.md "Outputs" describes the files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avsbench.media import paint
from avsbench.media.audio import audio_chunks
from avsbench.media.schedule import mask_slot
from avsbench.media.video import VideoFrames, VideoInfo

AAC_FALLBACK_RATE = 48000  # AAC sample rate used when the source's is not one AAC offers
AAC_FALLBACK_LAYOUT = "stereo"  # channel layout used when AAC cannot encode the source's
# FFmpeg's default layout per channel count, for tracks whose layout has no name
USUAL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
VIDEO_CRF = "20"  # libx264 constant-quality setting (lower: better, larger)
VIDEO_PRESET = "superfast"  # libx264 speed preset (veryfast: files 2.5x smaller, 30% slower)
MPEG4_BIT_RATE = 4_000_000  # bits per second when only MPEG-4 part 2 is available
MPEG4_MAX_TICKS = 65535  # MPEG-4 part 2 allows time units down to 1/65535 s only


def save_mask(mask: np.ndarray, path: str | os.PathLike[str], *, semantic: bool) -> Path:
    """Write a mask [H, W] (0/1, or class ids 0..70 when `semantic`) as the release's PNG."""
    from avsbench import visualize

    save = visualize.save_palette_mask if semantic else visualize.save_binary_mask
    return save(mask, path)


def _aac_layout(layout: str, channels: int, rate: int) -> str:
    """The source's channel layout if FFmpeg's AAC encoder accepts it at `rate`, else the
    usual layout of as many channels (an unnamed "6 channels" becomes 5.1), else
    AAC_FALLBACK_LAYOUT."""
    import av

    for candidate in (layout, USUAL_LAYOUTS.get(channels, AAC_FALLBACK_LAYOUT)):
        context = av.CodecContext.create("aac", "w")
        context.sample_rate, context.format = rate, "fltp"
        try:
            context.layout = candidate
            context.open()
        except (av.error.FFmpegError, ValueError):
            continue
        return candidate
    return AAC_FALLBACK_LAYOUT


class OverlayWriter:
    """overlay.mp4 of RGB frames written at given times, plus the source's audio.

    path: the file to write; width, height: the frames' size (padded with black to even
    sizes, as yuv420p needs). rate: the source's average frame rate (written into the
    header); time_base: the unit of the output timestamps, for the stream and the encoder
    (the source's, so its times are kept exactly, variable rates included; default
    1 / rate). audio_source: a file whose first audio track is
    re-encoded to AAC (its own sample rate and channel layout where AAC allows them) with
    sample 0 at `video_start` (absolute seconds of the source's first frame), as the model
    heard it; None: no audio stream.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        *,
        rate: Fraction | None,
        time_base: Fraction | None = None,
        audio_source: str | os.PathLike[str] | None = None,
        video_start: Fraction | None = None,
    ) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        rate = Fraction(rate) if rate else Fraction(25)
        self.time_base = Fraction(time_base) if time_base else 1 / rate
        self.container = av.open(str(self.path), mode="w", format="mp4")
        try:
            self.codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            if self.codec == "mpeg4" and self.time_base.denominator > MPEG4_MAX_TICKS:
                self.time_base = Fraction(1, MPEG4_MAX_TICKS)  # times rounded to 15 us
            self.video = self.container.add_stream(self.codec, rate=rate)
            self.video.width, self.video.height = self.width, self.height
            self.video.pix_fmt = "yuv420p"
            # the encoder's unit too: left unset it is 1 / rate, and frames of a variable
            # rate closer together than that would get the same timestamp
            self.video.time_base = self.video.codec_context.time_base = self.time_base
            if self.codec == "libx264":
                self.video.options = {"crf": VIDEO_CRF, "preset": VIDEO_PRESET}
            else:
                self.video.bit_rate = MPEG4_BIT_RATE
            self.audio, self._chunks = None, None
            self.audio_rate, self.audio_position = 0, 0  # samples written so far
            if audio_source is not None:
                self._add_audio(audio_source, video_start)
        except BaseException:
            self.container.close()
            raise
        self.frames = 0
        self.last_pts = -1

    def _add_audio(self, source: str | os.PathLike[str], video_start: Fraction | None) -> None:
        import av

        with av.open(str(source)) as src:
            context = src.streams.audio[0].codec_context
            rate, layout, channels = int(context.sample_rate), context.layout.name, context.channels
        codec = av.codec.Codec("aac", "w")
        self.audio_rate = rate if rate in (codec.audio_rates or ()) else AAC_FALLBACK_RATE
        self.audio_layout = _aac_layout(layout, channels, self.audio_rate)
        self.audio = self.container.add_stream(
            "aac", rate=self.audio_rate, layout=self.audio_layout
        )
        self._chunks = audio_chunks(
            source, rate=self.audio_rate, layout=self.audio_layout, video_start=video_start
        )

    def write(self, rgb: np.ndarray, time: Fraction) -> None:
        """Add frame rgb uint8 [h, w, 3] shown from `time` (seconds after the first frame)
        on, then the audio up to that time. Times must increase."""
        import av

        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            padded = np.zeros((self.height, self.width, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb = padded
        self.write_frame(
            av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), time
        )

    def write_frame(self, frame: Any, time: Fraction) -> None:
        """Add an av.VideoFrame of the output's (even) size shown from `time` on, then the
        audio up to that time. A Y'CbCr frame (`paint.YUVOverlay`) goes to the encoder as
        it is, and the first one's colour matrix and range are tagged on the stream."""
        pts = int(round(Fraction(time) / self.time_base))
        if pts <= self.last_pts:
            raise ValueError(f"overlay frame times must increase ({time} s after {self.last_pts})")
        if self.frames == 0 and frame.format.name.startswith("yuv"):
            context = self.video.codec_context
            context.colorspace, context.color_range = frame.colorspace, frame.color_range
        frame.pts, frame.time_base = pts, self.time_base
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self.last_pts = pts
        self._write_audio(until=Fraction(time))

    def _write_audio(self, until: Fraction | None) -> None:
        """Encode audio up to `until` seconds (None: the whole rest of the track)."""
        import av

        if self._chunks is None:
            return
        target = None if until is None else int(until * self.audio_rate)
        while target is None or self.audio_position < target:
            chunk = next(self._chunks, None)  # float32 [C, n]
            if chunk is None:
                self._chunks = None
                break
            interleaved = np.ascontiguousarray(chunk.T).reshape(1, -1)  # [1, n * C]
            frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=self.audio_layout)
            frame.sample_rate = self.audio_rate
            frame.pts, frame.time_base = self.audio_position, Fraction(1, self.audio_rate)
            for packet in self.audio.encode(frame):
                self.container.mux(packet)
            self.audio_position += chunk.shape[1]

    def close(self) -> Path:
        """Flush the encoders, add the rest of the audio track and close the file."""
        for packet in self.video.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            self._write_audio(until=None)
            for packet in self.audio.encode(None):
                self.container.mux(packet)
        self.container.close()
        return self.path

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        if self._chunks is not None:
            self._chunks.close()  # type: ignore[attr-defined]
            self._chunks = None
        try:
            self.container.close()
        except Exception:  # a half-written file is deleted anyway
            pass


class OverlayFeed:
    """Writes overlay.mp4 behind the model: every source frame, with the mask of its slot.

    `add(j, mask)` hands in the mask of sample j, `pump()` writes the frames whose mask
    is known, `finish(num_samples)` the rest. The source is read a second time
    (`VideoFrames`), so no frame waits in memory for the window that predicts it; only the
    masks of samples not yet shown are held. video_start: called once, when the first
    frame is written, for the absolute time of the source's first frame (audio alignment).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: VideoInfo,
        *,
        per_second: int,
        semantic: bool,
        video_start: Callable[[], Fraction | None],
    ) -> None:
        self.path, self.info, self.video_start = Path(path), info, video_start
        self.per_second, self.semantic = per_second, semantic
        self.masks: dict[int, np.ndarray] = {}
        self.writer: OverlayWriter | None = None
        self.frames: Any = None  # iterator of the source's (time, av.VideoFrame)
        self.next: tuple[Fraction, Any] | None = None
        self.painter: tuple[int, Callable[..., np.ndarray]] | None = None
        self.lock: Any = contextlib.nullcontext()  # guards `masks` (OverlayThread: its lock)

    def add(self, j: int, mask: np.ndarray) -> None:
        self.masks[j] = mask

    def pump(self, last: int | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Write the frames whose mask is known (`last`: the final sample number; then every
        remaining frame is written). stop: checked before each frame; True ends the pump."""
        from avsbench import visualize

        if self.writer is None:
            info = self.info
            self.writer = OverlayWriter(
                self.path,
                info.width,
                info.height,
                rate=info.average_rate,
                time_base=info.time_base,
                audio_source=info.path if info.audio else None,
                video_start=self.video_start(),
            )
            self.frames = iter(VideoFrames(info.path))
        while stop is None or not stop():
            if self.next is None:
                self.next = next(self.frames, None)
                if self.next is None:
                    return
            t, frame = self.next
            slot = max(mask_slot(t, self.per_second), 0)
            slot = slot if last is None else min(slot, last)
            if self.painter is None or self.painter[0] != slot:
                with self.lock:  # add() may run in another thread
                    if slot not in self.masks:
                        return  # its window has not been predicted yet
                    for old in [k for k in self.masks if k < slot]:
                        del self.masks[old]
                    mask = self.masks.pop(slot)
                painter = visualize.MaskOverlay(mask, semantic=self.semantic, legend=self.semantic)
                source = paint.as_yuv420p(frame, self.info.width, self.info.height)
                self.painter = (slot, paint.YUVOverlay(painter, paint.ColourMatrix.of(source)))
            self.writer.write_frame(self.painter[1](frame), t)
            self.next = None

    def finish(self, num_samples: int) -> int:
        """Write the remaining frames, close the file; returns the number of frames."""
        self.pump(last=num_samples - 1)
        assert self.writer is not None
        self.writer.close()
        frames, self.writer = self.writer.frames, None
        self.abort()
        return frames

    def abort(self) -> None:
        """Stop reading and close the file without finishing it."""
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
