"""AVSegFormer's cross-modal mixer (the published `CrossModalMixer`): audio-driven channel gates.

The frame's audio feature attends over the pixels of the mask feature (multi-head, no qkv
bias); the sigmoid of the projected result scales the mask feature's channels
(docs/AVSEGFORMER.md). The published version squeezes the [N, 1, C] gate with `squeeze()`,
which also drops N when N = 1; here one frame works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossModalMixer(nn.Module):
    """forward(feature_map [N, C, H, W], audio_feat [N, 1, C]) -> [N, C, H, W]

    gate = sigmoid(proj(attention(q_proj(audio), k, v)))   with (k, v) = kv_proj(pixels)
    out = feature_map * gate (per channel)
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=qkv_bias)
        self.kv_proj = nn.Linear(embed_dim, embed_dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, feature_map: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feature_map.shape
        heads = self.num_heads
        pixels = feature_map.flatten(2).transpose(1, 2)  # [N, H*W, C]
        q = self.q_proj(audio_feat).reshape(n, 1, heads, c // heads).transpose(1, 2)  # [N,M,1,D]
        kv = self.kv_proj(pixels).reshape(n, h * w, 2, heads, c // heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x [N, M, H*W, D]
        attended = F.scaled_dot_product_attention(q, k, v)  # [N, M, 1, D], scale 1/sqrt(D)
        gate = self.proj(attended.transpose(1, 2).reshape(n, c)).sigmoid()  # [N, C]
        return feature_map * gate[:, :, None, None]
