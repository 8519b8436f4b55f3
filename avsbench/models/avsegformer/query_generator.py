"""AVSegFormer's audio query generator (the published `AttentionGenerator`).

Learned queries attend to themselves and then to the frame's audio feature, layer after
layer (post-norm, bias-free attention, GELU FFN), giving audio-conditioned queries for the
decoder (docs/AVSEGFORMER.md).
"""

from __future__ import annotations

import torch
from torch import nn


class QueryGeneratorLayer(nn.Module):
    """q = norm1(q + self_attn(q)); q = norm2(q + cross_attn(q, audio)); q = norm3(q + ffn(q))."""

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, num_heads, bias=False, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(embed_dim, num_heads, bias=False, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, embed_dim)
        )
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.norm3 = nn.LayerNorm(embed_dim)

    def forward(self, query: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        query = self.norm1(query + self.self_attn(query, query, query, need_weights=False)[0])
        attended = self.cross_attn(query, audio_feat, audio_feat, need_weights=False)[0]
        query = self.norm2(query + attended)
        return self.norm3(query + self.ffn(query))


class QueryGenerator(nn.Module):
    """forward(audio_feat [N, 1, C]) -> queries [N, Q, C], from Q learned embeddings (`query`)."""

    def __init__(self, num_queries: int, layers: list[QueryGeneratorLayer]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("the query generator needs at least one layer")
        embed_dim = layers[0].norm1.normalized_shape[0]
        self.query = nn.Embedding(num_queries, embed_dim)
        self.layers = nn.ModuleList(layers)

    def forward(self, audio_feat: torch.Tensor) -> torch.Tensor:
        query = self.query.weight[None].expand(audio_feat.shape[0], -1, -1)  # [N, Q, C]
        for layer in self.layers:
            query = layer(query, audio_feat)
        return query
