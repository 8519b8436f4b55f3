"""Segment the sounding objects of any video file (`avsbench predict VIDEO --weights CKPT`).

The video is read with PyAV as a stream, window by window, so its length does not matter:

- Frames: one per second, sampled as in the AVSBench preprocessing (spec
  AVSBENCH_FORMATS.md section 3): for second i (0-based) the frame on screen at time
  i + 15/16 s, i.e. the last frame whose presentation time is <= i + 15/16 (for an integer
  frame rate this is exactly the published index int(i*fps + (15/16)*fps)); seconds past
  the last frame reuse the last frame. A video lasting d seconds gives ceil(d) seconds.
- Audio: the first audio track, decoded to float, channels averaged, then the project's
  VGGish front end (`avsbench.data.audio.log_mel_examples`, which resamples to 16 kHz);
  one 0.96 s log-mel example per second of the window.
- Windows: the seconds are grouped in clips of `frames_per_clip` (5 for S4/MS3, 10 for
  AVSS). The last clip is padded as the model was trained: S4/MS3 repeat the last frame
  and audio example; AVSS appends zero frames with frame_valid 0 (zero audio embedding).
- Frame geometry: S4/MS3 frames are resized to 224 x 224 with cv2 (the preprocessing of
  the release) and then to the model's image size with PIL bilinear; AVSS frames are
  resized to the image size with PIL bilinear (the published val/test transform).
- Masks: logits are upsampled bilinearly to the video's resolution, then thresholded at
  0.5 (sigmoid, S4/MS3) or argmax over classes (AVSS).

Outputs (only when an output folder is given), written into a temporary folder next to it
and renamed into place on success, so a failed or interrupted run leaves nothing behind:
`masks/<second:05d>.png`, `overlay.mp4` and `summary.json` (docs/PREDICT.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_MAX_PIXELS = 4096 * 4096  # largest frame (width * height) accepted by default
SAMPLE_OFFSET = Fraction(15, 16)  # the frame of second i is the one shown at i + 15/16 s
OFFICIAL_FRAME_SIZE = 224  # S4/MS3 frames are stored at 224 x 224 by the preprocessing
OVERLAY_FPS = 1  # overlay.mp4 shows one sampled frame per second: it plays in real time
TRUNCATION_TOLERANCE_S = 1.0  # decoded length may fall this short of the header's length
FULL_UPSAMPLE_ELEMENTS = 2**25  # larger AVSS logit stacks are upsampled class by class
BACKBONE_ALIASES = {"resnet": "resnet50", "pvt": "pvt_v2_b5"}  # official flag values


class PredictError(ValueError):
    """Bad input to `avsbench predict`: the message names the file and the fix."""


# ----------------------------------------------------------------------------- video probing


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says (decoded facts are added to the summary later)."""

    path: str
    width: int
    height: int
    fps: float | None  # average frame rate from the header (None if unknown)
    header_duration: float | None  # seconds, from the stream or the container header
    codec: str
    audio: AudioInfo | None


def _av_error_types() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, EOFError, ValueError, RuntimeError)


def probe_video(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Open `path`, check it holds a usable video stream of at most `max_pixels` pixels.

    Raises PredictError for a missing / empty / unreadable file, no video stream or an
    oversized frame. Nothing is decoded beyond the header.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise PredictError(f"{path}: the file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PredictError(
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
            fps = float(vs.average_rate) if vs.average_rate else None
            audio = None
            if container.streams.audio:
                acc = container.streams.audio[0].codec_context
                audio = AudioInfo(int(acc.sample_rate or 0), int(acc.channels or 0), acc.name)
            codec = vs.codec_context.name
    except PredictError:
        raise
    except _av_error_types() as exc:
        raise PredictError(f"{path}: not a readable video file ({exc})") from exc
    if width <= 0 or height <= 0:
        raise PredictError(f"{path}: the video stream has no frame size ({width}x{height})")
    if width * height > max_pixels:
        raise PredictError(
            f"{path}: frames of {width}x{height} = {width * height} pixels exceed the limit of "
            f"{max_pixels} pixels; pass --max-pixels {width * height} (Python: "
            f"max_pixels={width * height}) to process it anyway"
        )
    if audio is not None and audio.sample_rate <= 0:
        raise PredictError(f"{path}: the audio stream has no sample rate")
    return VideoInfo(str(path), width, height, fps, duration, codec, audio)


# ----------------------------------------------------------------------------- streaming readers


class FrameSampler:
    """Iterate (second, frame_time, rgb uint8 [H, W, 3]) for seconds 0, 1, ... of a video.

    Streams the decoder; only the frame currently on screen is held. After iteration,
    `end_time` is the end of the last frame (seconds after the first frame), `num_frames`
    the number of decoded frames and `start_time` the first frame's absolute time.
    Frames whose size differs from (width, height) are rescaled to it.
    """

    def __init__(self, path: str, width: int, height: int) -> None:
        self.path, self.width, self.height = path, width, height
        self.start_time: Fraction | None = None
        self.end_time = Fraction(0)
        self.num_frames = 0

    def _rgb(self, frame: Any) -> np.ndarray:
        return frame.to_ndarray(format="rgb24", width=self.width, height=self.height)

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        import av

        errors = _av_error_types()
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                rate = Fraction(stream.average_rate) if stream.average_rate else None
                time_base = Fraction(stream.time_base) if stream.time_base else None
                second = 0
                prev: tuple[Fraction, Any] | None = None
                last_step: Fraction | None = None
                for frame in container.decode(stream):
                    if frame.pts is not None and time_base is not None:
                        t = Fraction(frame.pts) * time_base
                    else:  # no timestamps: count frames at the nominal rate
                        t = Fraction(self.num_frames) / (rate or 25)
                    if self.start_time is None:
                        self.start_time = t
                    rel = t - self.start_time
                    if prev is not None and rel <= prev[0]:
                        continue  # duplicate or out-of-order timestamp: keep the first
                    self.num_frames += 1
                    while prev is not None and rel > second + SAMPLE_OFFSET:
                        yield second, float(prev[0]), self._rgb(prev[1])
                        second += 1
                    if prev is not None:
                        last_step = rel - prev[0]
                    prev = (rel, frame)
                if prev is None:
                    return
                step = self._frame_duration(prev[1], time_base, rate, last_step)
                self.end_time = prev[0] + step
                num_seconds = max(1, math.ceil(self.end_time))
                if second < num_seconds:
                    rgb = self._rgb(prev[1])
                    for s in range(second, num_seconds):
                        yield s, float(prev[0]), rgb
        except errors as exc:
            raise PredictError(
                f"{self.path}: cannot decode the video ({exc}); the file is damaged or truncated"
            ) from exc

    @staticmethod
    def _frame_duration(
        frame: Any,
        time_base: Fraction | None,
        rate: Fraction | None,
        last_step: Fraction | None,
    ) -> Fraction:
        duration = getattr(frame, "duration", None)
        if duration and time_base is not None:
            return Fraction(duration) * time_base
        if rate:
            return 1 / rate
        return last_step or Fraction(1, 25)


class AudioWindows:
    """Iterate float32 mono waveforms [window_seconds * rate] of the first audio track.

    The first sample is aligned to the first video frame (`video_start()`, absolute
    seconds): audio starting later is preceded by zeros, audio starting earlier is cut.
    The last window may be shorter; after the track ends the iterator stops. Every window
    is at the stream's sample rate `rate`.
    """

    def __init__(
        self, path: str, window_seconds: int, video_start: Callable[[], Fraction | None]
    ) -> None:
        self.path, self.window_seconds, self.video_start = path, window_seconds, video_start
        self.rate = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        errors = _av_error_types()
        try:
            with av.open(self.path) as container:
                stream = container.streams.audio[0]
                self.rate = int(stream.codec_context.sample_rate)
                window = self.window_seconds * self.rate
                resampler: Any = None
                pending: list[np.ndarray] = []
                buffered = 0
                skip = 0  # samples still to drop (audio starting before the video)
                started = False
                for frame in container.decode(stream):
                    if resampler is None:
                        resampler = av.AudioResampler(format="fltp", rate=self.rate)
                    for out in resampler.resample(frame):
                        samples = out.to_ndarray().astype(np.float32).mean(axis=0)  # [n]
                        if not started:
                            started = True
                            lead = self._lead_samples(frame, stream)
                            while lead >= window:  # whole windows of silence, one at a time
                                yield np.zeros(window, np.float32)
                                lead -= window
                            if lead > 0:
                                pending.append(np.zeros(lead, np.float32))
                                buffered += lead
                            else:
                                skip = -lead
                        if skip:
                            cut = min(skip, len(samples))
                            samples, skip = samples[cut:], skip - cut
                        pending.append(samples)
                        buffered += len(samples)
                        while buffered >= window:
                            joined = np.concatenate(pending)
                            yield joined[:window]
                            pending, buffered = [joined[window:]], len(joined) - window
                if resampler is not None:
                    for out in resampler.resample(None):
                        tail = out.to_ndarray().astype(np.float32).mean(axis=0)
                        pending.append(tail[skip:])
                        buffered += max(len(tail) - skip, 0)
                        skip = 0
                joined = np.concatenate(pending) if pending else np.zeros(0, np.float32)
                while len(joined) >= window:
                    yield joined[:window]
                    joined = joined[window:]
                if len(joined):
                    yield joined
        except errors as exc:
            raise PredictError(
                f"{self.path}: cannot decode the audio track ({exc}); the file is damaged or "
                "truncated (--allow-silence does not skip a broken track)"
            ) from exc

    def _lead_samples(self, frame: Any, stream: Any) -> int:
        """Samples of silence before the first audio frame (negative: samples to drop)."""
        start = self.video_start()
        if frame.pts is None or stream.time_base is None or start is None:
            return 0
        offset = Fraction(frame.pts) * Fraction(stream.time_base) - start
        return int(round(offset * self.rate))


# ----------------------------------------------------------------------------- model loading


@dataclass
class Predictor:
    """A loaded model ready for `predict_video` (load once, predict many videos).

    model: AVSModel in eval mode; vggish: frozen VGGish; config: the avsbench Config the
    model was built from; info: what the summary reports about the checkpoint.
    """

    model: torch.nn.Module
    vggish: torch.nn.Module
    config: Any
    device: torch.device
    info: dict[str, Any]

    @property
    def setting(self) -> str:
        return str(self.config.model.setting)

    @property
    def semantic(self) -> bool:
        return self.setting == "avss"

    @property
    def frames_per_clip(self) -> int:
        return int(self.config.data.frames_per_clip)

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _torch_load(path: Path) -> Any:
    """torch.load restricted to tensors and plain containers (no code from the file)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PredictError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc}). Expected a "
            "project checkpoint (<session>_best.pth) or an official AVSBench state dict"
        ) from exc


def load_predictor(
    weights: str | os.PathLike[str],
    *,
    setting: str | None = None,
    backbone: str | None = None,
    vggish_weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
) -> Predictor:
    """Build the model of a checkpoint and load its weights.

    Project checkpoints (`{"format": "avsbench/1", "model", "config", ...}`) carry their
    config; `setting`/`backbone`, if given, must agree with it. Official flat state dicts
    (detected by their key names) and bare state dicts need `setting` (s4|ms3|avss) and
    `backbone` (resnet50|pvt_v2_b5, or the official resnet|pvt) and use the preset of the
    setting. `vggish_weights` (vggish-10086976.pth) overrides the config's VGGish file.
    """
    from avsbench import config as config_lib
    from avsbench.models.avs import build_model_from_config
    from avsbench.models.checkpoints import load_official_state_dict, looks_official

    path = Path(weights)
    if not path.is_file():
        raise PredictError(f"{path}: checkpoint not found (--weights)")
    obj = _torch_load(path)
    if backbone is not None:
        backbone = BACKBONE_ALIASES.get(backbone, backbone)
    info: dict[str, Any] = {"weights": str(path)}

    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("avsbench/"):
        if "model" not in obj or "config" not in obj:
            raise PredictError(f"{path}: project checkpoint without 'model' or 'config' entry")
        try:
            cfg = config_lib.from_dict(obj["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictError(f"{path}: the stored config is not valid ({exc})") from exc
        for name, given, stored in (
            ("--setting", setting, cfg.model.setting),
            ("--backbone", backbone, cfg.model.backbone),
        ):
            if given is not None and given != stored:
                raise PredictError(
                    f"{path}: {name} {given} contradicts the checkpoint's config ({stored}); "
                    f"leave {name} out for project checkpoints"
                )
        state_dict, kind = obj["model"], "avsbench/1"
        info.update(
            {k: obj[k] for k in ("epoch", "best_miou") if isinstance(obj.get(k), int | float)}
        )
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if setting is None or backbone is None:
            raise PredictError(
                f"{path}: a flat state dict does not say which model it holds; pass "
                "--setting (s4|ms3|avss) and --backbone (resnet50|pvt_v2_b5)"
            )
        cfg = config_lib.override(config_lib.preset(setting), {"model.backbone": backbone})
        state_dict = obj
        kind = "official" if looks_official(obj) else "state_dict"
    else:
        raise PredictError(
            f"{path}: not a checkpoint this project can read (expected a dict with "
            "'format': 'avsbench/1' or a flat state dict of tensors)"
        )
    # the checkpoint holds the whole network: the backbone's ImageNet file is not needed
    cfg = config_lib.override(cfg, {"model.backbone_weights": None})
    if vggish_weights is not None:
        cfg = config_lib.override(cfg, {"model.vggish_weights": str(vggish_weights)})

    try:
        model = build_model_from_config(cfg.model)
    except (KeyError, ValueError) as exc:
        raise PredictError(f"{path}: cannot build the model of this checkpoint ({exc})") from exc
    try:
        if kind == "official":
            load_official_state_dict(model, state_dict)
        else:
            model.load_state_dict(state_dict, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise PredictError(
            f"{path}: the weights do not fit a {cfg.model.setting} / {cfg.model.backbone} "
            f"model ({exc})"
        ) from exc
    vggish = _build_vggish(cfg, path)
    device = torch.device(device) if device is not None else _default_device()
    model.to(device).eval()
    vggish.to(device).eval()
    info.update(
        {
            "checkpoint_format": kind,
            "setting": cfg.model.setting,
            "backbone": cfg.model.backbone,
            "num_classes": int(cfg.model.num_classes),
            "image_size": int(cfg.data.image_size),
            "frames_per_clip": int(cfg.data.frames_per_clip),
            "vggish_weights": cfg.model.vggish_weights,
        }
    )
    return Predictor(model, vggish, cfg, device, info)


def _build_vggish(cfg: Any, path: Path) -> torch.nn.Module:
    from avsbench.models.avs import build_vggish

    weights = cfg.model.vggish_weights
    if weights is not None and not Path(weights).is_file():
        raise PredictError(
            f"{path}: the checkpoint's VGGish weights {weights!r} are not found here; "
            "pass --vggish-weights PATH/vggish-10086976.pth"
        )
    try:
        vggish = build_vggish(cfg.model)
    except (FileNotFoundError, ValueError) as exc:
        raise PredictError(f"{path}: cannot load the VGGish weights ({exc})") from exc
    for p in vggish.parameters():
        p.requires_grad_(False)
    return vggish


# ----------------------------------------------------------------------------- pre/post-processing


def preprocess_frame(rgb: np.ndarray, image_size: int, *, semantic: bool) -> np.ndarray:
    """Video frame uint8 [H, W, 3] -> ImageNet-normalised float32 [3, S, S] (S = image_size).

    S4/MS3: cv2.resize to 224 x 224 (bilinear; the release's preprocessing), then PIL
    bilinear to S if S differs. AVSS: PIL bilinear straight to S (the val/test transform).
    """
    import cv2
    from PIL import Image

    from avsbench.data.transforms import normalize_image, resize_square

    if not semantic:
        rgb = cv2.resize(rgb, (OFFICIAL_FRAME_SIZE, OFFICIAL_FRAME_SIZE))
    return normalize_image(resize_square(Image.fromarray(rgb), image_size))


def audio_examples(waveform: np.ndarray | None, rate: int, seconds: int) -> np.ndarray:
    """Log-mel examples float32 [seconds, 96, 64] for a window's waveform.

    Silence (None) or audio shorter than one example (0.975 s) is zero-padded first; fewer
    examples than seconds repeat the last one (the release's rule for short clips).
    """
    from avsbench.data.audio import MIN_SAMPLES, SAMPLE_RATE, clip_log_mel, log_mel_examples

    if waveform is None:
        waveform, rate = np.zeros(seconds * SAMPLE_RATE, np.float32), SAMPLE_RATE
    min_len = math.ceil(MIN_SAMPLES * rate / SAMPLE_RATE) + 1
    if len(waveform) < min_len:
        waveform = np.concatenate([waveform, np.zeros(min_len - len(waveform), np.float32)])
    examples = log_mel_examples(waveform, rate)  # [N, 96, 64]
    return clip_log_mel(examples, seconds, pad="repeat")


def upsample_mask(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Logits [K, h, w] of one frame -> mask uint8 [H, W] at size (H, W).

    K = 1: (bilinear logit > 0), i.e. sigmoid > 0.5 -> 0/1. K > 1: argmax over classes of
    the bilinearly upsampled logits (class by class when the whole stack would be large).
    """
    if logits.shape[0] == 1:
        up = F.interpolate(logits[None].float(), size, mode="bilinear", align_corners=False)
        return (up[0, 0] > 0).to(torch.uint8).cpu().numpy()
    k = logits.shape[0]
    if k * size[0] * size[1] <= FULL_UPSAMPLE_ELEMENTS:
        up = F.interpolate(logits[None].float(), size, mode="bilinear", align_corners=False)
        return up[0].argmax(0).to(torch.uint8).cpu().numpy()
    best = F.interpolate(logits[None, :1].float(), size, mode="bilinear", align_corners=False)[0, 0]
    ids = torch.zeros(size, dtype=torch.uint8, device=logits.device)
    for c in range(1, k):
        up = F.interpolate(logits[None, c : c + 1].float(), size, mode="bilinear")[0, 0]
        better = up > best  # strict: ties keep the lower class, as argmax does
        best = torch.where(better, up, best)
        ids[better] = c
    return ids.cpu().numpy()


# ----------------------------------------------------------------------------- outputs


class OverlayWriter:
    """H.264 (libx264, else MPEG-4 part 2) MP4 of overlays at OVERLAY_FPS frames per second.

    Frames are padded with black to even width/height (yuv420p needs it).
    """

    def __init__(self, path: Path, width: int, height: int) -> None:
        import av

        self.path = path
        self.width, self.height = width + width % 2, height + height % 2
        self.container = av.open(str(path), mode="w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=OVERLAY_FPS)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            self.stream.bit_rate = 4_000_000
        self.codec = codec
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            padded = np.zeros((self.height, self.width, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.count
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # the folder is deleted anyway
            pass


class OutputFolder:
    """A temporary folder next to `target`, renamed to `target` by `commit()`.

    `abort()` (on any error or Ctrl-C) deletes it. `target` must not exist or be an empty
    folder, unless `overwrite` (then the old folder is replaced only on success).
    """

    def __init__(self, target: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.target = Path(target).absolute()
        if self.target.exists():
            if not self.target.is_dir():
                raise PredictError(f"{self.target}: exists and is not a folder (--out)")
            if any(self.target.iterdir()) and not overwrite:
                raise PredictError(
                    f"{self.target}: output folder exists and is not empty; pass --overwrite "
                    "(Python: overwrite=True) or choose another --out"
                )
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(
            tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent)
        )

    def commit(self) -> Path:
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, old / "previous")
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


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
        return self.summary["model"]["setting"] == "avss"

    @property
    def num_seconds(self) -> int:
        return int(self.summary["num_seconds"])


@dataclass
class _Clip:
    seconds: list[int]  # the real seconds of this window
    frame_times: list[float]
    frames_rgb: list[np.ndarray]  # uint8 [H, W, 3] per real second
    frames: np.ndarray  # float32 [n, 3, S, S]
    log_mel: np.ndarray  # float32 [n, 96, 64]


def _second_summary(second: int, frame_time: float, mask: np.ndarray, semantic: bool) -> dict:
    total = int(mask.size)
    entry: dict[str, Any] = {"second": second, "frame_time": round(frame_time, 6)}
    if not semantic:
        pixels = int(np.count_nonzero(mask))
        entry.update({"pixels": pixels, "area_fraction": pixels / total})
        return entry
    from avsbench.data.palette import CLASS_NAMES

    counts = np.bincount(mask.reshape(-1), minlength=len(CLASS_NAMES))
    classes = [
        {
            "id": int(c),
            "name": CLASS_NAMES[c],
            "pixels": int(counts[c]),
            "area_fraction": int(counts[c]) / total,
        }
        for c in np.argsort(-counts, kind="stable")
        if c != 0 and counts[c] > 0
    ]
    entry.update({"classes": classes, "area_fraction": int(total - counts[0]) / total})
    return entry


def _overlay_frame(rgb: np.ndarray, mask: np.ndarray, semantic: bool) -> np.ndarray:
    from avsbench import visualize

    out = visualize.overlay(rgb, mask, semantic=semantic)
    if semantic:
        present = [int(c) for c in np.unique(mask) if c != 0]
        if present:
            legend = visualize.legend_image(present, min(out.shape[0], 18 * len(present) + 2))
            h, w = min(legend.shape[0], out.shape[0]), min(legend.shape[1], out.shape[1])
            out[:h, :w] = legend[:h, :w]
    return out


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
    log: Callable[[str], None] | None = None,
) -> PredictionResult:
    """Segment the sounding objects of a video, one mask per second.

    weights: a checkpoint path (project format or official state dict; the latter needs
    `setting` and `backbone`) or a `Predictor` from `load_predictor` (reuse across videos).
    out_dir: None writes nothing (notebook use); else masks/, overlay.mp4 and summary.json
    appear there atomically (see the module docstring). allow_silence: a video without an
    audio track is predicted with silent audio instead of raising. batch_clips: windows per
    forward pass. keep_masks / keep_frames: hold the per-second masks / sampled frames in
    memory (turn masks off for very long videos written to disk). log: receives progress
    and warning lines (None: quiet).
    Raises PredictError for bad input, leaving no output folder behind.
    """
    say = log or (lambda _msg: None)
    if batch_clips < 1:
        raise PredictError(f"batch_clips must be >= 1, got {batch_clips}")
    info = probe_video(video_path, max_pixels)
    warnings: list[str] = []
    if info.audio is None:
        if not allow_silence:
            raise PredictError(
                f"{info.path}: the video has no audio track; audio-visual segmentation needs "
                "sound. Pass --allow-silence (Python: allow_silence=True) to predict with "
                "silent audio"
            )
        warnings.append("the video has no audio track: predicted with silence (--allow-silence)")
        say(f"warning: {info.path} has no audio track; predicting with silence")
    output = OutputFolder(out_dir, overwrite) if out_dir is not None else None
    try:
        predictor = (
            weights
            if isinstance(weights, Predictor)
            else load_predictor(
                weights,
                setting=setting,
                backbone=backbone,
                vggish_weights=vggish_weights,
                device=device,
            )
        )
        result = _run(
            predictor,
            info,
            output,
            batch_clips,
            write_overlay,
            keep_masks,
            keep_frames,
            warnings,
            say,
        )
        if output is not None:
            result.out_dir = output.commit()
            result.paths = {
                key: (
                    [result.out_dir / p.relative_to(output.path) for p in value]
                    if isinstance(value, list)
                    else result.out_dir / value.relative_to(output.path)
                )
                for key, value in result.paths.items()
            }
        return result
    except BaseException:
        if output is not None:
            output.abort()
        raise


class _AudioFeed:
    """Hands out one waveform per window: the track's next window, or None for silence."""

    def __init__(self, reader: AudioWindows | None) -> None:
        self.reader = reader
        self.iterator = iter(reader) if reader is not None else None
        self.ended_early = False

    def close(self) -> None:
        """Stop the decoder now (closes the file) rather than at garbage collection."""
        if self.iterator is not None:
            self.iterator.close()  # type: ignore[attr-defined]
            self.iterator = None

    def next(self, seconds: int) -> tuple[np.ndarray | None, int]:
        """The waveform of the next window, cut or zero-padded to `seconds` (None: silence).

        A track that stops more than half a second before the window's end is reported via
        `ended_early` (a few missing milliseconds are normal for AAC and are not)."""
        if self.iterator is None:
            return None, 0
        waveform = next(self.iterator, None)
        if waveform is None:
            self.ended_early = True
            self.iterator = None
            return None, 0
        assert self.reader is not None
        rate = self.reader.rate
        need = seconds * rate
        if len(waveform) < need:
            self.ended_early |= need - len(waveform) > rate // 2
            waveform = np.concatenate([waveform, np.zeros(need - len(waveform), np.float32)])
        return waveform[:need], rate


def _make_clip(
    window: list[tuple[int, float, np.ndarray]],
    predictor: Predictor,
    waveform: np.ndarray | None,
    rate: int,
) -> _Clip:
    """One window of n <= frames_per_clip seconds -> model inputs (not yet padded)."""
    n = len(window)
    frames = np.stack(
        [
            preprocess_frame(rgb, predictor.image_size, semantic=predictor.semantic)
            for _, _, rgb in window
        ]
    )  # [n, 3, S, S]
    return _Clip(
        seconds=[s for s, _, _ in window],
        frame_times=[t for _, t, _ in window],
        frames_rgb=[rgb for _, _, rgb in window],
        frames=frames,
        log_mel=audio_examples(waveform, rate, n),
    )


@torch.inference_mode()
def _forward(predictor: Predictor, clips: list[_Clip]) -> torch.Tensor:
    """Run VGGish and the model on B windows -> logits [B*T, K, S, S].

    Each window of n < T real seconds is padded to T: S4/MS3 repeat the last frame and
    audio embedding; AVSS appends zero frames and zero embeddings with frame_valid 0.
    """
    device, per_clip = predictor.device, predictor.frames_per_clip
    log_mel = torch.from_numpy(np.concatenate([c.log_mel for c in clips]))  # [sum n, 96, 64]
    emb = predictor.vggish(log_mel.to(device)[:, None])  # [sum n, 128]
    frames, audio, valid = [], [], []
    start = 0
    for clip in clips:
        n = len(clip.seconds)
        f = torch.from_numpy(clip.frames).to(device)  # [n, 3, S, S]
        a = emb[start : start + n]  # [n, 128]
        start += n
        pad = per_clip - n
        v = torch.ones(per_clip, device=device)
        if pad:
            if predictor.semantic:
                f = torch.cat([f, f.new_zeros((pad,) + f.shape[1:])])
                a = torch.cat([a, a.new_zeros((pad, a.shape[1]))])
                v[n:] = 0
            else:
                f = torch.cat([f, f[-1:].expand((pad,) + f.shape[1:])])
                a = torch.cat([a, a[-1:].expand(pad, a.shape[1])])
        frames.append(f)
        audio.append(a)
        valid.append(v)
    frames_bt = torch.cat(frames)  # [B*T, 3, S, S]
    audio_bt = torch.cat(audio)  # [B*T, 128]
    valid_bt = torch.cat(valid) if predictor.semantic else None  # [B*T]
    out = predictor.model(frames_bt, audio_bt, valid_bt)
    return out.logits  # [B*T, K, S, S]


def _run(
    predictor: Predictor,
    info: VideoInfo,
    output: OutputFolder | None,
    batch_clips: int,
    write_overlay: bool,
    keep_masks: bool,
    keep_frames: bool,
    warnings: list[str],
    say: Callable[[str], None],
) -> PredictionResult:
    from avsbench import visualize

    started = time.perf_counter()
    semantic, per_clip = predictor.semantic, predictor.frames_per_clip
    sampler = FrameSampler(info.path, info.width, info.height)
    feed = _AudioFeed(
        AudioWindows(info.path, per_clip, lambda: sampler.start_time) if info.audio else None
    )
    frames_iter = iter(sampler)
    size = (info.height, info.width)

    masks: list[np.ndarray] = []
    frames_kept: list[np.ndarray] = []
    seconds_summary: list[dict] = []
    mask_paths: list[Path] = []
    paths: dict[str, Any] = {}
    overlay_writer = None
    if output is not None:
        (output.path / "masks").mkdir()
        if write_overlay:
            overlay_writer = OverlayWriter(output.path / "overlay.mp4", info.width, info.height)

    def emit(clips: list[_Clip]) -> None:
        logits = _forward(predictor, clips)  # [B*T, K, S, S]
        for b, clip in enumerate(clips):
            for j, second in enumerate(clip.seconds):
                mask = upsample_mask(logits[b * per_clip + j], size)  # [H, W] uint8
                rgb = clip.frames_rgb[j]
                seconds_summary.append(_second_summary(second, clip.frame_times[j], mask, semantic))
                if keep_masks:
                    masks.append(mask)
                if keep_frames:
                    frames_kept.append(rgb)
                if output is not None:
                    png = output.path / "masks" / f"{second:05d}.png"
                    save = visualize.save_palette_mask if semantic else visualize.save_binary_mask
                    mask_paths.append(save(mask, png))
                if overlay_writer is not None:
                    overlay_writer.write(_overlay_frame(rgb, mask, semantic))
        say(f"predicted {len(seconds_summary)} s of video")

    try:
        pending: list[_Clip] = []
        window: list[tuple[int, float, np.ndarray]] = []
        for item in frames_iter:
            window.append(item)
            if len(window) == per_clip:
                pending.append(_make_clip(window, predictor, *feed.next(len(window))))
                window = []
            if len(pending) == batch_clips:
                emit(pending)
                pending = []
        if window:
            pending.append(_make_clip(window, predictor, *feed.next(len(window))))
        if pending:
            emit(pending)
        if overlay_writer is not None:
            overlay_writer.close()
            paths["overlay"] = overlay_writer.path
            overlay_writer = None
    finally:
        frames_iter.close()
        feed.close()
        if overlay_writer is not None:
            overlay_writer.abort()

    if sampler.num_frames == 0:
        raise PredictError(f"{info.path}: the video stream holds no decodable frame")
    decoded = float(sampler.end_time)
    if info.header_duration is not None and decoded < info.header_duration - max(
        TRUNCATION_TOLERANCE_S, 0.01 * info.header_duration
    ):
        raise PredictError(
            f"{info.path}: decoding stopped after {decoded:.2f} s but the header says "
            f"{info.header_duration:.2f} s: the file seems truncated or damaged"
        )
    if feed.ended_early:
        warnings.append("the audio track ends before the video: the rest is silence")
        say("warning: the audio track ends before the video; the rest is predicted with silence")

    summary: dict[str, Any] = {
        "avsbench_version": _version(),
        "video": {
            "path": info.path,
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "codec": info.codec,
            "duration": decoded,
            "decoded_frames": sampler.num_frames,
            "audio": dataclasses.asdict(info.audio) if info.audio else None,
        },
        "model": {
            "setting": predictor.setting,
            "frames_per_clip": per_clip,
            "image_size": predictor.image_size,
            **predictor.info,
        },
        "sampling": {
            "frame": "the frame on screen at second + 15/16",
            "window_seconds": per_clip,
            "padding": "zero frames, frame_valid 0" if semantic else "repeat the last second",
            "mask": "argmax of bilinear logits" if semantic else "bilinear logit > 0",
        },
        "audio_source": "track" if info.audio else "silence",
        "warnings": warnings,
        "num_seconds": len(seconds_summary),
        "seconds": seconds_summary,
    }
    if semantic:
        summary["classes_present"] = _classes_present(seconds_summary)
    if output is not None:
        summary["outputs"] = {
            "masks": "masks/<second:05d>.png",
            "overlay": "overlay.mp4" if write_overlay else None,
        }
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    if output is not None:
        paths["masks"] = mask_paths
        paths["summary"] = visualize.atomic_write(
            output.path / "summary.json",
            lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"),
        )
    return PredictionResult(masks, summary, frames_kept, None, paths)


def _classes_present(seconds: list[dict]) -> list[dict]:
    """AVSS: per class over the whole video, the seconds it appears in and its pixels."""
    totals: dict[int, dict] = {}
    for entry in seconds:
        for c in entry["classes"]:
            t = totals.setdefault(
                c["id"], {"id": c["id"], "name": c["name"], "seconds": 0, "pixels": 0}
            )
            t["seconds"] += 1
            t["pixels"] += c["pixels"]
    return sorted(totals.values(), key=lambda t: -t["pixels"])


def _version() -> str:
    from avsbench import __version__

    return __version__


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="any video file PyAV (FFmpeg) can read")
    parser.add_argument(
        "--weights", required=True, help="checkpoint: <session>_best.pth or an official .pth"
    )
    parser.add_argument(
        "--setting",
        choices=("s4", "ms3", "avss"),
        default=None,
        help="model setting; needed for official state dicts (project checkpoints store it)",
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="resnet50 | pvt_v2_b5 (or resnet | pvt); needed for official state dicts",
    )
    parser.add_argument(
        "--vggish-weights",
        default=None,
        help="vggish-10086976.pth (overrides the checkpoint config's VGGish file)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: ./<video name>_avsbench); must not exist or be empty",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--allow-silence",
        action="store_true",
        help="predict a video without audio track with silent audio instead of failing",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--batch-clips", type=int, default=1, help="windows per forward pass (default 1)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse frames larger than this many pixels (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    parser.add_argument("--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    """`avsbench predict`: returns 0 on success, 2 on bad input (message on stderr)."""
    out = args.out or f"{Path(args.video).stem}_avsbench"

    def log(message: str) -> None:
        if not args.quiet or message.startswith("warning"):
            print(message, file=sys.stderr)

    try:
        result = predict_video(
            args.video,
            args.weights,
            setting=args.setting,
            backbone=args.backbone,
            vggish_weights=args.vggish_weights,
            out_dir=out,
            device=args.device,
            allow_silence=args.allow_silence,
            batch_clips=args.batch_clips,
            max_pixels=args.max_pixels,
            overwrite=args.overwrite,
            write_overlay=not args.no_overlay,
            keep_masks=False,
            log=log,
        )
    except PredictError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"{result.num_seconds} masks, overlay and summary written to {result.out_dir}",
            file=sys.stderr,
        )
    return 0
