"""The forward step, once: frames and audio embeddings -> model output -> masks.

Training (`train.py`), evaluation (`evaluate.py`), the test command's mask writer
(`writers.py`) and prediction on videos all run the model through `forward` and turn its
logits into masks with `predicted_masks` (docs/ARCHITECTURE.md, "A batch from loader to
metric"). Mixed precision and the channels-last layout live here: the model runs under
`torch.autocast` and its outputs come back in float32, so that losses, metrics and
thresholds never see half precision.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsbench.engine.embeddings import AudioEmbedder, clip_keys
from avsbench.models.contract import unwrap

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FULL_UPSAMPLE_ELEMENTS = 2**25  # larger class-logit stacks of a frame are upsampled class by class


def autocast_context(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for `amp` in {off, bf16, fp16} on the device's type."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of off, bf16, fp16; got {amp!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


def to_channels_last(model: nn.Module) -> nn.Module:
    """Channels-last weights for the 2-D convolutions (the 3-D TPAVI convolutions and the
    linear layers keep their layout; `Module.to(memory_format=...)` would reject them)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model


def as_float32(output: Any) -> Any:
    """The model output (a dataclass such as AVSOutput) with every floating tensor in it,
    including those in lists, in float32."""

    def f(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.float() if x.is_floating_point() else x
        if isinstance(x, list | tuple):
            return type(x)(f(v) for v in x)
        return x

    if isinstance(output, torch.Tensor):
        return f(output)
    changes = {k.name: f(getattr(output, k.name)) for k in dataclasses.fields(output)}
    return dataclasses.replace(output, **changes)


def forward(
    model: nn.Module,
    frames: torch.Tensor,
    audio_emb: torch.Tensor,
    frame_valid: torch.Tensor | None = None,
    *,
    amp: str = "off",
    channels_last: bool = False,
    target_frames: torch.Tensor | None = None,
    **model_kwargs: Any,
) -> Any:
    """model(frames [B*T, 3, S, S], audio_emb [B*T, D], frame_valid [B*T] | None,
    **model_kwargs) under autocast (`amp`) with channels-last frames if asked.

    target_frames: [B*T] bool, the frames whose logits are needed (the method spec's
    `target_frames`);
    passed to the model only when given (None: every frame). Returns the model's output
    (AVSOutput: logits [B*T, K, S, S], ...) in float32. Runs with or without gradients as
    the caller's context says.
    """
    if target_frames is not None:
        model_kwargs["target_frames"] = target_frames
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    with autocast_context(frames.device, amp):
        output = model(frames, audio_emb, frame_valid, **model_kwargs)
    return as_float32(output)


def forward_batch(
    model: nn.Module,
    embedder: AudioEmbedder,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp: str = "off",
    channels_last: bool = False,
    cache_namespace: str = "",
    target_frames: torch.Tensor | None = None,
    **model_kwargs: Any,
) -> Any:
    """One collated loader batch through VGGish (frozen) and `forward`.

    batch: frames [B, T, 3, S, S], audio [B, T, 1, 96, 64], frame_valid [B, T], ids, and
        the extra per-frame inputs the method declared (`data.extra_inputs`; e.g. maskige
        [B, T, 3, S, S]), which reach the model as keyword arguments [B*T, ...].
    cache_namespace: first part of the embedding cache keys, e.g. "s4/train".
    target_frames: [B*T] bool or None, as in `forward`.
    Returns the model output in float32 with logits [B*T, K, S, S].
    """
    frames = batch["frames"].to(device, non_blocking=True)  # [B, T, 3, S, S]
    b, t = frames.shape[:2]
    frames = frames.reshape(b * t, *frames.shape[2:])  # [B*T, 3, S, S]
    keys = clip_keys(cache_namespace, batch) if embedder.memory is not None else None
    audio_emb = embedder(batch["audio"], keys)  # [B*T, D]: 128, or 12288 (conv map)
    frame_valid = batch["frame_valid"].to(device, non_blocking=True).reshape(b * t)  # [B*T]
    for key in extra_input_keys(model):  # the method's extra inputs, e.g. maskige
        extra = batch[key].to(device, non_blocking=True)  # [B, T, ...]
        model_kwargs[key] = extra.reshape(b * t, *extra.shape[2:])  # [B*T, ...]
    return forward(
        model, frames, audio_emb, frame_valid, amp=amp, channels_last=channels_last,
        target_frames=target_frames, **model_kwargs,
    )  # fmt: skip


def extra_input_keys(model: nn.Module) -> tuple[str, ...]:
    """The sample keys of the extra per-frame inputs `model`'s method declares (none for a
    model of no registered method, e.g. a test's stand-in)."""
    from avsbench.models import registry

    try:
        spec = registry.spec_of(unwrap(model))
    except TypeError:
        return ()
    return tuple(extra.key for extra in spec.extra_inputs)


def flat_targets(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """masks [B, T, S, S] -> [B*T, S, S]; gt_valid [B, T] -> [B*T]."""
    masks = batch["masks"].to(device, non_blocking=True)
    masks = masks.reshape(-1, *masks.shape[2:])  # [B*T, S, S]
    gt_valid = batch["gt_valid"].to(device, non_blocking=True).reshape(-1)  # [B*T]
    return masks, gt_valid


# ---------------------------------------------------------------------------------------
# Logits -> masks (the one threshold)
# ---------------------------------------------------------------------------------------
def predicted_masks(
    logits: torch.Tensor, *, semantic: bool, size: Sequence[int] | None = None
) -> np.ndarray:
    """logits [N, K, h, w] -> masks uint8 [N, H, W] on the CPU.

    K = 1 (binary, S4/MS3): sigmoid(logit) > 0.5 in float32 -> 0/1, the published rule
    (equal to logit > 0 except for |logit| below ~3e-8, where the float32 sigmoid rounds to
    0.5). K > 1 (semantic, AVSS): the class id of the largest logit (ties: the lower id).
    size (H, W): bilinear upsampling of the logits first (align_corners False), frame by
    frame, and class by class when a frame's K x H x W would exceed FULL_UPSAMPLE_ELEMENTS;
    None keeps h x w.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be [N, K, h, w], got {tuple(logits.shape)}")
    k = logits.shape[1]
    if semantic != (k > 1):
        kind = "semantic (K > 1)" if semantic else "binary (K = 1)"
        raise ValueError(f"{kind} masks asked for logits with K = {k} channels")
    logits = logits.detach().float()
    if size is None or tuple(size) == tuple(logits.shape[-2:]):
        return _threshold(logits).cpu().numpy()
    size = (int(size[0]), int(size[1]))
    return np.stack([_upsampled_mask(frame, size).cpu().numpy() for frame in logits])


def _threshold(logits: torch.Tensor) -> torch.Tensor:
    """[N, K, H, W] float32 -> uint8 [N, H, W]."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) > 0.5).to(torch.uint8)
    return logits.argmax(dim=1).to(torch.uint8)


def _upsampled_mask(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One frame's logits [K, h, w] -> uint8 [H, W] at `size`."""
    k = logits.shape[0]
    if k == 1 or k * size[0] * size[1] <= FULL_UPSAMPLE_ELEMENTS:
        up = F.interpolate(logits[None], size, mode="bilinear", align_corners=False)
        return _threshold(up)[0]  # [H, W]
    best = F.interpolate(logits[None, :1], size, mode="bilinear", align_corners=False)[0, 0]
    ids = torch.zeros(size, dtype=torch.uint8, device=logits.device)
    for c in range(1, k):
        up = F.interpolate(logits[None, c : c + 1], size, mode="bilinear", align_corners=False)
        better = up[0, 0] > best  # strict: ties keep the lower class, as argmax does
        best = torch.where(better, up[0, 0], best)
        ids[better] = c
    return ids
