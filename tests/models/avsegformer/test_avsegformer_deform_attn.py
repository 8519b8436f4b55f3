"""Multi-scale deformable attention against loops written from its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avsbench.models.backbones.deform_attn import MSDeformAttn, multi_scale_deformable_attention

SHAPES = [(3, 5), (2, 2), (1, 3)]  # three levels of different, non-square sizes


def loop_attention(value, shapes, locations, weights):
    """out[n, q, m*D:(m+1)*D] = sum_{l,p} w * bilinear sample, zero outside, pixel centres at
    (i + 0.5) / W: written one sample and one corner at a time."""
    n_, s_, m_, d_ = value.shape
    _, lq, _, levels, points, _ = locations.shape
    out = torch.zeros(n_, lq, m_, d_, dtype=value.dtype)
    starts = [sum(h * w for h, w in shapes[:i]) for i in range(levels)]
    for n in range(n_):
        for q in range(lq):
            for m in range(m_):
                acc = torch.zeros(d_, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(points):
                        x = locations[n, q, m, lvl, p, 0] * w - 0.5
                        y = locations[n, q, m, lvl, p, 1] * h - 0.5
                        x0, y0 = math.floor(x.item()), math.floor(y.item())
                        fx, fy = x - x0, y - y0
                        for cy, cx, bw in (
                            (y0, x0, (1 - fy) * (1 - fx)),
                            (y0, x0 + 1, (1 - fy) * fx),
                            (y0 + 1, x0, fy * (1 - fx)),
                            (y0 + 1, x0 + 1, fy * fx),
                        ):
                            if 0 <= cx < w and 0 <= cy < h:
                                pixel = value[n, starts[lvl] + cy * w + cx, m]
                                acc = acc + weights[n, q, m, lvl, p] * bw * pixel
                out[n, q, m] = acc
    return out.reshape(n_, lq, m_ * d_)


def random_inputs(n=2, lq=4, m=2, d=3, points=2, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, s, m, d, generator=gen, dtype=torch.float64)
    # locations also outside the unit square: zero padding must be exercised
    locations = torch.rand(n, lq, m, len(SHAPES), points, 2, generator=gen, dtype=torch.float64)
    locations = locations * 1.6 - 0.3
    weights = torch.rand(n, lq, m, len(SHAPES), points, generator=gen, dtype=torch.float64)
    if grad:
        for t in (value, locations, weights):
            t.requires_grad_(True)
    return value, locations, weights


def test_equals_the_formula():
    value, locations, weights = random_inputs()
    got = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    expected = loop_attention(value, SHAPES, locations, weights)
    assert got.shape == (2, 4, 6)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gradients_equal_the_formulas():
    """Gradients for value, locations and weights (bilinear weights are piecewise linear)."""
    inputs = random_inputs(n=1, lq=2, points=2, seed=3, grad=True)
    upstream = torch.randn(1, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(
        (multi_scale_deformable_attention(inputs[0], SHAPES, *inputs[1:]) * upstream).sum(), inputs
    )
    expected = torch.autograd.grad(
        (loop_attention(inputs[0], SHAPES, *inputs[1:]) * upstream).sum(), inputs
    )
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_inference_and_training_paths_agree():
    """Without autograd the points accumulate in place; with it, per level: same numbers."""
    value, locations, weights = (t.float() for t in random_inputs(lq=6, points=3, seed=5))
    with torch.no_grad():
        inference = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    training = multi_scale_deformable_attention(
        value.requires_grad_(True), SHAPES, locations, weights
    )
    assert training.requires_grad
    torch.testing.assert_close(inference, training.detach(), rtol=1e-6, atol=1e-6)


def test_pixel_centres_read_the_pixel():
    """A location at a pixel centre, weight 1, reads exactly that pixel of that level."""
    value = torch.arange(2 * 22 * 1 * 2, dtype=torch.float32).reshape(2, 22, 1, 2)
    loc = torch.zeros(2, 1, 1, 3, 1, 2)
    weights = torch.zeros(2, 1, 1, 3, 1)
    loc[:, 0, 0, 0, 0] = torch.tensor([(3 + 0.5) / 5, (1 + 0.5) / 3])  # level 0, row 1, col 3
    weights[:, 0, 0, 0, 0] = 1.0
    out = multi_scale_deformable_attention(value, SHAPES, loc, weights)
    torch.testing.assert_close(out[:, 0], value[:, 1 * 5 + 3, 0])


def test_refuses_shapes_that_do_not_match():
    value, locations, weights = random_inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        multi_scale_deformable_attention(value, SHAPES[:2], locations, weights)
    with pytest.raises(ValueError, match="spatial_shapes"):
        multi_scale_deformable_attention(value, [(3, 5), (2, 2), (2, 3)], locations, weights)


def test_module_equals_its_formula():
    """offsets in pixels of each level, softmax over the L*P weights of a head."""
    torch.manual_seed(0)
    attn = MSDeformAttn(embed_dim=8, num_levels=3, num_heads=2, num_points=2).double()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    s = sum(h * w for h, w in SHAPES)
    query, src = torch.randn(2, 4, 8).double(), torch.randn(2, s, 8).double()
    ref = torch.rand(1, 4, 3, 2).double()
    got = attn(query, ref, src, SHAPES)

    value = F.linear(src, attn.value_proj.weight, attn.value_proj.bias).reshape(2, s, 2, 4)
    offsets = F.linear(query, attn.sampling_offsets.weight, attn.sampling_offsets.bias)
    offsets = offsets.reshape(2, 4, 2, 3, 2, 2)
    logits = F.linear(query, attn.attention_weights.weight, attn.attention_weights.bias)
    weights = logits.reshape(2, 4, 2, 6).softmax(-1).reshape(2, 4, 2, 3, 2)
    locations = torch.empty_like(offsets)
    for lvl, (h, w) in enumerate(SHAPES):
        locations[..., lvl, :, 0] = ref[:, :, None, lvl, None, 0] + offsets[..., lvl, :, 0] / w
        locations[..., lvl, :, 1] = ref[:, :, None, lvl, None, 1] + offsets[..., lvl, :, 1] / h
    sampled = loop_attention(value, SHAPES, locations, weights)
    expected = F.linear(sampled, attn.output_proj.weight, attn.output_proj.bias)
    torch.testing.assert_close(got, expected)


def test_initial_sampling_pattern():
    """Deformable DETR's init: head h looks along angle 2*pi*h/M (scaled onto the unit
    square) at 1..P pixels, equally on every level, with uniform weights."""
    attn = MSDeformAttn(embed_dim=16, num_levels=2, num_heads=8, num_points=3)
    bias = attn.sampling_offsets.bias.reshape(8, 2, 3, 2)
    assert torch.equal(bias[0, 1, 2], torch.tensor([3.0, 0.0]))  # angle 0, point 3
    torch.testing.assert_close(bias[1, 0, 1], torch.tensor([2.0, 2.0]))  # 45 degrees
    torch.testing.assert_close(bias[6, 1, 0], torch.tensor([0.0, -1.0]))  # 270 degrees
    assert not attn.sampling_offsets.weight.any() and not attn.attention_weights.weight.any()
    assert not attn.attention_weights.bias.any() and not attn.value_proj.bias.any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    value, locations, weights = (t.float() for t in random_inputs(n=2, lq=50, d=8, points=4))
    cpu = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    cuda = multi_scale_deformable_attention(value.cuda(), SHAPES, locations.cuda(), weights.cuda())
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-5, atol=1e-5)
