"""AVSegFormer's published losses against loops written from their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from avsbench.models.avsegformer.losses import (
    avsegformer_loss,
    cross_entropy_loss,
    dice_loss,
    mask_feature_logits,
)


def loop_dice(logits, targets):
    """1 - 2 sum(p g) / ((sum p^2 + 0.001) + (sum g^2 + 0.001)) per frame, pixel by pixel."""
    out = []
    for f in range(logits.shape[0]):
        pg = pp = gg = 0.0
        for p_logit, g in zip(logits[f].flatten().tolist(), targets[f].flatten().tolist()):
            p = 1 / (1 + math.exp(-p_logit))
            pg, pp, gg = pg + p * g, pp + p * p, gg + g * g
        out.append(1 - 2 * pg / ((pp + 0.001) + (gg + 0.001)))
    return out


def loop_bilinear(grid, size):
    """align_corners=False bilinear upsampling of one [h, w] grid to `size`, by the formula."""
    h, w = len(grid), len(grid[0])
    out_h, out_w = size
    out = [[0.0] * out_w for _ in range(out_h)]
    for i in range(out_h):
        y = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(y), h - 1)
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(x), w - 1)
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = grid[y0][x0] * (1 - fx) + grid[y0][x1] * fx
            bottom = grid[y1][x0] * (1 - fx) + grid[y1][x1] * fx
            out[i][j] = top * (1 - fy) + bottom * fy
    return out


def test_dice_equals_the_formula():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 5, 6, generator=gen) * 3
    targets = (torch.rand(4, 5, 6, generator=gen) > 0.5).float()
    targets[2] = 0  # an empty mask
    per_frame = loop_dice(logits[:, 0], targets)
    assert dice_loss(logits, targets).item() == pytest.approx(sum(per_frame) / 4, rel=1e-6)
    weights = torch.tensor([1.0, 0.0, 2.0, 0.0])
    expected = (per_frame[0] + 2 * per_frame[2]) / 3
    assert dice_loss(logits, targets, weights).item() == pytest.approx(expected, rel=1e-6)


def test_dice_epsilon_is_added_to_each_sum():
    """One certain pixel on one true pixel: d = 2 / (1.001 + 1.001), not 2 / (2 + 0.001)."""
    logits = torch.full((1, 1, 1, 1), 50.0)  # sigmoid = 1 in float32
    targets = torch.ones(1, 1, 1)
    # 1 - d = 9.99e-4 (one epsilon in the total would give 5.0e-4); float32 rounds 1 - d
    assert dice_loss(logits, targets).item() == pytest.approx(1 - 2 / 2.002, rel=1e-4)


def test_mix_logits_are_the_channel_mean_upsampled():
    gen = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 3, 2, 3, generator=gen)
    got = mask_feature_logits(feature, (8, 12))
    assert got.shape == (2, 1, 8, 12)
    for n in range(2):
        mean = feature[n].mean(0).tolist()
        torch.testing.assert_close(got[n, 0], torch.tensor(loop_bilinear(mean, (8, 12))))


def test_cross_entropy_equals_the_formula():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 2, 2, generator=gen)
    labels = torch.randint(0, 4, (3, 2, 2), generator=gen)
    weights = torch.tensor([1.0, 0.0, 1.0])
    per_frame = []
    for f in range(3):
        total = 0.0
        for y in range(2):
            for x in range(2):
                scores = logits[f, :, y, x].tolist()
                log_z = math.log(sum(math.exp(s) for s in scores))
                total += log_z - scores[labels[f, y, x]]
        per_frame.append(total / 4)
    expected = (per_frame[0] + per_frame[2]) / 2
    assert cross_entropy_loss(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


def _batch(setting, frames=10, size=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    classes = 5 if setting == "avss" else 1
    logits = torch.randn(frames, classes, size, size, generator=gen)
    feature = torch.randn(frames, 4, size // 4, size // 4, generator=gen)
    if setting == "avss":
        masks = torch.randint(0, classes, (frames, size, size), generator=gen)
    else:
        masks = (torch.rand(frames, size, size, generator=gen) > 0.6).float()
    return logits, feature, masks


def test_s4_supervises_the_first_frame_of_each_clip():
    """Published S4: frames 0, 5, 10, ... of the batch, which gt_valid marks in training."""
    logits, feature, masks = _batch("s4")
    gt_valid = torch.tensor([1.0, 0, 0, 0, 0] * 2)
    total, parts = avsegformer_loss("s4", logits, feature, masks, gt_valid)
    firsts = [0, 5]
    main = sum(loop_dice(logits[firsts, 0], masks[firsts])) / 2
    mix_logits = mask_feature_logits(feature, (8, 8))
    mix = sum(loop_dice(mix_logits[firsts, 0], masks[firsts])) / 2
    assert total.item() == pytest.approx(main + 0.1 * mix, rel=1e-6)
    assert parts["iou_loss"] == pytest.approx(main, rel=1e-6)
    assert parts["mix_loss"] == pytest.approx(0.1 * mix, rel=1e-6)
    assert parts["total_loss"] == pytest.approx(total.item())


def test_ms3_uses_every_frame():
    logits, feature, masks = _batch("ms3")
    gt_valid = torch.tensor([1.0, 0, 0, 0, 0] * 2)  # ignored, as published
    total, _ = avsegformer_loss("ms3", logits, feature, masks, gt_valid)
    mix_logits = mask_feature_logits(feature, (8, 8))
    expected = sum(loop_dice(logits[:, 0], masks)) / 10
    expected += 0.1 * sum(loop_dice(mix_logits[:, 0], masks)) / 10
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_avss_weights_frames_and_binarises_the_mix_target():
    logits, feature, masks = _batch("avss")
    gt_valid = torch.tensor([1.0] * 3 + [0.0] * 7)
    total, parts = avsegformer_loss("avss", logits, feature, masks, gt_valid)
    ce = cross_entropy_loss(logits, masks, gt_valid).item()
    mix_logits = mask_feature_logits(feature, (8, 8))
    objects = (masks > 0).float()
    mix = sum(loop_dice(mix_logits[:3, 0], objects[:3])) / 3
    assert total.item() == pytest.approx(ce + 0.1 * mix, rel=1e-6)
    assert parts["mix_loss"] == pytest.approx(0.1 * mix, rel=1e-6)


def test_gradients_flow_and_errors():
    logits, feature, masks = _batch("s4", frames=5)
    logits.requires_grad_(True)
    feature.requires_grad_(True)
    total, _ = avsegformer_loss("s4", logits, feature, masks, torch.ones(5))
    total.backward()
    assert logits.grad.abs().sum() > 0 and feature.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown setting 's5'"):
        avsegformer_loss("s5", logits, feature, masks, torch.ones(5))
    with pytest.raises(ValueError, match=r"gt_valid must be \[B\*T\] = \[5\]"):
        avsegformer_loss("s4", logits, feature, masks, torch.ones(4))
    with pytest.raises(ValueError, match="do not match masks"):
        avsegformer_loss("s4", logits, feature, masks[:, :4], torch.ones(5))
    with pytest.raises(ValueError, match="int64 class ids"):
        avsegformer_loss("avss", logits, feature, masks, torch.ones(5))
    with pytest.raises(FloatingPointError, match="not finite"):
        avsegformer_loss("s4", logits.detach() * float("nan"), feature, masks, torch.ones(5))


def test_spec_losses_dispatch_by_method_and_check_the_output_type():
    """Each method's spec owns its loss: avsegformer gives dice + mix_loss_weight x mix from
    the output's mask feature; tpavi the AVSBench BCE of its own output type; a loss given
    another method's output is refused by the contract check; unknown names are refused."""
    from avsbench.config import LossConfig
    from avsbench.models import registry
    from avsbench.models.avsegformer.model import AVSegFormerOutput
    from avsbench.models.tpavi.model import TPAVIOutput

    logits, feature, masks = _batch("ms3")
    gt_valid = torch.ones(10)
    output = AVSegFormerOutput(logits=logits, mask_feature=feature)
    mix_logits = mask_feature_logits(feature, (8, 8))
    main = sum(loop_dice(logits[:, 0], masks)) / 10
    mix = sum(loop_dice(mix_logits[:, 0], masks)) / 10
    cfg = LossConfig(mix_loss_weight=0.25)
    avsegformer = registry.method_spec("avsegformer")
    total, parts = avsegformer.loss("ms3", output, masks, gt_valid, cfg)
    assert total.item() == pytest.approx(main + 0.25 * mix, rel=1e-6)
    assert parts["mix_loss"] == pytest.approx(0.25 * mix, rel=1e-6)
    bce = 0.0
    for p_logit, g in zip(logits[:, 0].flatten().tolist(), masks.flatten().tolist()):
        p = 1 / (1 + math.exp(-p_logit))
        bce -= g * math.log(p) + (1 - g) * math.log(1 - p)
    tpavi = registry.method_spec("tpavi")
    total, parts = tpavi.loss("ms3", TPAVIOutput(logits=logits), masks, gt_valid, cfg)
    assert total.item() == pytest.approx(bce / masks.numel(), rel=1e-5)
    assert "mix_loss" not in parts
    with pytest.raises(ValueError, match="unknown method 'detr'; valid"):
        registry.method_spec("detr")
    with pytest.raises(TypeError, match="the tpavi loss needs a TPAVIOutput .* got AVSegFormer"):
        tpavi.loss("ms3", output, masks, gt_valid, cfg)
    with pytest.raises(TypeError, match="the avsegformer loss needs a AVSegFormerOutput"):
        avsegformer.loss("ms3", TPAVIOutput(logits=logits), masks, gt_valid, cfg)
