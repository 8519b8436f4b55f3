"""AVSegFormer's transformer: sine positions, deformable encoder, query decoder.

Follows the published AVSegFormer (Gao et al., AAAI 2024; docs/AVSEGFORMER.md):

- positions: DETR's 2-D sine encoding (`models/backbones/positions.py`).
- `DeformableEncoder`: post-norm layers of multi-scale deformable self-attention + GELU FFN
  over the flattened levels, every token's reference point being its own pixel centre.
- `QueryDecoder`: post-norm layers of self-attention, cross-attention to the encoder memory
  (no positional encoding on either side) and GELU FFN; the last layer's output is used.

No padding masks: AVSBench frames are never padded, so every valid ratio is 1 (the
published code builds all-False masks and ratios of exactly 1.0).
"""

from __future__ import annotations

import torch
from torch import nn

from avsbench.models.backbones.deform_attn import MSDeformAttn, SpatialShapes


def reference_points(spatial_shapes: SpatialShapes, device: torch.device) -> torch.Tensor:
    """Pixel centres of every level, normalised: [1, S, 1, 2] as (x, y) in (0, 1).

    With no padding, DETR's per-level valid ratios are 1 and each token refers to its own
    pixel centre on every level (broadcast over the level axis).
    """
    points = []
    for h, w in spatial_shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))  # [H*W, 2]
    return torch.cat(points, 0)[None, :, None, :]  # [1, S, 1, 2]


class DeformableEncoderLayer(nn.Module):
    """src = norm1(src + attn(src + pos)); src = norm2(src + linear2(gelu(linear1(src))))."""

    def __init__(
        self,
        embed_dim: int = 256,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        num_levels: int = 3,
        num_heads: int = 8,
        num_points: int = 4,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(embed_dim, num_levels, num_heads, num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.activation = nn.GELU()
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        ref_points: torch.Tensor,
        spatial_shapes: SpatialShapes,
    ) -> torch.Tensor:
        attended = self.self_attn(src + pos, ref_points, src, spatial_shapes)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(hidden))


class DeformableEncoder(nn.Module):
    """Stack of `DeformableEncoderLayer`s.

    forward(src [N, S, C], pos [1 or N, S, C], spatial_shapes) -> memory [N, S, C]
    """

    def __init__(self, layers: list[DeformableEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, src: torch.Tensor, pos: torch.Tensor, spatial_shapes: SpatialShapes
    ) -> torch.Tensor:
        refs = reference_points(spatial_shapes, src.device).to(src.dtype)  # [1, S, 1, 2]
        out = src
        for layer in self.layers:
            out = layer(out, pos, refs, spatial_shapes)
        return out


class QueryDecoderLayer(nn.Module):
    """Post-norm self-attention, cross-attention to the memory, GELU FFN (with biases)."""

    def __init__(
        self, embed_dim: int = 256, num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            embed_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.cross_attn = nn.MultiheadAttention(
            embed_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.activation = nn.GELU()
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(embed_dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(query, query, query, need_weights=False)[0]
        query = self.norm1(query + self.dropout1(attended))
        attended = self.cross_attn(query, memory, memory, need_weights=False)[0]
        query = self.norm2(query + self.dropout2(attended))
        hidden = self.linear2(self.dropout3(self.activation(self.linear1(query))))
        return self.norm3(query + self.dropout4(hidden))


class QueryDecoder(nn.Module):
    """Stack of `QueryDecoderLayer`s.

    forward(query [N, Q, C], memory [N, S, C]) -> the last layer's queries [N, Q, C]
    """

    def __init__(self, layers: list[QueryDecoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            query = layer(query, memory)
        return query
