"""COMBO's late audio-visual fusion `AVFuse` (Yang et al., CVPR 2024; spec "The network" 6).

It runs once, on the pixel decoder's mask features only:

    v = mask features + level_embed[0]                     [N, C, H, W] -> [N, H*W, C]
    "MHA-None": returns (v, a) unchanged (the published AVSS R50 test config)
    "MHA-B" (bilateral attention, one level):
        v' = LN_v(v), a' = LN_a(a)                          a: [N, 1, 128]
        q = v_proj(v' + sine position) * 32^-0.5, k = a_proj(a' + audio_pos)   8 heads of 32
        s = clamp(q k^T, +-50000)                           [N*8, H*W, 1]
        p = softmax of s over the PIXELS, for both directions (the visual update too: the
            published `softmax(., dim=1)` normalises over pixels, not over its one audio key)
        dv = out_v_proj(p * values_a_proj(a'))              [N, H*W, C]
        da = out_a_proj(sum_pixels p * values_v_proj(v'))   [N, 1, 128]
        v = v' + gamma_v * dv, a = a' + gamma_a * da        (the residuals start from the
            LayerNormed inputs: the decoder sees LN'd mask features)
    Dropout 0.1 on p in training (independently for the two directions).

Parameter names are the published ones under `sem_seg_head.fusion_module.`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avsbench.models.mask2former.positions import normalized_sine_positions

FUSION_TYPES = ("MHA-B", "MHA-None")
CLAMP = 50000.0  # the published clamp of the attention scores (fp16's range)
LAYER_SCALE_INIT = 1e-4  # gamma_v, gamma_a start values


class BiMultiHeadAttention(nn.Module):
    """The bilateral attention of one level (`attn_list.{l}`): (v' [N, HW, C], a' [N, 1, A],
    pos_v [N or 1, HW, C], pos_a [N or 1, 1, A]) -> (dv [N, HW, C], da [N, 1, A])."""

    def __init__(
        self, v_dim: int, a_dim: int, embed_dim: int, heads: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by heads {heads}")
        self.heads = heads
        self.head_dim = embed_dim // heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.a_proj = nn.Linear(a_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_a_proj = nn.Linear(a_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_a_proj = nn.Linear(embed_dim, a_dim)
        for layer in (
            self.v_proj, self.a_proj, self.values_v_proj, self.values_a_proj,
            self.out_v_proj, self.out_a_proj,
        ):  # fmt: skip
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape  # [N, L, E] -> [N*heads, L, head_dim]
        x = x.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)
        return x.reshape(n * self.heads, length, self.head_dim)

    def _merge(self, x: torch.Tensor, n: int) -> torch.Tensor:
        length = x.shape[1]  # [N*heads, L, head_dim] -> [N, L, E]
        x = x.reshape(n, self.heads, length, self.head_dim).transpose(1, 2)
        return x.reshape(n, length, self.heads * self.head_dim)

    def forward(
        self, v: torch.Tensor, a: torch.Tensor, pos_v: torch.Tensor, pos_a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = v.shape[0]
        query = self._heads(self.v_proj(v + pos_v) * self.scale)  # [N*h, HW, d]
        key = self._heads(self.a_proj(a + pos_a))  # [N*h, 1, d]
        values_v = self._heads(self.values_v_proj(v))  # [N*h, HW, d]
        values_a = self._heads(self.values_a_proj(a))  # [N*h, 1, d]
        scores = torch.bmm(query, key.transpose(1, 2)).clamp(-CLAMP, CLAMP)  # [N*h, HW, 1]
        scores_t = scores.transpose(1, 2)  # [N*h, 1, HW]
        scores_t = (scores_t - scores_t.max(-1, keepdim=True)[0]).clamp(-CLAMP, CLAMP)
        p_audio = scores_t.softmax(-1)  # [N*h, 1, HW]: over pixels
        p_visual = scores.softmax(1)  # [N*h, HW, 1]: over pixels too (published quirk)
        p_visual = F.dropout(p_visual, p=self.dropout, training=self.training)
        p_audio = F.dropout(p_audio, p=self.dropout, training=self.training)
        out_v = torch.bmm(p_visual, values_a)  # [N*h, HW, d]
        out_a = torch.bmm(p_audio, values_v)  # [N*h, 1, d]
        return self.out_v_proj(self._merge(out_v, n)), self.out_a_proj(self._merge(out_a, n))


class BiAttentionBlock(nn.Module):
    """`b_attn`: pre-LayerNorm + bilateral attention + layer-scaled residuals (one level)."""

    def __init__(
        self,
        v_dim: int,
        a_dim: int,
        embed_dim: int,
        heads: int,
        dropout: float = 0.1,
        layer_scale: float = LAYER_SCALE_INIT,
    ) -> None:
        super().__init__()
        self.layer_norm_v_list = nn.ModuleList([nn.LayerNorm(v_dim)])
        self.layer_norm_a_list = nn.ModuleList([nn.LayerNorm(a_dim)])
        self.attn_list = nn.ModuleList(
            [BiMultiHeadAttention(v_dim, a_dim, embed_dim, heads, dropout)]
        )
        self.gamma_v_list = nn.ParameterList([nn.Parameter(torch.full((v_dim,), layer_scale))])
        self.gamma_a = nn.Parameter(torch.full((a_dim,), layer_scale))

    def forward(
        self, v: torch.Tensor, a: torch.Tensor, pos_v: torch.Tensor, pos_a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # v [N, HW, C], a [N, 1, A]
        v = self.layer_norm_v_list[0](v)
        a = self.layer_norm_a_list[0](a)
        delta_v, delta_a = self.attn_list[0](v, a, pos_v, pos_a)
        return v + self.gamma_v_list[0] * delta_v, a + self.gamma_a * delta_a


class AVFuse(nn.Module):
    """forward(mask_features [N, C, H, W], audio [N, 1, A]) -> (visual [N, C, H, W],
    audio [N, 1, A]). fusion_type: "MHA-B" (bilateral attention) or "MHA-None".
    layer_scale: the start value of the attention's layer scales (published 1e-4)."""

    def __init__(
        self,
        fusion_type: str = "MHA-B",
        visual_dim: int = 256,
        audio_dim: int = 128,
        heads: int = 8,
        dropout: float = 0.1,
        layer_scale: float = LAYER_SCALE_INIT,
    ) -> None:
        super().__init__()
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"unknown COMBO fusion {fusion_type!r}; valid: {list(FUSION_TYPES)}")
        self.fusion_type = fusion_type
        self.audio_pos = nn.Embedding(1, audio_dim)
        self.level_embed = nn.Embedding(1, visual_dim)
        if fusion_type == "MHA-B":
            self.b_attn = BiAttentionBlock(
                visual_dim, audio_dim, visual_dim, heads, dropout, layer_scale
            )

    def forward(
        self, mask_features: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = mask_features.shape
        visual = mask_features + self.level_embed.weight[0][None, :, None, None]
        if self.fusion_type == "MHA-None":
            return visual, audio
        pos_v = normalized_sine_positions(h, w, c // 2, device=visual.device)  # [C, H, W]
        pos_v = pos_v.flatten(1).t()[None].to(visual.dtype)  # [1, HW, C]
        pos_a = self.audio_pos.weight[None]  # [1, 1, A]
        v = visual.flatten(2).transpose(1, 2)  # [N, HW, C]
        v, audio = self.b_attn(v, audio, pos_v, pos_a)
        return v.transpose(1, 2).reshape(n, c, h, w), audio
