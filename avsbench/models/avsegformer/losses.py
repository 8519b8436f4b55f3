"""AVSegFormer's published training losses, as pure functions (docs/AVSEGFORMER.md).

Source: the `loss.py` of the published s4, ms3 and avss scripts (AVSegFormer, commit
7083cb6) with the released configs (`loss_type='dice'`, weights iou_loss 1.0, mix_loss 0.1):

- S4:  dice on the annotated frames (the first frame of every clip)   + 0.1 x mix dice
- MS3: dice on every frame                                             + 0.1 x mix dice
- AVSS: cross entropy per frame, weighted by gt_valid                  + 0.1 x mix dice
  against the object mask (class id > 0), weighted by gt_valid

The mix term reads the mask feature: averaged over its channels, bilinearly upsampled to
the mask size, then taken as logits. The published dice adds its epsilon to each of the two
sums of squares (not once to their total):

    d = 2 sum(p g) / ((sum(p^2) + 0.001) + (sum(g^2) + 0.001)),   p = sigmoid(logits)

Losses are computed in float32 whatever the autocast dtype of the model outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DICE_EPS = 0.001  # published: added to sum(p^2) and to sum(g^2), each
MIX_LOSS_WEIGHT = 0.1  # published weight_dict['mix_loss'] (iou_loss: 1.0)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, frame_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Published dice loss: per frame 1 - d (formula above), then the mean over frames, or
    sum_f w_f (1 - d_f) / sum_f w_f with frame_weights w.

    logits: [N, H, W] or [N, 1, H, W]; targets: [N, H, W] (float, {0, 1}); frame_weights [N].
    """
    p = torch.sigmoid(logits.float()).flatten(1)  # [N, H*W]
    g = targets.float().flatten(1)
    if p.shape != g.shape:
        raise ValueError(
            f"dice_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            f"differ in size"
        )
    overlap = (p * g).sum(-1)
    d = 2 * overlap / (((p * p).sum(-1) + DICE_EPS) + ((g * g).sum(-1) + DICE_EPS))  # [N]
    per_frame = 1 - d
    if frame_weights is None:
        return per_frame.mean()
    weights = frame_weights.float().reshape(-1)
    return (per_frame * weights).sum() / weights.sum()


def mask_feature_logits(mask_feature: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The mix term's logits: mask_feature [N, C, h, w] averaged over C, bilinearly upsampled
    (align_corners=False) to `size` -> [N, 1, H, W]."""
    mean = mask_feature.float().mean(dim=1, keepdim=True)  # [N, 1, h, w]
    return F.interpolate(mean, size=tuple(size), mode="bilinear", align_corners=False)


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, frame_weights: torch.Tensor
) -> torch.Tensor:
    """AVSS term: per-pixel cross entropy, mean over each frame's pixels, then
    sum_f w_f CE_f / sum_f w_f. logits [N, K, H, W]; labels int64 [N, H, W]; weights [N]."""
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 class ids, got {labels.dtype}")
    per_pixel = F.cross_entropy(logits.float(), labels, reduction="none")  # [N, H, W]
    weights = frame_weights.float().reshape(-1)
    return (per_pixel.mean(dim=(1, 2)) * weights).sum() / weights.sum()


def avsegformer_loss(
    setting: str,
    logits: torch.Tensor,
    mask_feature: torch.Tensor,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    *,
    mix_weight: float = MIX_LOSS_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss of one batch, as the published train.py of `setting`.

    Args:
        setting: "s4" | "ms3" | "avss".
        logits: [B*T, K, H, W]; mask_feature: [B*T, C, H/4, W/4] (`AVSOutput.mask_feature`).
        masks: [B*T, H, W], float {0, 1} (S4, MS3) or int64 class ids (AVSS).
        gt_valid: [B*T], 1 for annotated frames (S4 training: the first frame of each clip,
            which is what the published S4 loss picks; MS3 ignores it, as published).
    Returns:
        (total, parts): the scalar to back-propagate and the published log entries
        `iou_loss`, `mix_loss` (weighted, as logged there) and `total_loss`, as floats.
    Raises FloatingPointError when the total is not finite.
    """
    if logits.shape[0] != masks.shape[0] or logits.shape[2:] != masks.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match masks {tuple(masks.shape)} "
            f"([B*T, K, H, W] and [B*T, H, W])"
        )
    if gt_valid.shape != (logits.shape[0],):
        raise ValueError(
            f"gt_valid must be [B*T] = [{logits.shape[0]}], got {tuple(gt_valid.shape)}"
        )
    mix_logits = mask_feature_logits(mask_feature, masks.shape[-2:])
    if setting in ("s4", "ms3"):
        weights = gt_valid if setting == "s4" else None
        main = dice_loss(logits, masks, weights)
        mix = dice_loss(mix_logits, masks, weights)
    elif setting == "avss":
        main = cross_entropy_loss(logits, masks, gt_valid)
        objects = torch.where(masks > 0, torch.ones_like(masks), masks)  # published binarising
        mix = dice_loss(mix_logits, objects, gt_valid)
    else:
        raise ValueError(f"unknown setting {setting!r}; valid: ['s4', 'ms3', 'avss']")
    total = main + mix_weight * mix
    if not torch.isfinite(total):
        raise FloatingPointError(f"AVSegFormer loss is not finite: {total.item()}")
    parts = {
        "iou_loss": float(main.detach()),
        "mix_loss": float(mix_weight * mix.detach()),
        "total_loss": float(total.detach()),
    }
    return total, parts
