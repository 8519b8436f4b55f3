"""Training losses of the two methods, behind one entry point (docs/TRAINING.md,
docs/AVSEGFORMER.md).

- `tpavi`: AVSBench's published losses (segmentation + optional AVM), `losses/tpavi.py`.
- `avsegformer`: AVSegFormer's published losses (dice or CE + 0.1 x mix), `losses/avsegformer.py`.

`compute_loss(setting, output, masks, gt_valid, loss_cfg, method=...)` picks the method's
loss; everything else is the method's own module.
"""

from __future__ import annotations

from typing import Any

import torch

from avsbench.config import LossConfig
from avsbench.losses.avsegformer import avsegformer_loss
from avsbench.losses.tpavi import (
    AVSS_BACKGROUND,
    avss_background_index,
    avss_masked_av_loss,
    avss_seg_loss,
    masked_av_loss,
    ms3_seg_loss,
    s4_seg_loss,
    sa_loss,
    tpavi_loss,
)

__all__ = [
    "AVSS_BACKGROUND",
    "METHOD_LOSSES",
    "avss_background_index",
    "avss_masked_av_loss",
    "avss_seg_loss",
    "avsegformer_loss",
    "compute_loss",
    "masked_av_loss",
    "ms3_seg_loss",
    "s4_seg_loss",
    "sa_loss",
    "tpavi_loss",
]


def _avsegformer(
    setting: str, output: Any, masks: torch.Tensor, gt_valid: torch.Tensor, loss_cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    if output.mask_feature is None:
        raise ValueError(
            "the AVSegFormer loss needs the model's mask_feature; the output has none "
            "(is the model a TPAVI model? build it with model.method='avsegformer')"
        )
    return avsegformer_loss(
        setting, output.logits, output.mask_feature, masks, gt_valid,
        mix_weight=loss_cfg.mix_loss_weight,
    )  # fmt: skip


# method -> loss(setting, output, masks, gt_valid, loss_cfg) -> (total, parts)
METHOD_LOSSES = {"tpavi": tpavi_loss, "avsegformer": _avsegformer}


def compute_loss(
    setting: str,
    output: Any,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: LossConfig,
    *,
    method: str = "tpavi",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss of one batch for `method` ("tpavi" | "avsegformer").

    Args:
        setting: "s4" | "ms3" | "avss".
        output: the model output (`avsbench.models.avs.AVSOutput`).
        masks: [B*T, H, W] (float {0, 1} for S4/MS3, int64 class ids for AVSS).
        gt_valid: [B*T], 1 for annotated frames.
        loss_cfg: `avsbench.config.LossConfig` (TPAVI flags; AVSegFormer: mix_loss_weight).
    Returns:
        (total, parts): the scalar to back-propagate and the published log entries as
        floats (`iou_loss`, `total_loss`, plus `sa_loss` (TPAVI) or `mix_loss` (AVSegFormer)).
    Raises FloatingPointError when the total is not finite.
    """
    if method not in METHOD_LOSSES:
        raise ValueError(f"unknown method {method!r}; valid: {sorted(METHOD_LOSSES)}")
    return METHOD_LOSSES[method](setting, output, masks, gt_valid, loss_cfg)
