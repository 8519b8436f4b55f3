"""Point sampling (avsbench/models/mask2former/point_sampling.py) against a hand-written
bilinear read and an independent replay of the importance sampling."""

from __future__ import annotations

import math

import pytest
import torch

from avsbench.models.mask2former.point_sampling import (
    importance_sampled_points,
    logit_uncertainty,
    point_sample,
    random_points,
)


def manual_bilinear(image: torch.Tensor, x: float, y: float) -> float:
    """Value of image [H, W] at (x, y) in [0, 1]: pixel centres at (i + 0.5) / size, zero
    outside the image (grid_sample, align_corners=False, zero padding)."""
    h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    total = 0.0
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * float(image[yy, xx])
    return total


def test_point_sample_is_bilinear_with_zero_padding():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    coords = torch.rand(2, 11, 2, generator=gen, dtype=torch.float64)
    coords[0, 0] = torch.tensor([0.0, 0.0])  # a corner: 3/4 of the read is padding
    coords[1, 1] = torch.tensor([0.999, 0.5])  # the right edge
    values = point_sample(features, coords)
    assert values.shape == (2, 3, 11)
    for n in range(2):
        for c in range(3):
            for p in range(11):
                x, y = coords[n, p].tolist()
                expected = manual_bilinear(features[n, c], x, y)
                assert values[n, c, p].item() == pytest.approx(expected, abs=1e-12)
    # the corner reads a quarter of the corner pixel
    assert values[0, 0, 0].item() == pytest.approx(0.25 * features[0, 0, 0, 0].item())


def test_point_sample_refuses_mismatched_coords():
    with pytest.raises(ValueError, match=r"coords must be \[N=2, P, 2\]"):
        point_sample(torch.zeros(2, 1, 4, 4), torch.zeros(3, 5, 2))


def test_uncertainty_is_minus_abs_logit():
    logits = torch.tensor([[[-3.0, 0.5, 0.0, 2.0]]])
    assert torch.equal(logit_uncertainty(logits), torch.tensor([[[-3.0, -0.5, 0.0, -2.0]]]))
    with pytest.raises(ValueError, match="class-agnostic"):
        logit_uncertainty(torch.zeros(1, 2, 3))


@pytest.mark.parametrize("ratio", [0.75, 1.0, 0.0])
def test_importance_sampling_replayed_by_hand(ratio):
    """Same generator state: the kept points are the most uncertain of the 3P drawn ones,
    followed by the next uniform draw."""
    num_points, oversample = 8, 3.0
    logits = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    coords = importance_sampled_points(
        logits, num_points, oversample, ratio, torch.Generator().manual_seed(9)
    )
    assert coords.shape == (3, num_points, 2)

    replay = torch.Generator().manual_seed(9)
    drawn = torch.rand(3, 24, 2, generator=replay)
    num_uncertain = int(ratio * num_points)
    for r in range(3):
        scores = [-abs(manual_bilinear(logits[r, 0], *drawn[r, i].tolist())) for i in range(24)]
        order = sorted(range(24), key=lambda i: -scores[i])[:num_uncertain]
        kept = {tuple(drawn[r, i].tolist()) for i in order}
        assert {tuple(p) for p in coords[r, :num_uncertain].tolist()} == kept
    if num_uncertain < num_points:
        uniform = torch.rand(3, num_points - num_uncertain, 2, generator=replay)
        assert torch.equal(coords[:, num_uncertain:], uniform)


def test_importance_sampling_refuses_bad_ratios():
    with pytest.raises(ValueError, match="oversample_ratio >= 1"):
        importance_sampled_points(torch.zeros(1, 1, 2, 2), 4, 0.5, 0.75)


def test_random_points_with_a_cpu_generator_repeat():
    a = random_points((2, 4, 2), torch.device("cpu"), torch.Generator().manual_seed(1))
    b = random_points((2, 4, 2), torch.device("cpu"), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() < 1
