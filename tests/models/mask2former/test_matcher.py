"""Hungarian matching (avsbench/models/mask2former/matcher.py) against brute force over all
assignments, and its costs against direct formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from avsbench.models.mask2former.matcher import (
    MatchCosts,
    hungarian_match,
    match_cost,
    pairwise_dice,
    pairwise_sigmoid_ce,
)
from avsbench.models.mask2former.targets import SemanticTarget


def bce(logit: float, label: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_pairwise_costs_match_direct_formulas():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    targets = (torch.rand(3, 9, generator=gen) > 0.5).double()
    ce, dice = pairwise_sigmoid_ce(logits, targets), pairwise_dice(logits, targets)
    assert ce.shape == dice.shape == (4, 3)
    for q in range(4):
        for m in range(3):
            x, g = logits[q].tolist(), targets[m].tolist()
            assert ce[q, m].item() == pytest.approx(sum(map(bce, x, g)) / 9, rel=1e-12)
            p = [1 / (1 + math.exp(-v)) for v in x]
            d = 1 - (2 * sum(a * b for a, b in zip(p, g)) + 1) / (sum(p) + sum(g) + 1)
            assert dice[q, m].item() == pytest.approx(d, rel=1e-12)


def random_frame(gen, queries, num_targets, classes=4, size=6):
    logits = torch.randn(queries, classes + 1, generator=gen)
    masks = torch.randn(queries, size, size, generator=gen)
    labels = torch.randperm(classes, generator=gen)[:num_targets].sort().values
    target_masks = (torch.rand(num_targets, 2 * size, 2 * size, generator=gen) > 0.5).float()
    return logits, masks, SemanticTarget(labels=labels, masks=target_masks)


@pytest.mark.parametrize("queries, num_targets", [(4, 3), (5, 2), (2, 3), (3, 3)])
def test_matching_is_the_brute_force_optimum(queries, num_targets):
    gen = torch.Generator().manual_seed(queries * 10 + num_targets)
    frames = [random_frame(gen, queries, num_targets) for _ in range(2)]
    costs = MatchCosts(num_points=50)
    pred_logits = torch.stack([f[0] for f in frames])
    pred_masks = torch.stack([f[1] for f in frames])
    targets = [f[2] for f in frames]
    indices = hungarian_match(
        pred_logits, pred_masks, targets, costs, torch.Generator().manual_seed(3)
    )

    replay = torch.Generator().manual_seed(3)  # the same points, frame after frame
    for (logits, masks, target), (query_ids, target_ids) in zip(frames, indices):
        cost = match_cost(logits, masks, target, costs, replay)
        assert query_ids.dtype == target_ids.dtype == torch.int64
        assert len(query_ids) == min(queries, num_targets)
        best, best_pairs = math.inf, None
        if queries >= num_targets:  # every target gets a distinct query
            for chosen in itertools.permutations(range(queries), num_targets):
                total = sum(cost[q, m].item() for m, q in enumerate(chosen))
                if total < best:
                    best, best_pairs = total, sorted((q, m) for m, q in enumerate(chosen))
        else:  # every query gets a distinct target
            for chosen in itertools.permutations(range(num_targets), queries):
                total = sum(cost[q, m].item() for q, m in enumerate(chosen))
                if total < best:
                    best, best_pairs = total, sorted(enumerate(chosen))
        assert list(zip(query_ids.tolist(), target_ids.tolist())) == best_pairs


def test_cost_terms_are_weighted_as_published():
    """Class term alone: -softmax at the target label; mask terms alone: the pairwise
    costs on the points (a target sampled at its own resolution)."""
    gen = torch.Generator().manual_seed(1)
    logits, masks, target = random_frame(gen, 3, 2)
    only_class = match_cost(logits, masks, target, MatchCosts(1.0, 0.0, 0.0, 20))
    expected = -logits.softmax(-1)[:, target.labels]
    assert torch.allclose(only_class, expected, atol=1e-7)
    weighted = match_cost(logits, masks, target, MatchCosts(2.0, 5.0, 5.0, 20),
                          torch.Generator().manual_seed(4))  # fmt: skip
    mask_only = match_cost(logits, masks, target, MatchCosts(0.0, 1.0, 0.0, 20),
                           torch.Generator().manual_seed(4))  # fmt: skip
    dice_only = match_cost(logits, masks, target, MatchCosts(0.0, 0.0, 1.0, 20),
                           torch.Generator().manual_seed(4))  # fmt: skip
    assert torch.allclose(weighted, 2 * expected + 5 * mask_only + 5 * dice_only, atol=1e-5)


def test_no_target_gives_an_empty_match():
    logits = torch.randn(1, 3, 3)
    target = SemanticTarget(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 8, 8))
    ((q, m),) = hungarian_match(
        logits, torch.randn(1, 3, 4, 4), [target], MatchCosts(num_points=10)
    )
    assert q.numel() == m.numel() == 0


def test_non_finite_cost_is_refused():
    logits = torch.full((1, 2, 3), float("nan"))
    target = SemanticTarget(torch.tensor([0]), torch.ones(1, 4, 4))
    with pytest.raises(FloatingPointError, match="frame 0 is not finite"):
        hungarian_match(logits, torch.zeros(1, 2, 4, 4), [target], MatchCosts(num_points=5))
