"""Mask2Former's set criterion (avsbench/models/mask2former/criterion.py) against direct
formulas, a perfect prediction and a wrong one, and its gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avsbench.models.mask2former.criterion import (
    CriterionConfig,
    classification_loss,
    dice_loss,
    mask_losses,
    no_object_class_weights,
    set_criterion,
    sigmoid_ce_loss,
    weighted_set_total,
)
from avsbench.models.mask2former.matcher import hungarian_match
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.targets import SemanticTarget

SMALL = CriterionConfig(num_points=64)


def test_no_object_weights_are_the_published_buffer():
    assert no_object_class_weights(2, 0.1).tolist() == pytest.approx([1.0, 1.0, 0.1])


def test_classification_loss_is_the_weighted_mean_ce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)  # F=2, Q=3, K=3
    targets = [
        SemanticTarget(torch.tensor([0, 2]), torch.zeros(2, 1, 1)),
        SemanticTarget(torch.tensor([1]), torch.zeros(1, 1, 1)),
    ]
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0])), (torch.tensor([1]), torch.tensor([0]))]
    weights = torch.tensor([1.0, 1.0, 1.0, 0.1])
    loss = classification_loss(logits, targets, indices, weights)
    wanted = [[2, 3, 0], [3, 1, 3]]  # query 0 of frame 0 -> target 1 = class 2, ...
    num = den = 0.0
    for f in range(2):
        for q in range(3):
            c = wanted[f][q]
            ce = -math.log(math.exp(logits[f, q, c]) / sum(math.exp(v) for v in logits[f, q]))
            num += weights[c].item() * ce
            den += weights[c].item()
    assert loss.item() == pytest.approx(num / den, rel=1e-6)


def test_point_losses_match_direct_formulas():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    labels = torch.rand(3, 7, generator=gen, dtype=torch.float64).round()
    num_masks = 2.0
    bce_expected = dice_expected = 0.0
    for r in range(3):
        p = [1 / (1 + math.exp(-x)) for x in logits[r].tolist()]
        g = labels[r].tolist()
        bce_expected += (
            sum(-(b * math.log(a) + (1 - b) * math.log(1 - a)) for a, b in zip(p, g)) / 7
        )
        dice_expected += 1 - (2 * sum(a * b for a, b in zip(p, g)) + 1) / (sum(p) + sum(g) + 1)
    assert sigmoid_ce_loss(logits, labels, num_masks).item() == pytest.approx(bce_expected / 2)
    assert dice_loss(logits, labels, num_masks).item() == pytest.approx(dice_expected / 2)
    # a confident correct prediction: both ~0 on the points
    sure = (labels * 2 - 1) * 30
    assert sigmoid_ce_loss(sure, labels, 1.0).item() < 1e-10
    assert dice_loss(sure, labels, 1.0).item() < 1e-10


def test_mask_losses_read_the_matched_pairs_at_the_same_points():
    """Replaying the generator: the losses are those of the matched mask and its target at
    the importance-sampled points."""
    gen = torch.Generator().manual_seed(2)
    pred = torch.randn(1, 3, 5, 5, generator=gen)
    target = SemanticTarget(
        torch.tensor([0, 1]), (torch.rand(2, 10, 10, generator=gen) > 0.5).float()
    )
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    bce, dice = mask_losses(pred, [target], indices, 2.0, SMALL, torch.Generator().manual_seed(7))

    from avsbench.models.mask2former.point_sampling import importance_sampled_points, point_sample

    matched = pred[0, [0, 2]][:, None]  # [2, 1, 5, 5]
    coords = importance_sampled_points(matched, 64, 3.0, 0.75, torch.Generator().manual_seed(7))
    labels = point_sample(target.masks[[1, 0]][:, None], coords).squeeze(1)
    logits = point_sample(matched, coords).squeeze(1)
    assert bce.item() == pytest.approx(sigmoid_ce_loss(logits, labels, 2.0).item(), rel=1e-6)
    assert dice.item() == pytest.approx(dice_loss(logits, labels, 2.0).item(), rel=1e-6)


def block_masks(frames: int, size: int) -> torch.Tensor:
    """S4-style GT [frames, size, size]: an object block in the top-left quarter."""
    masks = torch.zeros(frames, size, size)
    masks[:, : size // 2, : size // 2] = 1.0
    return masks


def perfect_output(masks: torch.Tensor, queries: int = 4, layers: int = 2, scale: float = 8.0):
    """Query 0 predicts background, query 1 the object, the rest 'no object' (class 2);
    masks at the GT resolution, logits +-scale."""
    n = masks.shape[0]
    logits = torch.full((n, queries, 3), -scale)
    logits[:, 0, 0] = logits[:, 1, 1] = scale
    logits[:, 2:, 2] = scale
    pred = torch.full((n, queries, *masks.shape[1:]), -scale)
    pred[:, 0] = scale * (1 - 2 * masks)
    pred[:, 1] = scale * (2 * masks - 1)
    aux = [(logits.clone(), pred.clone()) for _ in range(layers)]
    return Mask2FormerOutput(logits=torch.zeros(n, 1, 4, 4), pred_logits=logits, pred_masks=pred,
                             aux_outputs=aux)  # fmt: skip


def test_perfect_prediction_has_near_zero_losses_and_a_wrong_one_large():
    gt_valid = torch.ones(2)
    uniform = CriterionConfig(num_points=2000, importance_sample_ratio=0.0)
    results = {}
    for size in (32, 64):
        masks = block_masks(2, size)
        results[size], rows, targets = set_criterion(
            "s4", perfect_output(masks), masks, gt_valid, uniform, torch.Generator().manual_seed(0)
        )
    losses = results[64]
    assert rows.tolist() == [0, 1] and [t.labels.tolist() for t in targets] == [[0, 1]] * 2
    assert sorted(losses) == sorted(
        f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1")
    )
    for name, value in losses.items():
        bound = 1e-3 if name.startswith("loss_ce") else 0.06 if "mask" in name else 0.02
        assert value.item() < bound, name
    # what remains comes from points within half a pixel of an edge (of the image: zero
    # padding; of the block), which read a blend: half as many on a twice finer grid
    for name in ("loss_mask", "loss_dice"):
        ratio = results[64][name].item() / results[32][name].item()
        assert 0.35 < ratio < 0.65, (name, ratio)
    masks = block_masks(2, 64)
    empty = perfect_output(masks)
    empty.pred_masks = torch.full_like(empty.pred_masks, -8.0)  # predicts nothing anywhere
    bad, _, _ = set_criterion(
        "s4", empty, masks, gt_valid, uniform, torch.Generator().manual_seed(0)
    )
    assert bad["loss_mask"].item() > 3.0 and bad["loss_dice"].item() > 0.9
    # the masks of the two queries swapped, their classes kept: the matching follows the
    # masks (cost 5 + 5 per mask against 2 per class), so the class loss pays
    swapped = perfect_output(1 - masks)
    cost, _, _ = set_criterion(
        "s4", swapped, masks, gt_valid, uniform, torch.Generator().manual_seed(0)
    )
    assert cost["loss_mask"].item() < 0.06 and cost["loss_ce"].item() > 3.0


def test_matching_pairs_the_perfect_queries():
    masks = block_masks(1, 16)
    out = perfect_output(masks)
    _, _, targets = set_criterion("s4", out, masks, torch.ones(1), SMALL)
    ((q, m),) = hungarian_match(out.pred_logits, out.pred_masks, targets, SMALL.match_costs())
    assert list(zip(q.tolist(), m.tolist())) == [(0, 0), (1, 1)]


def test_normalised_by_the_number_of_gt_masks():
    """Duplicating a frame doubles the summed mask losses and the mask count: same value."""
    masks = block_masks(1, 16)
    out = perfect_output(masks, layers=0)
    out.pred_masks = out.pred_masks + torch.randn(
        out.pred_masks.shape, generator=torch.Generator().manual_seed(3)
    )
    one, _, _ = set_criterion(
        "s4",
        out,
        masks,
        torch.ones(1),
        CriterionConfig(num_points=4096, importance_sample_ratio=0.0),
        torch.Generator().manual_seed(1),
    )
    twice = perfect_output(masks.repeat(2, 1, 1), layers=0)
    twice.pred_masks = out.pred_masks.repeat(2, 1, 1, 1)
    two, _, _ = set_criterion(
        "s4",
        twice,
        masks.repeat(2, 1, 1),
        torch.ones(2),
        CriterionConfig(num_points=4096, importance_sample_ratio=0.0),
        torch.Generator().manual_seed(1),
    )
    # different random points per frame: equal up to sampling noise
    assert two["loss_mask"].item() == pytest.approx(one["loss_mask"].item(), rel=0.05)
    assert two["loss_ce"].item() == pytest.approx(one["loss_ce"].item(), rel=1e-6)


def test_gradients_reach_logits_and_masks_of_every_prediction():
    gen = torch.Generator().manual_seed(4)
    masks = block_masks(2, 16)
    out = Mask2FormerOutput(
        logits=torch.zeros(2, 1, 16, 16),
        pred_logits=torch.randn(2, 5, 3, generator=gen).requires_grad_(),
        pred_masks=torch.randn(2, 5, 4, 4, generator=gen).requires_grad_(),
        aux_outputs=[(torch.randn(2, 5, 3, generator=gen).requires_grad_(),
                      torch.randn(2, 5, 4, 4, generator=gen).requires_grad_())],
    )  # fmt: skip
    losses, _, _ = set_criterion("s4", out, masks, torch.tensor([1.0, 0.0]), SMALL, gen)
    total, parts = weighted_set_total(losses)
    total.backward()
    expected = sum(
        w * losses[k + s].item() for k, w in (("loss_ce", 2), ("loss_mask", 5), ("loss_dice", 5))
        for s in ("", "_0")
    )  # fmt: skip
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert sum(parts.values()) == pytest.approx(total.item(), rel=1e-6)
    for tensor in (out.pred_logits, out.pred_masks, *out.aux_outputs[0]):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad[0].abs().sum() > 0  # the annotated frame
        assert tensor.grad[1].abs().sum() == 0  # gt_valid 0: never read


def test_bad_batches_are_refused():
    masks = block_masks(2, 8)
    out = perfect_output(masks)
    with pytest.raises(ValueError, match="no annotated frame"):
        set_criterion("s4", out, masks, torch.zeros(2), SMALL)
    with pytest.raises(ValueError, match=r"pred_logits must be \[N=3"):
        set_criterion("s4", out, block_masks(3, 8), torch.ones(3), SMALL)
    with pytest.raises(ValueError, match="expected K \\+ 1 = 72"):
        set_criterion("avss", out, masks.long(), torch.ones(2), SMALL)


def test_no_target_mask_gives_zero_mask_loss_with_a_graph():
    masks = torch.full((1, 8, 8), 255.0)  # all ignored
    out = perfect_output(torch.zeros(1, 8, 8), layers=0)
    out.pred_masks.requires_grad_()
    losses, _, targets = set_criterion("s4", out, masks, torch.ones(1), SMALL)
    assert targets[0].labels.numel() == 0
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    losses["loss_mask"].backward()  # connected, zero gradient
    assert torch.equal(out.pred_masks.grad, torch.zeros_like(out.pred_masks))
    ce = F.cross_entropy(
        out.pred_logits[0], torch.full((4,), 2), weight=no_object_class_weights(2, 0.1)
    )
    assert losses["loss_ce"].item() == pytest.approx(ce.item(), rel=1e-6)
