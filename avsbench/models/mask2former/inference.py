"""Mask2Former's semantic inference (spec "The network" 8) and the project contract's logits.

    masks [N, Q, h, w] -> bilinear to the input size S x S
    sem_seg[n] = sum_q softmax(class[n, q])[:K] * sigmoid(masks[n, q])     -> [N, K, S, S]
      -> bilinear to the evaluation size (`sem_seg_postprocess`; identity when equal)
      AVSS: x the frame's flag (`vid_temporal_mask_flag`)

Contract logits (`Mask2FormerOutput.logits`): S4/MS3 (K = 2: background, object) the sigmoid
logit `sem_seg[1] - sem_seg[0]`, so that sigmoid(logit) = softmax(sem_seg)[1], the published
metric's probability; AVSS (K = 71) the scores `sem_seg` themselves (argmax = prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# frames whose upsampled masks [n, Q, S, S] exist at once (S = 224: 20 MB per frame)
FRAMES_PER_CHUNK = 8


def semantic_inference(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    input_size: tuple[int, int],
    output_size: tuple[int, int] | None = None,
    frame_flag: torch.Tensor | None = None,
) -> torch.Tensor:
    """pred_logits [N, Q, K+1], pred_masks [N, Q, h, w] -> sem_seg [N, K, H_out, W_out].

    input_size: the network's input (S, S); output_size: the evaluation size (None: the
    input size); frame_flag [N]: multiplies each frame's scores (AVSS), None: not applied.
    """
    chunks = []
    for logits, masks in zip(
        pred_logits.split(FRAMES_PER_CHUNK), pred_masks.split(FRAMES_PER_CHUNK)
    ):
        masks = F.interpolate(masks, size=input_size, mode="bilinear", align_corners=False)
        classes = F.softmax(logits, dim=-1)[..., :-1]  # [n, Q, K]
        chunk = torch.einsum("nqc,nqhw->nchw", classes, masks.sigmoid())  # [n, K, S, S]
        if output_size is not None and tuple(output_size) != tuple(chunk.shape[-2:]):
            chunk = F.interpolate(chunk, size=output_size, mode="bilinear", align_corners=False)
        chunks.append(chunk)
    sem_seg = torch.cat(chunks)  # [N, K, H_out, W_out]
    if frame_flag is not None:
        sem_seg = sem_seg * frame_flag.reshape(-1, 1, 1, 1).to(sem_seg.dtype)
    return sem_seg


def contract_logits(sem_seg: torch.Tensor, num_classes: int) -> torch.Tensor:
    """sem_seg [N, K, H, W] -> the contract's logits: K = 2 -> [N, 1, H, W] object minus
    background (num_classes 1); K = num_classes -> sem_seg itself (AVSS)."""
    k = sem_seg.shape[1]
    if num_classes == 1:
        if k != 2:
            raise ValueError(f"a binary setting needs 2 sem_seg channels, got {k}")
        return sem_seg[:, 1:2] - sem_seg[:, 0:1]
    if k != num_classes:
        raise ValueError(f"sem_seg has {k} channels, the setting {num_classes} classes")
    return sem_seg
