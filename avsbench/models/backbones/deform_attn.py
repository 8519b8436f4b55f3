"""Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021) in plain PyTorch.

AVSegFormer's encoder attends with it (docs/AVSEGFORMER.md). The published code calls a
compiled CUDA extension, whose pure-PyTorch reference samples every level with bilinear
`grid_sample` (align_corners=False, zero padding) and stacks all L x P samples before the
weighted sum. This module computes the same function with no extension, on CPU and CUDA,
and with less memory traffic:

- one `grid_sample` per level for all heads at once (heads folded into the batch);
- the sampling grid is laid out [N*M, P, Lq, 2], so the samples come out [N*M, D, P, Lq]
  and the weighted sum over points runs along contiguous rows;
- each level's weighted sum is accumulated into the output, so the [.., L, P] stack of all
  samples (and its product with the weights) is never built; without autograd (inference)
  the points are accumulated in place, with no temporary at all;
- the inputs are cut per level with split / unbind, whose backward assembles one gradient
  (slicing would fill a zero tensor of the whole input per level).

benchmarks/bench_avsegformer.py measures it against the published formulation.

Coordinates: a sampling location (x, y) in [0, 1] covers the level's W x H pixels, 0 being
the left/top edge and 1 the right/bottom edge (pixel centres at (i + 0.5) / W), as
`grid_sample` with align_corners=False reads `2 * loc - 1`. Samples outside the map read 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SpatialShapes = Sequence[tuple[int, int]]  # (H_l, W_l) of each level, in order


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of every level.

        out[n, q, m*D + d] = sum_l sum_p  w[n, q, m, l, p] * bilinear(value_l[n, :, :, m, d],
                                                                     loc[n, q, m, l, p])

    value: [N, S, M, D], the L levels flattened row-major one after another
        (S = sum H_l * W_l), M heads of D channels.
    spatial_shapes: L pairs (H_l, W_l).
    sampling_locations: [N, Lq, M, L, P, 2], (x, y) in the unit square of each level.
    attention_weights: [N, Lq, M, L, P].
    Returns [N, Lq, M * D].
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    if len(spatial_shapes) != num_levels or sum(h * w for h, w in spatial_shapes) != s:
        raise ValueError(
            f"spatial_shapes {list(spatial_shapes)} do not match value [N, S={s}, M, D] and "
            f"{num_levels} sampling levels"
        )
    # grid_sample reads 2 * loc - 1; [N, Lq, M, L, P, 2] -> L x [N*M, P, Lq, 2]
    grids = (2 * sampling_locations - 1).permute(3, 0, 2, 4, 1, 5)
    grids = grids.reshape(num_levels, n * m, num_points, lq, 2).unbind(0)
    weights = attention_weights.permute(3, 0, 2, 4, 1)
    weights = weights.reshape(num_levels, n * m, 1, num_points, lq).unbind(0)  # L x [N*M,1,P,Lq]
    values = value.split([h * w for h, w in spatial_shapes], dim=1)  # L x [N, H*W, M, D]
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (value, sampling_locations, attention_weights)
    )
    out: torch.Tensor | None = None  # [N*M, D, Lq], in the samples' dtype (autocast: fp32)
    for (h, w), value_l, grid_l, weights_l in zip(spatial_shapes, values, grids, weights):
        value_l = value_l.permute(0, 2, 3, 1).reshape(n * m, d, h, w)  # [N*M, D, H, W]
        samples = F.grid_sample(
            value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # [N*M, D, P, Lq]
        if needs_grad:  # one product per level: few autograd nodes
            level_sum = (samples * weights_l).sum(2)  # [N*M, D, Lq]
            out = level_sum if out is None else out + level_sum
        else:  # inference: accumulate point by point, in place, no temporaries
            if out is None:
                out = torch.zeros_like(samples[:, :, 0])
            for p in range(num_points):
                out.addcmul_(samples[:, :, p], weights_l[:, :, p])
    assert out is not None
    return out.reshape(n, m * d, lq).transpose(1, 2)  # [N, Lq, M*D]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with its four projections.

    Each query predicts, per head, level and point, an offset from its reference point
    (in pixels of that level) and a weight (softmax over the L*P samples of a head).

    forward(query [N, Lq, C], reference_points [N or 1, Lq, L, 2], value_input [N, S, C],
    spatial_shapes: L pairs (H_l, W_l)) -> [N, Lq, C]

    Parameter names follow the published module (`sampling_offsets`, `attention_weights`,
    `value_proj`, `output_proj`).
    """

    def __init__(
        self, embed_dim: int = 256, num_levels: int = 3, num_heads: int = 8, num_points: int = 4
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: head h starts sampling along direction
        2*pi*h/M at distances 1..P pixels, with uniform weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (
            2.0 * math.pi / self.num_heads
        )
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)  # [M, 2]
        directions = directions / directions.abs().max(-1, keepdim=True)[0]  # onto the unit square
        distances = torch.arange(1, self.num_points + 1, dtype=torch.float32)  # [P]
        grid = directions[:, None, None, :] * distances[None, None, :, None]  # [M, 1, P, 2]
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: SpatialShapes,
    ) -> torch.Tensor:
        n, lq, _ = query.shape
        s = value_input.shape[1]
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        if len(spatial_shapes) != levels:
            raise ValueError(f"expected {levels} levels, got spatial_shapes {list(spatial_shapes)}")
        value = self.value_proj(value_input).reshape(n, s, heads, -1)  # [N, S, M, D]
        offsets = self.sampling_offsets(query).reshape(n, lq, heads, levels, points, 2)
        weights = self.attention_weights(query).reshape(n, lq, heads, levels * points)
        weights = weights.softmax(-1).reshape(n, lq, heads, levels, points)
        # offsets are in pixels of each level: divide by (W_l, H_l)
        size_wh = torch.tensor(
            [[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device
        )  # [L, 2]
        locations = reference_points[:, :, None, :, None, :] + offsets / size_wh[:, None, :]
        out = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(out)  # [N, Lq, C]
