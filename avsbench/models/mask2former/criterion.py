"""Mask2Former's set criterion (`SetCriterion`, Cheng et al., CVPR 2022), the training loss
COMBO and VCT share (spec: VCT and COMBO, "Training recipe", Losses).

For the final prediction and every earlier one (deep supervision: the initial queries and
decoder layers 1..8), separately: match queries to the annotated frames' targets
(matcher.py), then

    loss_ce    cross entropy of every query's class logits; matched queries -> their
               target's class, the others -> "no object" (class K); class weights 1, and
               0.1 for "no object" (`empty_weight`): sum_i w_i CE_i / sum_i w_i
    loss_mask  BCE-with-logits of each matched mask on 12544 points, mean over points
    loss_dice  1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1) on the same points

The two mask terms are summed over the matched pairs and divided by the number of target
masks of the batch (at least 1). The points come from `importance_sampled_points`
(oversample 3, 75 % most uncertain, 25 % uniform), drawn without gradient; the targets are
read at them by the same bilinear sampling. Weights: class 2, mask 5, dice 5 (for every
prediction). Losses are computed in float32.

Published keys: the final prediction's `loss_ce`, `loss_mask`, `loss_dice`, the i-th earlier
one's `loss_ce_i`, ... (i = 0 for the initial queries). Unlike the published code, nothing
calls CUDA and the number of masks is not all-reduced across processes (the engine scales
the per-process loss for DDP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avsbench.models.mask2former.matcher import Indices, MatchCosts, hungarian_match
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.point_sampling import importance_sampled_points, point_sample
from avsbench.models.mask2former.targets import SemanticTarget, num_classes, semantic_targets


@dataclass(frozen=True)
class CriterionConfig:
    """The published loss settings (COMBO and VCT configs, `MODEL.MASK_FORMER.*`)."""

    class_weight: float = 2.0  # CLASS_WEIGHT: loss_ce weight and matching cost
    mask_weight: float = 5.0  # MASK_WEIGHT: loss_mask (point BCE) weight and cost
    dice_weight: float = 5.0  # DICE_WEIGHT: loss_dice weight and cost
    no_object_weight: float = 0.1  # NO_OBJECT_WEIGHT: CE class weight of "no object"
    num_points: int = 12544  # TRAIN_NUM_POINTS: points per mask (loss and matching)
    oversample_ratio: float = 3.0  # OVERSAMPLE_RATIO: candidates per kept point
    importance_sample_ratio: float = 0.75  # IMPORTANCE_SAMPLE_RATIO: share of uncertain points

    def match_costs(self) -> MatchCosts:
        """The matcher's costs: the same weights, uniform points."""
        return MatchCosts(self.class_weight, self.mask_weight, self.dice_weight, self.num_points)

    def weight(self, name: str) -> float:
        """Weight of a published loss key (`loss_ce`, `loss_mask_3`, ...)."""
        for prefix, value in (
            ("loss_ce", self.class_weight),
            ("loss_mask", self.mask_weight),
            ("loss_dice", self.dice_weight),
        ):
            if name == prefix or name.startswith(prefix + "_"):
                return value
        raise KeyError(f"no weight for loss {name!r}")


PUBLISHED_CRITERION = CriterionConfig()  # the values of every COMBO and VCT config


def no_object_class_weights(
    num_classes: int, no_object_weight: float, device: torch.device | None = None
) -> torch.Tensor:
    """The published `criterion.empty_weight` buffer: ones [K+1], the last = no_object_weight."""
    weights = torch.ones(num_classes + 1, device=device)
    weights[-1] = no_object_weight
    return weights


def classification_loss(
    pred_logits: torch.Tensor,
    targets: list[SemanticTarget],
    indices: list[Indices],
    class_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted CE over all F x Q queries. pred_logits: [F, Q, K+1] -> scalar."""
    frames, queries, k_plus_1 = pred_logits.shape
    target_classes = torch.full(
        (frames, queries), k_plus_1 - 1, dtype=torch.int64, device=pred_logits.device
    )  # [F, Q], "no object" unless matched
    for frame, ((query_ids, target_ids), target) in enumerate(zip(indices, targets)):
        labels = target.labels.to(pred_logits.device)[target_ids.to(pred_logits.device)]
        target_classes[frame, query_ids.to(pred_logits.device)] = labels
    logits = pred_logits.float().transpose(1, 2)  # [F, K+1, Q]
    return F.cross_entropy(logits, target_classes, weight=class_weights.to(logits.device))


def sigmoid_ce_loss(
    point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: float
) -> torch.Tensor:
    """sum over masks of the mean point BCE, / num_masks. [R, P], [R, P] -> scalar."""
    bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    return bce.mean(1).sum() / num_masks


def dice_loss(
    point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: float
) -> torch.Tensor:
    """sum over masks of 1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1), / num_masks."""
    probs = point_logits.sigmoid()
    numerator = 2 * (probs * point_labels).sum(-1)
    denominator = probs.sum(-1) + point_labels.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def mask_losses(
    pred_masks: torch.Tensor,
    targets: list[SemanticTarget],
    indices: list[Indices],
    num_masks: float,
    cfg: CriterionConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_mask, loss_dice) of the matched pairs. pred_masks: [F, Q, h, w] (logits)."""
    device = pred_masks.device
    frame_ids = torch.cat([torch.full_like(q, f) for f, (q, _) in enumerate(indices)])
    query_ids = torch.cat([q for q, _ in indices])
    if frame_ids.numel() == 0:  # no target mask in the batch: nothing to supervise
        zero = pred_masks.float().sum() * 0.0
        return zero, zero
    matched = pred_masks[frame_ids.to(device), query_ids.to(device)].float()  # [R, h, w]
    wanted = torch.cat(
        [t.masks.to(device)[j.to(device)] for t, (_, j) in zip(targets, indices)]
    ).float()  # [R, H, W]
    with torch.no_grad():
        coords = importance_sampled_points(
            matched[:, None], cfg.num_points, cfg.oversample_ratio,
            cfg.importance_sample_ratio, generator,
        )  # fmt: skip
        point_labels = point_sample(wanted[:, None], coords).squeeze(1)  # [R, P]
    point_logits = point_sample(matched[:, None], coords).squeeze(1)  # [R, P]
    return (
        sigmoid_ce_loss(point_logits, point_labels, num_masks),
        dice_loss(point_logits, point_labels, num_masks),
    )


def set_losses(
    predictions: list[tuple[torch.Tensor, torch.Tensor]],
    targets: list[SemanticTarget],
    num_classes: int,
    cfg: CriterionConfig = PUBLISHED_CRITERION,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The unweighted published losses of every prediction.

    predictions: (pred_logits [F, Q, K+1], pred_masks [F, Q, h, w]) of the final layer first,
        then the earlier ones in order (aux 0 = initial queries), rows = the F target frames.
    Returns {"loss_ce": ..., "loss_mask": ..., "loss_dice": ..., "loss_ce_0": ..., ...}.
    """
    num_masks = float(max(sum(len(t.labels) for t in targets), 1))
    losses: dict[str, torch.Tensor] = {}
    for layer, (pred_logits, pred_masks) in enumerate(predictions):
        if pred_logits.shape[-1] != num_classes + 1:
            raise ValueError(
                f"pred_logits have {pred_logits.shape[-1]} classes, expected K + 1 = "
                f"{num_classes + 1} (K classes + no object)"
            )
        suffix = "" if layer == 0 else f"_{layer - 1}"
        indices = hungarian_match(pred_logits, pred_masks, targets, cfg.match_costs(), generator)
        weights = no_object_class_weights(num_classes, cfg.no_object_weight, pred_logits.device)
        losses["loss_ce" + suffix] = classification_loss(pred_logits, targets, indices, weights)
        bce, dice = mask_losses(pred_masks, targets, indices, num_masks, cfg, generator)
        losses["loss_mask" + suffix] = bce
        losses["loss_dice" + suffix] = dice
    return losses


def output_predictions(
    output: Mask2FormerOutput, rows: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pred_logits, pred_masks) of the final layer, then of `aux_outputs`, each restricted
    to `rows` (None: all frames)."""
    if output.pred_logits is None or output.pred_masks is None:
        raise ValueError("the Mask2Former loss needs pred_logits and pred_masks in the output")
    pairs = [(output.pred_logits, output.pred_masks), *output.aux_outputs]
    if rows is None:
        return [(logits, masks) for logits, masks in pairs]
    return [(logits[rows], masks[rows]) for logits, masks in pairs]


def set_criterion(
    setting: str,
    output: Mask2FormerOutput,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    cfg: CriterionConfig = PUBLISHED_CRITERION,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[SemanticTarget]]:
    """The set losses of a batch, as the engine hands it to a loss.

    output: the model's [N = B*T] predictions; masks: [N, H, W]; gt_valid: [N].
    Returns (unweighted published losses, annotated rows [F], their targets).
    """
    n = masks.shape[0]
    if output.pred_logits is None or output.pred_logits.shape[0] != n:
        got = None if output.pred_logits is None else tuple(output.pred_logits.shape)
        raise ValueError(f"pred_logits must be [N={n}, Q, K+1] (one row per frame), got {got}")
    rows, targets = semantic_targets(setting, masks, gt_valid)
    if rows.numel() == 0:
        raise ValueError("no annotated frame in the batch (gt_valid is all 0): nothing to train")
    predictions = output_predictions(output, rows.to(output.pred_logits.device))
    return set_losses(predictions, targets, num_classes(setting), cfg, generator), rows, targets


def weighted_set_total(
    losses: dict[str, torch.Tensor], cfg: CriterionConfig = PUBLISHED_CRITERION
) -> tuple[torch.Tensor, dict[str, float]]:
    """sum of weight x loss over `losses` (set losses only), and the weighted sums per kind
    over all predictions for the log: {"loss_ce", "loss_mask", "loss_dice"}."""
    total = torch.zeros((), device=next(iter(losses.values())).device)
    parts = {"loss_ce": 0.0, "loss_mask": 0.0, "loss_dice": 0.0}
    for name, value in losses.items():
        weighted = cfg.weight(name) * value
        total = total + weighted
        parts[name.rsplit("_", 1)[0] if name[-1].isdigit() else name] += float(weighted.detach())
    return total, parts
