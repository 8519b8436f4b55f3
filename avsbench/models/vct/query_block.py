"""VCT's own parts (Huang et al., CVPR 2025; spec: VCT and COMBO, "The network", item 7):
the audio memory level, the vision-centric query block (PPQG + prototypes + assignment)
and the features of the prototype loss.

Names are the published ones (`sem_seg_head.audio_transformation.*`,
`sem_seg_head.predictor.visual_query_block.*`, `.audio_proj`, `.proto_proj`), so that the
released checkpoints load by their own names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class AudioTransformation(nn.Module):
    """VGGish conv map -> the decoder's audio memory level, per position.

    forward(audio [N, 512, 6, 4]) -> [N, 256, 6, 4]:
    Linear 512->4096, ReLU, 4096->4096, ReLU, 4096->256 on every one of the 6 x 4 positions.
    """

    def __init__(self, in_dim: int = 512, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        super().__init__()
        self.embeddings = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.permute(0, 2, 3, 1)  # [N, 6, 4, 512]
        return self.embeddings(x).permute(0, 3, 1, 2)  # [N, 256, 6, 4]


class MLP(nn.Module):
    """Linear layers (`layers.{i}`) with ReLU between them (Mask2Former's MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


@dataclass
class Assignment:
    """What the assignment computed (also when another one was forced): index [N, P] the
    query of every pixel; gap [N, P] its top-1 minus top-2 score (how far the decision is
    from flipping); largest [] the largest |score| (the scale of the gap)."""

    index: torch.Tensor
    gap: torch.Tensor
    largest: torch.Tensor


class AssignAttention(nn.Module):
    """GroupViT's hard assignment (1 head): every pixel goes to one query.

    forward(queries [N, Q, C], pixels [N, P, C], forced_index [N, P] | None)
        -> (update [N, Q, C], Assignment)

    scores = q_proj(queries) k_proj(pixels)^T / sqrt(C)       [N, Q, P]
    A = one-hot over the Q queries of every pixel: eval argmax of softmax(scores) (straight
        through: A = hard - soft.detach() + soft); training argmax of
        softmax(scores + Gumbel(0, 1)) (tau 1), also straight through
    A = A / (A.sum(pixels) + 1);   update = proj(A v_proj(pixels))
    forced_index: use these queries instead of the argmax (the golden tests' stored
    decisions); the returned Assignment is still the computed one.
    """

    def __init__(self, dim: int = 256, gumbel_tau: float = 1.0, assign_eps: float = 1.0) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.gumbel_tau = gumbel_tau
        self.assign_eps = assign_eps

    def scores(self, queries: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """[N, Q, P] scaled dot products."""
        return self.q_proj(queries) @ self.k_proj(pixels).transpose(1, 2) * self.scale

    def forward(
        self,
        queries: torch.Tensor,
        pixels: torch.Tensor,
        forced_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Assignment]:
        scores = self.scores(queries, pixels)  # [N, Q, P]
        logits = scores
        if self.training:
            gumbels = -torch.empty_like(scores).exponential_().log()  # ~ Gumbel(0, 1)
            logits = (scores + gumbels) / self.gumbel_tau
        soft = logits.softmax(dim=1)  # over the queries, per pixel
        computed = soft.argmax(dim=1)  # [N, P]
        index = computed if forced_index is None else forced_index.to(scores.device).long()
        hard = torch.zeros_like(soft).scatter_(1, index.unsqueeze(1), 1.0)
        attn = hard - soft.detach() + soft  # [N, Q, P], straight through
        attn = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)
        update = self.proj(attn @ self.v_proj(pixels))  # [N, Q, C]
        with torch.no_grad():
            top2 = scores.topk(2, dim=1).values  # [N, 2, P]
            decision = Assignment(
                index=computed, gap=top2[:, 0] - top2[:, 1], largest=scores.abs().amax()
            )
        return update, decision


class PrototypeAttention(nn.Module):
    """Queries attend the class prototypes, post-norm: LN(q + MHA(q, P, P)), 4 heads.

    forward(queries [Q, N, C], prototypes [K, N, C]) -> [Q, N, C]."""

    def __init__(self, dim: int = 256, num_heads: int = 4) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        attended = self.multihead_attn(queries, prototypes, prototypes)[0]
        return self.norm(queries + attended)


class VisualQueryBlock(nn.Module):
    """Vision-centric queries from the mask features (published `ProtoVCQ` with prototypes,
    `VCQ` without).

    forward(mask_features [N, C, h, w], forced_index [N, h*w] | None)
        -> (queries [N, Q, C], prototypes [K, C] | None, Assignment)

    X = pre_proj(mask_features) (1x1, ReLU, 3x3, ReLU, 1x1)       [N, C, h*w]
    Q0 = query_mixer(X) over the pixel axis (h*w -> mixer_dim x 2 -> Q)  [N, C, Q] -> [Q, N, C]
    with prototypes: Q0 = LN(Q0 + MHA_4(Q0, prototypes, prototypes))
    Q = Q0 + AssignAttention(Q0, X)
    The pixel count h*w is fixed by the query mixer: (S/4)^2 for S x S inputs (published:
    96 * 96, S = 384; `VCTArch.image_size` sets S).
    """

    def __init__(
        self,
        dim: int = 256,
        num_pixels: int = 96 * 96,
        num_queries: int = 100,
        num_prototypes: int | None = None,
        mixer_dim: int = 256,
    ) -> None:
        super().__init__()
        if num_prototypes:
            self.prototype = nn.Embedding(num_prototypes, dim)
        self.pre_proj = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(dim, dim, 1),
        )
        self.query_mixer = MLP(num_pixels, mixer_dim, num_queries, 3)
        if num_prototypes:
            self.pre_attn = PrototypeAttention(dim, num_heads=4)
        self.assign_attn = AssignAttention(dim)
        self.num_pixels = num_pixels

    @property
    def has_prototypes(self) -> bool:
        return hasattr(self, "prototype")

    def forward(
        self, mask_features: torch.Tensor, forced_index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, Assignment]:
        n, _, h, w = mask_features.shape
        if h * w != self.num_pixels:
            side = round(self.num_pixels**0.5)
            raise ValueError(
                f"VCT's query mixer takes {self.num_pixels} mask-feature pixels (a {4 * side} "
                f"x {4 * side} input), got {h} x {w}"
            )
        x = self.pre_proj(mask_features).flatten(2)  # [N, C, h*w]
        queries = self.query_mixer(x).permute(2, 0, 1)  # [N, C, Q] -> [Q, N, C]
        prototypes = None
        if self.has_prototypes:
            prototypes = self.prototype.weight  # [K, C]
            queries = self.pre_attn(queries, prototypes[:, None].expand(-1, n, -1))
        queries = queries.transpose(0, 1)  # [N, Q, C]
        update, decision = self.assign_attn(queries, x.transpose(1, 2), forced_index)
        return queries + update, prototypes, decision


def prototype_features(
    audio_proj: nn.Linear, proto_proj: nn.Linear, audio: torch.Tensor, prototypes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The features of VCT's prototype loss (S4/AVSS): bias-free projections, L2-normalised.

    audio [N, C, 6, 4] (the decoder's audio level), prototypes [K, C]
        -> (feat_audio [N, C] of the mean over the 6 x 4 grid, feat_proto [K, C])."""
    feat_audio = audio_proj(audio.mean(dim=(2, 3)))  # [N, C]
    feat_proto = proto_proj(prototypes)  # [K, C]
    return (
        feat_audio / feat_audio.norm(dim=-1, keepdim=True),
        feat_proto / feat_proto.norm(dim=-1, keepdim=True),
    )
