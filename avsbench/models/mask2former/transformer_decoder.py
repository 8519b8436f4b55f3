"""Mask2Former's masked-attention transformer decoder (`MultiScaleMaskedTransformerDecoder`,
Cheng et al., CVPR 2022), as COMBO and VCT configure it (spec "The network" 5), made generic
over the memory levels so that both methods run on it.

    queries [Q, N, C] (default `query_feat`; COMBO adds audio, VCT passes its own)
    head(queries) -> class [N, Q, K+1], masks [N, Q, H/4, W/4]             (initial queries)
    for layer i = 0 .. layers-1, memory level l = i % L:
        cross-attention to level l (masked by the previous masks unless l is unmasked)
        -> self-attention -> FFN (post-norm each; `query_embed` is the query position)
        head(queries) -> class, masks                                       (deep supervision)

The attention mask of layer i: sigmoid(bilinear(masks, size of level l)) < 0.5 (True = may
not attend), repeated over the heads; rows that would mask every key are unmasked. Memory
level l = its map [N, C, h, w] flattened, + `level_embed[l]`; its position is the normalised
sine of its h x w grid (`input_proj` is the identity in both methods: no parameters).

Parameter names are the published ones under `sem_seg_head.predictor.`.

Extending (VCT): pass the memory levels in order (VCT: audio map first), `unmasked_levels`
for the levels attended without a mask, `queries` for the initial queries; override
`memory_inputs` for another position or projection of a level. `AttentionMaskTrace` records
each masked layer's decision and its margin, or forces given decisions (golden tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from avsbench.models.mask2former.positions import normalized_sine_positions


@dataclass
class AttentionMaskTrace:
    """Records, or forces, the attention-mask decisions of the decoder layers.

    force: layer -> bool [N, Q, h*w]: used instead of the computed decision of that layer.
    masks: layer -> bool [N, Q, h*w], the computed decision (before the fully-masked-row
        fix; forced layers record the computed one too).
    margins: layer -> smallest |mask logit| behind that layer's decision (how close the
        nearest decision was to flipping).
    logits: layer -> float [N, Q, h*w], the mask logits behind the decision (each
        element's own margin), recorded only when `keep_logits` is True.
    Layers attending an unmasked level are absent from both records.
    """

    force: dict[int, torch.Tensor] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)
    margins: dict[int, float] = field(default_factory=dict)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    keep_logits: bool = False


@dataclass
class DecoderOutput:
    """pred_logits [N, Q, K+1] and pred_masks [N, Q, H/4, W/4] of the last layer; aux: the
    (logits, masks) of the initial queries and of every earlier layer, in order."""

    pred_logits: torch.Tensor
    pred_masks: torch.Tensor
    aux_outputs: list[tuple[torch.Tensor, torch.Tensor]]


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: norm(q + MHA(q + pos, q + pos, q))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = tgt + query_pos  # [Q, N, C]
        return self.norm(tgt + self.dropout(self.self_attn(q, q, value=tgt)[0]))


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention: norm(q + MHA(q + qpos, mem + pos, mem, mask))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        _xavier_matrices(self)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # tgt, query_pos: [Q, N, C]; memory, pos: [S, N, C]; mask: [N*heads, Q, S] bool
        attended = self.multihead_attn(
            query=tgt + query_pos, key=memory + pos, value=memory, attn_mask=mask
        )[0]
        return self.norm(tgt + self.dropout(attended))


class FFNLayer(nn.Module):
    """Post-norm FFN: norm(x + linear2(relu(linear1(x))))."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        out = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm(tgt + self.dropout(out))


class MLP(nn.Module):
    """Linear layers with ReLU between them (`mask_embed.layers.{i}`)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MaskedAttentionDecoder(nn.Module):
    """The decoder (module `sem_seg_head.predictor`).

    forward(memories: L maps [N, C, h_l, w_l] in level order, mask_features [N, C, H, W],
            queries [Q, N, C] | None, trace | None, last_rows [F] | None) -> DecoderOutput

    last_rows: indices of the images whose final prediction is read (None: all): the last
    layer and the final heads run on those only (pred_logits, pred_masks [F, ...]; the
    aux_outputs keep all N). Exact: the decoder never mixes images.

    Args:
        num_classes: K (the class head has K + 1 outputs, the last = no object).
        hidden_dim (256), num_queries (100), heads (8), ffn_dim (2048), layers (9),
        mask_dim (256): as published. num_levels: L, memory levels (COMBO 3, VCT 4).
        unmasked_levels: levels attended without an attention mask (VCT: (0,), audio).
        dropout: of the attention and FFN layers (published 0).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        hidden_dim: int = 256,
        num_queries: int = 100,
        heads: int = 8,
        ffn_dim: int = 2048,
        layers: int = 9,
        mask_dim: int = 256,
        num_levels: int = 3,
        unmasked_levels: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = heads
        self.num_layers = layers
        self.num_queries = num_queries
        self.num_levels = num_levels
        self.unmasked_levels = frozenset(unmasked_levels)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, heads, dropout) for _ in range(layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, heads, dropout) for _ in range(layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, ffn_dim, dropout) for _ in range(layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    # -- parts a method may use or override ----------------------------------------------
    def initial_queries(self, n: int) -> torch.Tensor:
        """`query_feat` for N images: [Q, N, C]."""
        return self.query_feat.weight[:, None].repeat(1, n, 1)

    def memory_inputs(
        self, memories: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]:
        """L maps [N, C, h, w] -> (memory [h*w, N, C] + level_embed[l], position [h*w, N, C]
        (normalised sine), (h, w)) per level."""
        if len(memories) != self.num_levels:
            raise ValueError(
                f"the decoder has {self.num_levels} memory levels, got {len(memories)}"
            )
        srcs, positions, sizes = [], [], []
        for level, x in enumerate(memories):
            n, c, h, w = x.shape
            pos = normalized_sine_positions(h, w, c // 2, device=x.device)  # [C, h, w]
            positions.append(pos.flatten(1).t()[:, None].expand(h * w, n, c).to(x.dtype))
            src = x.flatten(2) + self.level_embed.weight[level][None, :, None]  # [N, C, h*w]
            srcs.append(src.permute(2, 0, 1))  # [h*w, N, C]
            sizes.append((h, w))
        return srcs, positions, sizes

    def prediction_heads(
        self, queries: torch.Tensor, mask_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [Q, N, C] -> (class logits [N, Q, K+1], mask logits [N, Q, H, W])."""
        decoded = self.decoder_norm(queries).transpose(0, 1)  # [N, Q, C]
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        return self.class_embed(decoded), masks

    def attention_mask(
        self,
        masks: torch.Tensor,
        size: tuple[int, int],
        layer: int,
        trace: AttentionMaskTrace | None = None,
    ) -> torch.Tensor:
        """masks [N, Q, H, W] -> bool [N*heads, Q, h*w] for `layer` (True: may not attend)."""
        logits = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        logits = logits.detach().flatten(2)  # [N, Q, h*w]
        blocked = logits.sigmoid() < 0.5
        if trace is not None:
            trace.masks[layer] = blocked.clone()
            trace.margins[layer] = float(logits.abs().min())
            if trace.keep_logits:
                trace.logits[layer] = logits.clone()
            if layer in trace.force:
                blocked = trace.force[layer].to(device=blocked.device, dtype=torch.bool)
        n, q, s = blocked.shape
        blocked = blocked[:, None].expand(n, self.num_heads, q, s).reshape(-1, q, s)
        blocked = blocked & ~blocked.all(-1, keepdim=True)  # fully masked rows: unmasked
        return blocked  # [N*heads, Q, h*w]

    # -- the decoder -----------------------------------------------------------------------
    def forward(
        self,
        memories: Sequence[torch.Tensor],
        mask_features: torch.Tensor,
        queries: torch.Tensor | None = None,
        trace: AttentionMaskTrace | None = None,
        last_rows: torch.Tensor | None = None,
    ) -> DecoderOutput:
        n = mask_features.shape[0]
        srcs, positions, sizes = self.memory_inputs(memories)
        query_pos = self.query_embed.weight[:, None].repeat(1, n, 1)  # [Q, N, C]
        output = self.initial_queries(n) if queries is None else queries  # [Q, N, C]
        predictions = [self.prediction_heads(output, mask_features)]
        for i in range(self.num_layers):
            level = i % self.num_levels
            previous_masks = predictions[-1][1]  # [N, Q, H, W]
            if last_rows is not None and i == self.num_layers - 1:
                # the images decode apart: the last layer and the final prediction of the
                # rows `last_rows` only (the others' are not read; an exact saving)
                output, query_pos = output[:, last_rows], query_pos[:, last_rows]
                srcs = [s[:, last_rows] for s in srcs]
                positions = [p[:, last_rows] for p in positions]
                mask_features, previous_masks = mask_features[last_rows], previous_masks[last_rows]
            mask = None
            if level not in self.unmasked_levels:
                mask = self.attention_mask(previous_masks, sizes[level], i, trace)
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], positions[level], query_pos, mask
            )
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            predictions.append(self.prediction_heads(output, mask_features))
        logits, masks = predictions[-1]
        return DecoderOutput(pred_logits=logits, pred_masks=masks, aux_outputs=predictions[:-1])


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
