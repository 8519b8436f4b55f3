"""Model inputs from decoded media: frames and log-mel examples as the datasets give them,
and windows padded to the clip length as in training.

Follows the AVSBench release's preprocessing and val/test transforms (docs/PREDICT.md
"How the video is read"): S4/MS3 frames are stored at 224 x 224 by the preprocessing
(cv2, bilinear) and then resized to the model's image size (PIL bilinear); AVSS frames go
to the image size directly. Audio goes through the project's VGGish front end
(`avsbench.data.audio`), one 0.96 s example per second.
"""

from __future__ import annotations

import math

import numpy as np
import torch

OFFICIAL_FRAME_SIZE = 224  # S4/MS3 frames are stored at 224 x 224 by the preprocessing


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
    """Log-mel examples float32 [seconds, 96, 64] for a window's mono waveform at `rate`.

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


def pad_window(
    frames: torch.Tensor, audio_emb: torch.Tensor, frames_per_clip: int, *, semantic: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A window of n <= T real seconds -> (frames [T, 3, S, S], audio_emb [T, 128],
    frame_valid [T]), padded as the model was trained: S4/MS3 repeat the last frame and
    audio embedding (frame_valid all 1); AVSS appends zero frames and zero embeddings with
    frame_valid 0."""
    n = frames.shape[0]
    if n == 0 or n > frames_per_clip:
        raise ValueError(f"a window holds 1..{frames_per_clip} frames, got {n}")
    valid = torch.ones(frames_per_clip, device=frames.device)
    if semantic:
        valid[n:] = 0
    padded = (pad_frames(x, frames_per_clip, semantic=semantic) for x in (frames, audio_emb))
    return (*padded, valid)  # type: ignore[return-value]


def pad_frames(x: torch.Tensor, frames_per_clip: int, *, semantic: bool) -> torch.Tensor:
    """[n, ...] per-frame values -> [T, ...]: AVSS appends zeros, S4/MS3 repeat the last
    (what `pad_window` does to frames and audio, and the extra inputs of a method)."""
    pad = frames_per_clip - x.shape[0]
    if pad <= 0:
        return x
    if semantic:
        return torch.cat([x, x.new_zeros((pad,) + x.shape[1:])])
    return torch.cat([x, x[-1:].expand((pad,) + x.shape[1:])])
