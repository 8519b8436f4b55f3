"""Semantic targets of the Mask2Former losses: one binary mask per class present in a frame.

Follows the published COMBO / VCT dataset mappers (`avss4_semantic_dataset_mapper.py`,
`avsms3_...`, `avss_...`: Mask2Former's `MaskFormerSemanticDatasetMapper` per frame): the
classes of a frame are the sorted distinct values of its class map, the ignore label 255
excluded; class c's mask is (map == c), so ignored pixels are 0 in every mask. Background is
a class like the others (spec: VCT and COMBO, "Training recipe", Targets).

    S4 / MS3  binary masks {0, 1} -> classes 0 (background) and 1 (object), K = 2
    AVSS      class ids 0..70 (0 = background)                          K = 71

Only annotated frames (`gt_valid` > 0) get a target: S4 training has frame 1 of each clip,
AVSS the frames of `gt_temporal_mask_flag` 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_LABEL = 255  # detectron2's ignore value (pad of the augmentation), never a class
SETTING_CLASSES = {"s4": 2, "ms3": 2, "avss": 71}  # K: classes without the no-object one


@dataclass
class SemanticTarget:
    """The target of one frame. labels: int64 [M] (ascending); masks: float32 [M, H, W]
    in {0, 1}, masks[i] = (class map == labels[i])."""

    labels: torch.Tensor
    masks: torch.Tensor


def num_classes(setting: str) -> int:
    """K of `setting` (2 for S4/MS3, 71 for AVSS); ValueError on an unknown setting."""
    if setting not in SETTING_CLASSES:
        raise ValueError(f"unknown setting {setting!r}; valid: {sorted(SETTING_CLASSES)}")
    return SETTING_CLASSES[setting]


def class_maps(setting: str, masks: torch.Tensor) -> torch.Tensor:
    """The engine's masks [N, H, W] (S4/MS3 float {0, 1}, AVSS int64 ids) -> int64 class ids
    [N, H, W] (255 kept: ignored). ValueError naming the offending value otherwise."""
    k = num_classes(setting)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {tuple(masks.shape)}")
    if masks.is_floating_point():
        ids = masks.round().long()
        if not torch.equal(ids.to(masks.dtype), masks):
            raise ValueError(f"{setting} masks must hold whole class ids, got fractional values")
    else:
        ids = masks.long()
    bad_values = (ids < 0) | ((ids >= k) & (ids != IGNORE_LABEL))
    if bool(bad_values.any()):
        bad = torch.unique(ids[bad_values])[:10]
        raise ValueError(
            f"{setting} masks hold value(s) {bad.tolist()}; valid: 0..{k - 1} and "
            f"{IGNORE_LABEL} (ignored)"
        )
    return ids


def frame_target(class_map: torch.Tensor) -> SemanticTarget:
    """int64 [H, W] class ids >= 0 -> the frame's target (an all-ignored frame gets M = 0).
    Labels ascending, as np.unique in the published mapper (a count, not a sort: linear)."""
    counts = torch.bincount(class_map[class_map != IGNORE_LABEL].flatten())
    labels = counts.nonzero().squeeze(1)  # [M] ascending
    masks = (class_map.unsqueeze(0) == labels[:, None, None]).float()  # [M, H, W]
    return SemanticTarget(labels=labels, masks=masks)


def semantic_targets(
    setting: str, masks: torch.Tensor, gt_valid: torch.Tensor
) -> tuple[torch.Tensor, list[SemanticTarget]]:
    """Targets of the annotated frames.

    masks: [N, H, W] as the engine passes them; gt_valid: [N], > 0 for annotated frames.
    Returns (rows [F] int64: the annotated frames' indices in N, their F targets).
    """
    if gt_valid.numel() != masks.shape[0]:
        raise ValueError(f"gt_valid must be [N={masks.shape[0]}], got {tuple(gt_valid.shape)}")
    ids = class_maps(setting, masks)
    rows = (gt_valid.reshape(-1) > 0).nonzero().squeeze(1).to(masks.device)  # [F]
    return rows, [frame_target(ids[r]) for r in rows.tolist()]
