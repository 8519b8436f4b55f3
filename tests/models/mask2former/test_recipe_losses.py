"""The whole Mask2Former set criterion of COMBO and VCT (matching, class CE, point BCE and
dice, normalisation, every decoder layer) against a loop written from the spec ("Training
recipe", Losses), and the matcher against scipy's `linear_sum_assignment` on a cost matrix
made by a plain loop.

The random points are replaced by the pixel centres of the mask grid (every pixel once), so
that the point values are the mask values themselves and a loop can compute every term:

    cost[q, m] = 2 (-softmax(class logits_q)[label_m]) + 5 mean_p BCE(x_qp, g_mp)
                 + 5 (1 - (2 sum_p s_qp g_mp + 1) / (sum_p s_qp + sum_p g_mp + 1))
    loss_ce    = sum_{f,q} w(c_fq) CE(f, q, c_fq) / sum_{f,q} w(c_fq)  (w = 1, no-object 0.1)
    loss_mask  = sum over matched (q, m) of mean_p BCE / number of GT masks in the batch
    loss_dice  = sum over matched (q, m) of dice / number of GT masks in the batch
    total      = sum over the final and every earlier prediction of 2 ce + 5 mask + 5 dice
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from avsbench.models.mask2former import matcher as matcher_module
from avsbench.models.mask2former import point_sampling
from avsbench.models.mask2former.criterion import (
    CriterionConfig,
    set_criterion,
    weighted_set_total,
)
from avsbench.models.mask2former.matcher import MatchCosts, hungarian_match
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.targets import SemanticTarget

SIDE = 6  # mask side: pred and GT at the same size, points = its 36 pixel centres
POINTS = SIDE * SIDE


def pixel_centres(shape, device, generator=None):
    """Every pixel centre of the SIDE x SIDE grid, (x, y) in [0, 1], for each leading row."""
    assert shape[-2] == POINTS, shape
    ys, xs = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    grid = torch.stack([(xs.flatten() + 0.5) / SIDE, (ys.flatten() + 0.5) / SIDE], dim=1)
    return grid.expand(*shape[:-2], POINTS, 2).to(device)


@pytest.fixture
def exact_points(monkeypatch):
    monkeypatch.setattr(point_sampling, "random_points", pixel_centres)
    monkeypatch.setattr(matcher_module, "random_points", pixel_centres)
    # all points uniform (the importance part keeps 0 of them): the loop sees every pixel
    return CriterionConfig(num_points=POINTS, oversample_ratio=1.0, importance_sample_ratio=0.0)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(x: float, g: float) -> float:
    return -(g * math.log(sigmoid(x)) + (1 - g) * math.log(1 - sigmoid(x)))


def loop_cost(logits, masks, target) -> list[list[float]]:
    """[Q][M] matching cost of one frame, pixel by pixel."""
    cost = []
    for q in range(logits.shape[0]):
        probs = torch.softmax(logits[q].double(), 0).tolist()
        x = masks[q].flatten().tolist()
        row = []
        for m, label in enumerate(target.labels.tolist()):
            g = target.masks[m].flatten().tolist()
            ce = sum(bce(a, b) for a, b in zip(x, g)) / POINTS
            s = [sigmoid(a) for a in x]
            dice = 1 - (2 * sum(a * b for a, b in zip(s, g)) + 1) / (sum(s) + sum(g) + 1)
            row.append(2 * -probs[label] + 5 * ce + 5 * dice)
        cost.append(row)
    return cost


def loop_layer_losses(logits, masks, targets, num_classes):
    """(ce, mask, dice) of one prediction over all frames."""
    num_masks = max(sum(len(t.labels) for t in targets), 1)
    ce_num = ce_den = bce_sum = dice_sum = 0.0
    for f, target in enumerate(targets):
        cost = loop_cost(logits[f], masks[f], target)
        rows, cols = linear_sum_assignment(cost) if target.labels.numel() else ([], [])
        wanted = {q: int(target.labels[m]) for q, m in zip(rows, cols)}
        for q in range(logits.shape[1]):
            c = wanted.get(q, num_classes)  # no-object
            weight = 0.1 if c == num_classes else 1.0
            log_probs = torch.log_softmax(logits[f, q].double(), 0)
            ce_num += weight * -log_probs[c].item()
            ce_den += weight
        for q, m in zip(rows, cols):
            x = masks[f, q].flatten().tolist()
            g = target.masks[m].flatten().tolist()
            bce_sum += sum(bce(a, b) for a, b in zip(x, g)) / POINTS
            s = [sigmoid(a) for a in x]
            dice_sum += 1 - (2 * sum(a * b for a, b in zip(s, g)) + 1) / (sum(s) + sum(g) + 1)
    return ce_num / ce_den, bce_sum / num_masks, dice_sum / num_masks


def random_batch(setting, frames, queries, layers, seed):
    gen = torch.Generator().manual_seed(seed)
    k = 2 if setting == "s4" else 71
    if setting == "s4":
        masks = (torch.rand(frames, SIDE, SIDE, generator=gen) > 0.5).float()
    else:
        classes = torch.tensor([0, 5, 70])
        masks = classes[torch.randint(0, 3, (frames, SIDE, SIDE), generator=gen)]
    masks[0, 0, :] = 255  # ignored pixels (the augmentation's padding)
    preds = [
        (
            torch.randn(frames, queries, k + 1, generator=gen),
            3 * torch.randn(frames, queries, SIDE, SIDE, generator=gen),
        )
        for _ in range(layers)
    ]
    output = Mask2FormerOutput(
        logits=torch.zeros(frames, 1, SIDE, SIDE),
        pred_logits=preds[0][0],
        pred_masks=preds[0][1],
        aux_outputs=preds[1:],
    )
    return output, masks, preds, k


@pytest.mark.parametrize("setting, queries", [("s4", 3), ("avss", 5), ("avss", 2)])
def test_set_criterion_equals_the_loop(exact_points, setting, queries):
    frames, layers = 3, 3
    output, masks, preds, k = random_batch(setting, frames, queries, layers, seed=queries)
    gt_valid = torch.tensor([1.0, 0.0, 1.0])  # frame 1 is not annotated: never read
    losses, rows, targets = set_criterion(setting, output, masks, gt_valid, exact_points)
    assert rows.tolist() == [0, 2]
    assert all(255 not in t.labels.tolist() for t in targets)
    total, parts = weighted_set_total(losses, exact_points)

    expected_total = 0.0
    for layer, (logits, mask_logits) in enumerate(preds):
        ce, bce_loss, dice = loop_layer_losses(logits[rows], mask_logits[rows], targets, k)
        suffix = "" if layer == 0 else f"_{layer - 1}"
        assert losses["loss_ce" + suffix].item() == pytest.approx(ce, rel=1e-5)
        assert losses["loss_mask" + suffix].item() == pytest.approx(bce_loss, rel=1e-5)
        assert losses["loss_dice" + suffix].item() == pytest.approx(dice, rel=1e-5)
        expected_total += 2 * ce + 5 * bce_loss + 5 * dice
    assert len(losses) == 3 * layers
    assert total.item() == pytest.approx(expected_total, rel=1e-5)
    assert sum(parts.values()) == pytest.approx(expected_total, rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_matcher_is_linear_sum_assignment_of_the_loop_cost(exact_points, seed):
    gen = torch.Generator().manual_seed(seed)
    queries, frames = 4 + seed % 3, 3
    logits = torch.randn(frames, queries, 72, generator=gen)
    masks = torch.randn(frames, queries, SIDE, SIDE, generator=gen)
    targets = []
    for f in range(frames):
        labels = torch.randperm(71, generator=gen)[: 1 + (seed + f) % 5].sort().values
        gt = (torch.rand(len(labels), SIDE, SIDE, generator=gen) > 0.5).float()
        targets.append(SemanticTarget(labels=labels, masks=gt))
    got = hungarian_match(logits, masks, targets, MatchCosts(num_points=POINTS))
    for f, (query_ids, target_ids) in enumerate(got):
        cost = loop_cost(logits[f], masks[f], targets[f])
        rows, cols = linear_sum_assignment(cost)
        assert query_ids.tolist() == list(rows) and target_ids.tolist() == list(cols)
