"""Segment the sounding objects of any video file: `predict_video` (the command line:
`avsbench.commands.predict`).

The orchestration (docs/ARCHITECTURE.md "A video through predict") of the media layer
(`avsbench.media`: sampling, audio windows, model inputs, the schedule of N masks per
second, writers, the output folder), the model (`avsbench.predictor`, over
`avsbench.checkpoints.load`) and the forward step (`avsbench.engine.step`). The rules are
docs/PREDICT.md's; phase 0 of the schedule gives the per-second outputs (masks/, the
`seconds` of summary.json), every phase the masks overlay.mp4 shows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsbench.config import setting_info
from avsbench.engine import step
from avsbench.fileio import atomic_write
from avsbench.maskiges.inputs import attach_sam
from avsbench.media import describe, inputs, schedule, threads, writers
from avsbench.media.audio import AudioWindows
from avsbench.media.folders import OutputFolder, write_failure
from avsbench.media.video import (
    DEFAULT_MAX_PIXELS,
    FrameSampler,
    MediaError,
    VideoInfo,
    probe_video,
)
from avsbench.predictor import PredictError, Predictor, load_predictor, resolve_device

__all__ = ["PredictError", "PredictionResult", "Predictor", "load_predictor", "predict_video"]

TRUNCATION_TOLERANCE_S = 1.0  # decoded length may fall this short of the header's length


# ----------------------------------------------------------------------------- prediction


@dataclass
class PredictionResult:
    """What `predict_video` returns.

    masks: one uint8 [H, W] per second of video, 0/1 (S4/MS3) or class ids (AVSS), at the
    video's resolution (empty with keep_masks=False). frames: the sampled frames uint8
    [H, W, 3] (with keep_frames=True). summary: the content of summary.json. out_dir and
    paths: what was written ({} and None without out_dir).
    """

    masks: list[np.ndarray]
    summary: dict[str, Any]
    frames: list[np.ndarray] = field(default_factory=list)
    out_dir: Path | None = None
    paths: dict[str, Any] = field(default_factory=dict)

    @property
    def semantic(self) -> bool:
        return setting_info(self.summary["model"]["setting"]).semantic

    @property
    def num_seconds(self) -> int:
        return int(self.summary["num_seconds"])


def predict_video(
    video_path: str | os.PathLike[str],
    weights: str | os.PathLike[str] | Predictor,
    *,
    setting: str | None = None,
    backbone: str | None = None,
    vggish_weights: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    allow_silence: bool = False,
    batch_clips: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    write_overlay: bool = True,
    keep_masks: bool = True,
    keep_frames: bool = False,
    masks_per_second: int = 1,
    log: Callable[[str], None] | None = None,
    sam_weights: str | os.PathLike[str] | None = None,
    sam_model: str | None = None,
    background: bool | None = None,
) -> PredictionResult:
    """Segment the sounding objects of a video, one mask per second.

    weights: a checkpoint path (project format or official state dict) or a `Predictor`
    from `load_predictor` (reuse across videos). out_dir: None writes nothing (notebook
    use); else masks/, overlay.mp4 and summary.json appear there atomically. allow_silence:
    a video without an audio track is predicted with silent audio instead of raising.
    batch_clips: windows per forward pass. keep_masks / keep_frames: hold the per-second
    masks / sampled frames in memory (turn masks off for long videos written to disk).
    masks_per_second: masks per second shown by overlay.mp4 (the window slid by 1/N s; the
    per-second outputs do not change). log: receives progress and warning lines.
    sam_weights / sam_model: segment-anything weights that make the maskiges a COMBO or VCT
    model reads (`avsbench.maskiges`, docs/MASKIGE.md); summary.json's model.maskiges marks them.
    background: decode ahead of the model and write the overlay behind it in their own
    threads (False: everything in the calling thread, in turn; the masks are the same).
    None: threads when they have a core to run on, i.e. the model runs on a GPU or torch
    uses fewer threads than the CPU has cores (on a CPU torch keeps busy they only contend).
    Raises PredictError for bad input or an output that cannot be written (full disk,
    read-only folder), leaving no output folder behind.
    """
    say = log or (lambda _msg: None)
    for name, value in (("batch_clips", batch_clips), ("masks_per_second", masks_per_second)):
        if value < 1:
            raise PredictError(f"{name} must be >= 1, got {value}")
    if not isinstance(weights, Predictor):
        resolve_device(device)  # a bad --device fails before anything is read
    output = None
    try:
        info = probe_video(video_path, max_pixels)
        warnings: list[str] = []
        if info.audio is None:
            if not allow_silence:
                raise PredictError(
                    f"{info.path}: the video has no audio track; audio-visual segmentation "
                    "needs sound. Pass --allow-silence (Python: allow_silence=True) to "
                    "predict with silent audio"
                )
            warnings.append("the video has no audio track: predicted with silence")
            say(f"warning: {info.path} has no audio track; predicting with silence")
        output = OutputFolder(out_dir, overwrite) if out_dir is not None else None
        predictor = weights
        if not isinstance(predictor, Predictor):
            predictor = load_predictor(
                weights,
                setting=setting,
                backbone=backbone,
                vggish_weights=vggish_weights,
                device=device,
            )
        predictor = attach_sam(predictor, sam_weights, sam_model=sam_model, log=say)
        if background is None:
            spare_cores = torch.get_num_threads() < (os.cpu_count() or 1)
            background = predictor.device.type != "cpu" or spare_cores
        run = _Run(predictor, info, output, masks_per_second, write_overlay, keep_masks, background)
        result = run.predict(batch_clips, keep_frames, warnings, say)
        if output is not None:
            folder, result.out_dir = output.path, output.commit()
            result.paths = {
                key: [result.out_dir / p.relative_to(folder) for p in value]
                if isinstance(value, list)
                else result.out_dir / value.relative_to(folder)
                for key, value in result.paths.items()
            }
        return result
    except BaseException as exc:
        if output is not None:
            output.abort()
        if isinstance(exc, MediaError):
            raise PredictError(str(exc)) from exc
        if isinstance(exc, OSError) and out_dir is not None:  # full disk, read-only --out
            raise PredictError(str(write_failure(out_dir, exc))) from exc
        raise


class _Run:
    """One video through the model: samples -> windows -> forward -> masks and overlay."""

    def __init__(
        self,
        predictor: Predictor,
        info: VideoInfo,
        output: OutputFolder | None,
        per_second: int,
        write_overlay: bool,
        keep_masks: bool,
        background: bool = True,
    ) -> None:
        self.predictor, self.info, self.output = predictor, info, output
        self.per_second, self.keep_masks = per_second, keep_masks
        self.threads = background  # read ahead and write the overlay in their own threads
        self.overlay: writers.OverlayFeed | threads.OverlayThread | None
        self.sampler = FrameSampler(info.path, info.width, info.height, per_second=per_second)
        self.overlay = None
        if write_overlay and output is not None:
            self.overlay = writers.OverlayFeed(
                output.path / "overlay.mp4",
                info,
                per_second=per_second,
                semantic=predictor.semantic,
                video_start=lambda: self.sampler.start_time,
            )
        self.masks: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.seconds: list[dict] = []
        self.mask_paths: list[Path] = []

    def predict(
        self, batch_clips: int, keep_frames: bool, warnings: list[str], say: Callable
    ) -> PredictionResult:
        started = time.perf_counter()
        p, info = self.predictor, self.info
        if self.output is not None:
            (self.output.path / "masks").mkdir()
        audio = AudioWindows(info.path, lambda: self.sampler.start_time) if info.audio else None
        if self.overlay is not None and self.threads:
            window_masks = p.frames_per_clip * self.per_second
            self.overlay = threads.OverlayThread(
                self.overlay, max_waiting=2 * window_masks + batch_clips * p.frames_per_clip
            )
        batches = self._batches(audio, batch_clips, keep_frames)
        if self.threads:
            batches = threads.Prefetch(lambda: self._batches(audio, batch_clips, keep_frames))
        try:
            for batch in batches:
                self._forward(batch, say)
            if self.sampler.num_frames == 0:
                raise PredictError(f"{info.path}: the video stream holds no decodable frame")
            self._check_length()
            num_samples = self.sampler.num_samples
            overlay_frames = self.overlay.finish(num_samples) if self.overlay else None
        finally:
            batches.close()  # type: ignore[union-attr]
            if audio is not None:
                audio.close()
            if self.overlay is not None:
                self.overlay.abort()
        if audio is not None and audio.ended_early:
            warnings.append("the audio track ends before the video: the rest is silence")
            say(
                "warning: the audio track ends before the video; the rest is predicted with silence"
            )
        summary = describe.prediction_summary(
            self.info,
            {"setting": p.setting, "frames_per_clip": p.frames_per_clip, "image_size": p.image_size}
            | p.info,
            self.sampler,
            self.seconds,
            warnings=warnings,
            per_second=self.per_second,
            overlay_frames=overlay_frames,
            wrote=self.output is not None,
            elapsed=time.perf_counter() - started,
        )
        paths: dict[str, Any] = {}
        if self.output is not None:
            text = json.dumps(summary, indent=2) + "\n"
            summary_path = atomic_write(
                self.output.path / "summary.json", lambda t: t.write_text(text)
            )
            paths = {"masks": self.mask_paths, "summary": summary_path}
            if overlay_frames is not None:
                paths["overlay"] = self.output.path / "overlay.mp4"
        return PredictionResult(self.masks, summary, self.frames, None, paths)

    def _batches(
        self, audio: AudioWindows | None, batch_clips: int, keep_frames: bool
    ) -> Iterator[list[schedule.Window]]:
        """The windows with their inputs (frames, extras, log-mel), batch_clips at a time,
        in the order of their audio start."""
        p = self.predictor
        windows = schedule.SlidingWindows(p.frames_per_clip, self.per_second)
        samples = iter(self.sampler)
        ready: list[schedule.Window] = []
        try:
            for j, frame_time, rgb in samples:
                window, full = windows.add(j)
                window.times.append(frame_time)
                window.frames.append(
                    inputs.preprocess_frame(rgb, p.image_size, semantic=p.semantic)
                )
                if p.make_extra_inputs is not None:  # e.g. a maskige per frame
                    window.extras.append(p.make_extra_inputs(rgb, p.image_size))
                if keep_frames and window.phase == 0:
                    window.rgb.append(rgb)
                if full:
                    ready.append(self._add_audio(window, audio))
                if len(ready) == batch_clips:
                    yield ready
                    ready = []
            ready += [self._add_audio(w, audio) for w in windows.rest()]
            for first in range(0, len(ready), batch_clips):
                yield ready[first : first + batch_clips]
        finally:
            samples.close()  # type: ignore[attr-defined]

    def _add_audio(self, window: schedule.Window, audio: AudioWindows | None) -> schedule.Window:
        n = len(window.samples)
        waveform = audio.take(window.start, n) if audio is not None else None
        window.log_mel = inputs.audio_examples(waveform, audio.rate if audio else 0, n)
        return window

    @torch.inference_mode()
    def _forward(self, windows: list[schedule.Window], say: Callable[[str], None]) -> None:
        """VGGish and the model on B windows; each real frame's mask is handed on."""
        p, per_clip = self.predictor, self.predictor.frames_per_clip
        log_mel = torch.from_numpy(np.concatenate([w.log_mel for w in windows]))  # [sum n, 96, 64]
        emb = p.vggish(log_mel.to(p.device)[:, None])  # [sum n, 128]
        padded, start = [], 0
        extras: dict[str, list[torch.Tensor]] = {}
        for w in windows:
            frames = torch.from_numpy(np.stack(w.frames)).to(p.device)  # [n, 3, S, S]
            n = len(w.samples)
            padded.append(
                inputs.pad_window(frames, emb[start : start + n], per_clip, semantic=p.semantic)
            )
            for key in w.extras[0] if w.extras else ():
                values = torch.from_numpy(np.stack([e[key] for e in w.extras])).to(p.device)
                extras.setdefault(key, []).append(
                    inputs.pad_frames(values, per_clip, semantic=p.semantic)  # [T, ...]
                )
            start += n
        frames, audio_emb, valid = (torch.cat(parts) for parts in zip(*padded))  # [B*T, ...]
        model_extras = {key: torch.cat(parts) for key, parts in extras.items()}  # [B*T, ...]
        output = step.forward(
            p.model, frames, audio_emb, valid if p.semantic else None, **model_extras
        )
        size = (self.info.height, self.info.width)
        for b, w in enumerate(windows):
            n = len(w.samples)
            logits = output.logits[b * per_clip : b * per_clip + n]  # [n, K, S, S]
            masks = step.predicted_masks(logits, semantic=p.semantic, size=size)  # [n, H, W]
            for i, j in enumerate(w.samples):
                self._take_mask(w, i, j, masks[i])
        if isinstance(self.overlay, writers.OverlayFeed):  # single thread: write what is known
            self.overlay.pump()
        say(f"predicted {len(self.seconds)} s of video")

    def _take_mask(self, window: schedule.Window, i: int, j: int, mask: np.ndarray) -> None:
        """mask uint8 [H, W] of sample j, the i-th of its window."""
        semantic = self.predictor.semantic
        if window.phase == 0:
            second = j // self.per_second
            entry = {"second": second, "frame_time": round(window.times[i], 6)}
            self.seconds.append(entry | describe.mask_summary(mask, semantic=semantic))
            if self.keep_masks:
                self.masks.append(mask)
            if window.rgb:
                self.frames.append(window.rgb[i])
            if self.output is not None:
                png = self.output.path / "masks" / f"{second:05d}.png"
                self.mask_paths.append(writers.save_mask(mask, png, semantic=semantic))
        if self.overlay is not None:
            self.overlay.add(j, mask)

    def _check_length(self) -> None:
        decoded, header = float(self.sampler.end_time), self.info.header_duration
        if header is not None and decoded < header - max(TRUNCATION_TOLERANCE_S, 0.01 * header):
            raise PredictError(
                f"{self.info.path}: decoding stopped after {decoded:.2f} s but the header says "
                f"{header:.2f} s: the file seems truncated or damaged"
            )
