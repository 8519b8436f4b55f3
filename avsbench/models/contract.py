"""What every method's model returns, and the forward protocol the engine relies on.

    model(frames [B*T, 3, H, W], audio_emb [B*T, D], frame_valid [B*T] | None,
          target_frames [B*T] bool | None, **extra_inputs) -> an AVSOutput subclass

audio_emb is what the method reads of the frozen VGGish (`MethodSpec.audio_input`): the
embedding (D = 128) or the conv map flattened (D = 512*6*4 = 12288; VCT).

`AVSOutput` holds what the engine reads of every method (the logits: metrics, masks,
prediction). Each method subclasses it with the extras its own losses read (TPAVI: stage
maps and aligned audio; AVSegFormer: the mask feature), so that a loss can check it was
paired with its own model (`check_output`) instead of failing deep inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AVSOutput:
    """logits: [B*T, K, H, W] (K = 1: sigmoid logits of S4/MS3; K = 71: AVSS class logits)."""

    logits: torch.Tensor


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def check_inputs(
    frames: torch.Tensor, audio_emb: torch.Tensor, frame_valid: torch.Tensor | None
) -> int:
    """B*T of the contract's inputs; ValueError naming the input whose shape is wrong."""
    bt = frames.shape[0]
    if audio_emb.ndim != 2 or audio_emb.shape[0] != bt:
        raise ValueError(f"audio_emb must be [B*T={bt}, D], got {tuple(audio_emb.shape)}")
    if frame_valid is not None and frame_valid.numel() != bt:
        raise ValueError(f"frame_valid must be [B*T={bt}], got {tuple(frame_valid.shape)}")
    return bt


def check_output(output: object, expected: type, method: str) -> None:
    """TypeError unless `output` is the `expected` output type of `method` (its loss's input)."""
    if not isinstance(output, expected):
        raise TypeError(
            f"the {method} loss needs a {expected.__name__} (its own model's output), got "
            f"{type(output).__name__}: the model and the loss belong to different methods"
        )


def decoded_rows(
    target_frames: torch.Tensor | None, bt: int, device: torch.device
) -> torch.Tensor | None:
    """Indices [F] of the True entries of target_frames [B*T] bool; None for all frames."""
    if target_frames is None:
        return None
    if target_frames.dtype != torch.bool or target_frames.numel() != bt:
        raise ValueError(
            f"target_frames must be a bool tensor of B*T = {bt} entries, got "
            f"{target_frames.dtype} {tuple(target_frames.shape)}"
        )
    target = target_frames.reshape(bt).to(device)
    return None if bool(target.all()) else target.nonzero().squeeze(1)
