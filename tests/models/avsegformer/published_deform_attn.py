"""The published AVSegFormer's multi-scale deformable attention formulation, written out
again as a reference for the tests and the benchmarks (`benchmarks/bench_avsegformer*.py`
import it from here).

The published code's pure-PyTorch reference (`ms_deform_attn_core_pytorch`, the function
its golden values used) samples each level with `grid_sample` over [N*M, D, H, W] and a
[N*M, Lq, P, 2] grid, stacks the L levels' samples into [N*M, D, Lq, L*P] and multiplies by
the weights before summing. The project's `multi_scale_deformable_attention` lays the grid
out [N*M, P, Lq, 2] and accumulates each level's weighted sum instead (docs/AVSEGFORMER.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def published_formulation(value, spatial_shapes, sampling_locations, attention_weights):
    """The published reference's formulation: per-level grid_sample, stack, weight, sum.

    value: [N, S, M, D]; sampling_locations: [N, Lq, M, L, P, 2] in [0, 1];
    attention_weights: [N, Lq, M, L, P]; returns [N, Lq, M*D].
    """
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1
    samples = []
    for level, (h, w) in enumerate(spatial_shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]; grid [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        value_l = per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(
                value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )  # [N*M, D, Lq, P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    stacked = torch.stack(samples, dim=-2).flatten(-2)  # [N*M, D, Lq, L*P]
    out = (stacked * weights).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()  # [N, Lq, M*D]
