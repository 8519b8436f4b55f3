"""COMBO's training loss (Yang et al., CVPR 2024): Mask2Former's set criterion plus its
temporal cosine loss (spec: VCT and COMBO, "Training recipe", Losses).

Source: `yannqi/COMBO-AVS` at cb8af1c, `models/modeling/criterion.py` (S4, MS3) and
`criterion_ss.py` (AVSS), `get_similarity_loss`; weights from `configs/avs_*/COMBO_*.yaml`
(CLASS 2, MASK 5, DICE 5, COSINE 10).

    total = sum over the 10 predictions of (2 loss_ce + 5 loss_mask + 5 loss_dice)
          + 10 sum_{i=0..8} loss_cosine_i

`loss_cosine_i` reads the mask logits of prediction i (the initial queries, then decoder
layers 1..8: the published `middles_attn_mask`, i.e. `aux_outputs`) of EVERY frame, also
the unannotated ones: the frames are cut into groups of 5 consecutive frames (the published
`n_frame=5`); for each group g and t = 0..3, with x_t = the flattened [Q*h*w] logits of
frame t,

    l = 1 - cos(x_t, x_{t+1})          (torch's `cosine_embedding_loss`, target 1)
    loss_cosine_i = sum_g sum_t l e^{-l} / (G * 4)

Published AVSS batches hold only real frames (5 per v1s/v1m clip, 10 per v2 clip: a v2
clip is two groups, its frames 4 and 5 never compared); here AVSS clips are padded to 10
frames, so the groups of padding frames are left out when the model reports
`extras["frame_valid"]` [N] (a group must be all real or all padding). Without it every
group counts (S4, MS3: no padding).
The weight e^{-l} is not detached (as published: it is part of the gradient).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from avsbench.models.contract import check_output
from avsbench.models.mask2former.criterion import (
    PUBLISHED_CRITERION,
    CriterionConfig,
    set_criterion,
    weighted_set_total,
)
from avsbench.models.mask2former.output import Mask2FormerOutput

COSINE_WEIGHT = 10.0  # COSINE_WEIGHT of every COMBO training config
COSINE_GROUP_FRAMES = 5  # the published n_frame: frames compared in one group


def temporal_cosine_loss(
    mask_logits: torch.Tensor,
    frame_valid: torch.Tensor | None = None,
    group_frames: int = COSINE_GROUP_FRAMES,
) -> torch.Tensor:
    """One prediction's `loss_cosine`. mask_logits: [N, Q, h, w], N a multiple of
    `group_frames` (consecutive frames of a clip); frame_valid: [N] or None (all real)
    -> scalar."""
    n = mask_logits.shape[0]
    if n % group_frames:
        raise ValueError(
            f"the cosine loss compares groups of {group_frames} frames; got {n} frames"
        )
    flat = mask_logits.float().reshape(n // group_frames, group_frames, -1)  # [G, 5, Q*h*w]
    if frame_valid is not None:
        real = frame_valid.reshape(n // group_frames, group_frames).to(flat.device) > 0
        if not bool((real.all(1) | ~real.any(1)).all()):
            raise ValueError(
                f"frame_valid mixes real and padding frames within a group of {group_frames}: "
                f"{frame_valid.reshape(-1).tolist()}"
            )
        flat = flat[real.all(1)]  # [G', 5, Q*h*w]: the real groups
        if flat.shape[0] == 0:
            raise ValueError("the cosine loss got no real frame (frame_valid is all 0)")
    groups = flat.shape[0]
    same = torch.ones(groups, device=flat.device)  # target 1: pull the pair together
    total = torch.zeros(groups, device=flat.device)
    for t in range(group_frames - 1):
        distance = F.cosine_embedding_loss(flat[:, t], flat[:, t + 1], same, reduction="none")
        total = total + distance * torch.exp(-distance)  # [G]
    return total.sum() / groups / (group_frames - 1)


def combo_loss(
    setting: str,
    output: Mask2FormerOutput,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: Any = None,
    *,
    criterion: CriterionConfig = PUBLISHED_CRITERION,
    cosine_weight: float = COSINE_WEIGHT,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total COMBO training loss of one batch.

    Args:
        setting: "s4" | "ms3" | "avss".
        output: the COMBO model's output, every frame decoded: pred_logits [N, Q, K+1],
            pred_masks [N, Q, h, w], aux_outputs (9 earlier predictions), N = B*T;
            optional extras "frame_valid" [N] (AVSS: padding groups leave the cosine loss).
        masks: [N, H, W], float {0, 1} (S4, MS3) or int64 class ids (AVSS; 255 ignored).
        gt_valid: [N], 1 for annotated frames (the only ones the set losses read).
        loss_cfg: the engine's LossConfig; no field of it applies to COMBO.
        generator: for the random points (tests); None: the device's global generator.
    Returns:
        (total, parts): the scalar to back-propagate and the log entries `loss_ce`,
        `loss_mask`, `loss_dice` (weighted, summed over the predictions), `loss_cosine`
        (weighted, summed over its 9 terms) and `total_loss`, as floats.
    Raises FloatingPointError when the total is not finite.
    """
    del loss_cfg  # COMBO reads none of the engine's loss options
    check_output(output, Mask2FormerOutput, "combo")
    losses, _, _ = set_criterion(setting, output, masks, gt_valid, criterion, generator)
    total, parts = weighted_set_total(losses, criterion)
    frame_valid = output.extras.get("frame_valid")  # AVSS padding frames, if reported
    cosine = torch.zeros((), device=total.device)
    for _, aux_masks in output.aux_outputs:
        cosine = cosine + cosine_weight * temporal_cosine_loss(aux_masks, frame_valid)
    total = total + cosine
    if not torch.isfinite(total):
        raise FloatingPointError(f"COMBO loss is not finite: {total.item()}")
    parts["loss_cosine"] = float(cosine.detach())
    parts["total_loss"] = float(total.detach())
    return total, parts
