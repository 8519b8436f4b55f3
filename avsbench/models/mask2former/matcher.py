"""Hungarian matching of the queries to the target masks (DETR, Carion et al., ECCV 2020, as
Mask2Former's `HungarianMatcher.memory_efficient_forward`, Cheng et al., CVPR 2022).

Per frame, for Q queries and the frame's M targets (targets.py), the cost of query q and
target m is

    C[q, m] = w_class * (-softmax(class logits of q)[label of m])
            + w_mask  * mean over points of BCE(mask logit of q, target m)
            + w_dice  * (1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)),  p = sigmoid(logit)

on `num_points` uniform points shared by all queries and targets of the frame (published
weights 2 / 5 / 5, 12544 points; COMBO and VCT use it unchanged). The assignment minimising
the total cost (scipy's `linear_sum_assignment`) pairs min(Q, M) queries with targets; the
other queries are trained towards "no object". No gradient flows through the matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from avsbench.models.mask2former.point_sampling import point_sample, random_points
from avsbench.models.mask2former.targets import SemanticTarget

Indices = tuple[torch.Tensor, torch.Tensor]  # (query ids [n], target ids [n]) int64, CPU


@dataclass(frozen=True)
class MatchCosts:
    """Weights of the three costs and the number of uniform points (published values)."""

    class_weight: float = 2.0  # CLASS_WEIGHT
    mask_weight: float = 5.0  # MASK_WEIGHT: point BCE
    dice_weight: float = 5.0  # DICE_WEIGHT
    num_points: int = 12544  # TRAIN_NUM_POINTS (112 x 112)


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits of every prediction against every target.

    logits: [Q, P]; targets: [M, P] in {0, 1} -> [Q, M].
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    total = pos @ targets.T + neg @ (1 - targets).T  # [Q, M]
    return total / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (+1 smoothing) of every prediction against every target.

    logits: [Q, P]; targets: [M, P] -> [Q, M].
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T  # [Q, M]
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def match_cost(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    target: SemanticTarget,
    costs: MatchCosts,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The cost matrix of one frame. pred_logits: [Q, K+1]; pred_masks: [Q, h, w] -> [Q, M]."""
    num_queries = pred_logits.shape[0]
    coords = random_points((1, costs.num_points, 2), pred_masks.device, generator)  # [1, P, 2]
    target_masks = target.masks.to(pred_masks)  # [M, H, W]
    target_points = point_sample(
        target_masks[:, None], coords.expand(target_masks.shape[0], -1, -1)
    ).squeeze(1)  # [M, P]
    pred_points = point_sample(pred_masks[:, None], coords.expand(num_queries, -1, -1)).squeeze(
        1
    )  # [Q, P]
    pred_points, target_points = pred_points.float(), target_points.float()
    class_cost = -pred_logits.float().softmax(-1)[:, target.labels.to(pred_logits.device)]
    return (
        costs.mask_weight * pairwise_sigmoid_ce(pred_points, target_points)
        + costs.class_weight * class_cost
        + costs.dice_weight * pairwise_dice(pred_points, target_points)
    )  # [Q, M]


@torch.no_grad()
def hungarian_match(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    targets: list[SemanticTarget],
    costs: MatchCosts = MatchCosts(),
    generator: torch.Generator | None = None,
) -> list[Indices]:
    """The optimal query-target pairs of every frame.

    pred_logits: [F, Q, K+1]; pred_masks: [F, Q, h, w]; targets: F frames' targets.
    Returns per frame (query ids, target ids), int64 on the CPU, ordered by query id.
    """
    if pred_logits.shape[0] != len(targets) or pred_masks.shape[0] != len(targets):
        raise ValueError(
            f"{len(targets)} targets for predictions of {pred_logits.shape[0]} / "
            f"{pred_masks.shape[0]} frames"
        )
    indices = []
    for frame, target in enumerate(targets):
        cost = match_cost(pred_logits[frame], pred_masks[frame], target, costs, generator)
        if not bool(torch.isfinite(cost).all()):
            raise FloatingPointError(f"matching cost of frame {frame} is not finite")
        query_ids, target_ids = linear_sum_assignment(cost.cpu().numpy())
        indices.append(
            (
                torch.as_tensor(query_ids, dtype=torch.int64),
                torch.as_tensor(target_ids, dtype=torch.int64),
            )
        )
    return indices
