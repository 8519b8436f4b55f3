"""Mask2Former's multi-scale deformable-attention pixel decoder (`MSDeformAttnPixelDecoder`,
Cheng et al., CVPR 2022), as COMBO and VCT use it unchanged (spec "The network" 4).

    res5, res4, res3 -> input_proj.{0,1,2} (1x1 conv + GroupNorm 32) -> 3 levels of C
      + sine position (normalised, 2 pi) + transformer.level_embed[l]
      -> 6 encoder layers (MSDeformAttn over the 3 levels, post-norm, FFN ReLU)
      -> split back into maps at strides 32, 16, 8 = the multi-scale memory
    res2 -> adapter_1 (1x1, no bias, GN) + bilinear(stride-8 map) -> layer_1 (3x3, GN, ReLU)
      -> mask_features (1x1) -> [N, C, H/4, W/4]

Module and parameter names are the published ones under `sem_seg_head.pixel_decoder.`, so a
released state dict loads by stripping that prefix. The deformable attention is the
project's plain-PyTorch one (`avsbench.models.backbones.deform_attn`), which computes the
published `ms_deform_attn_core_pytorch` (grid_sample, bilinear, zeros, align_corners False).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench.models.backbones.deform_attn import MSDeformAttn
from avsbench.models.mask2former.positions import normalized_sine_positions

GROUP_NORM_GROUPS = 32


class ConvNorm(nn.Conv2d):
    """detectron2's `Conv2d` with a norm and an activation: conv -> `norm` -> activation.
    Its state dict is `weight` (+ `bias`) and `norm.*`, as published."""

    def __init__(self, *args, norm: nn.Module, relu: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class EncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm (`MSDeformAttnTransformerEncoderLayer`)."""

    def __init__(
        self, dim: int, ffn_dim: int, dropout: float, levels: int, heads: int, points: int
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(dim, levels, heads, points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        # src, pos: [N, S, C]; reference_points: [N or 1, S, L, 2]
        attended = self.self_attn(src + pos, reference_points, src, shapes)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class _Encoder(nn.Module):
    def __init__(self, layers: list[EncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DeformableEncoder(nn.Module):
    """`MSDeformAttnTransformerEncoderOnly`: `level_embed` [L, C] and `encoder.layers`."""

    def __init__(self, layers: list[EncoderLayer], levels: int, dim: int) -> None:
        super().__init__()
        self.encoder = _Encoder(layers)
        self.level_embed = nn.Parameter(torch.empty(levels, dim))
        nn.init.normal_(self.level_embed)

    @staticmethod
    def reference_points(shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """[1, S, L, 2]: every pixel's centre (x, y) in its level's unit square, the same for
        every level (no padding: the published valid ratios are all 1)."""
        points = []
        for h, w in shapes:
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            points.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
        ref = torch.cat(points, 0)[None]  # [1, S, 2]
        return ref[:, :, None].expand(-1, -1, len(shapes), -1)  # [1, S, L, 2]

    def forward(self, srcs: list[torch.Tensor], positions: list[torch.Tensor]) -> torch.Tensor:
        """srcs, positions: L x [N, C, h_l, w_l] -> memory [N, S, C], S = sum h_l * w_l."""
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # [N, S, C]
        pos = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, p in enumerate(positions)
            ],
            1,
        )  # [N or 1, S, C]
        reference = self.reference_points(shapes, src.device)
        for layer in self.encoder.layers:
            src = layer(src, pos, reference, shapes)
        return src


class MSDeformAttnPixelDecoder(nn.Module):
    """The pixel decoder.

    forward(features: 4 maps [N, C_s, H/r, W/r], r = 4, 8, 16, 32)
        -> (mask_features [N, mask_dim, H/4, W/4],
            multi_scale: 3 maps [N, C, H/r, W/r] at r = 32, 16, 8, in that order)

    Args:
        in_channels: the four backbone widths, stride 4 first.
        conv_dim: C (256); mask_dim: width of the mask features (256).
        encoder_layers, heads, points, ffn_dim (1024), dropout (0): the deformable encoder.
        transformer_levels: how many of the coarsest maps the encoder reads (3: res3-res5);
            the finer ones go through the FPN (`adapter_i`, `layer_i`).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        *,
        conv_dim: int = 256,
        mask_dim: int = 256,
        encoder_layers: int = 6,
        heads: int = 8,
        points: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        transformer_levels: int = 3,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        self.transformer_levels = transformer_levels
        self.num_fpn_levels = len(in_channels) - transformer_levels
        coarse = in_channels[self.num_fpn_levels :][::-1]  # res5, res4, res3 widths
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim)
            )
            for c in coarse
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        layers = [
            EncoderLayer(conv_dim, ffn_dim, dropout, transformer_levels, heads, points)
            for _ in range(encoder_layers)
        ]
        self.transformer = DeformableEncoder(layers, transformer_levels, conv_dim)
        for layer in layers:  # xavier on the encoder's matrices, then Deformable DETR's init
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            layer.self_attn.reset_parameters()
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        _c2_xavier_fill(self.mask_features)
        # FPN levels, named adapter_1 / layer_1 from the finest map up (published order)
        for idx, channels in enumerate(in_channels[: self.num_fpn_levels]):
            lateral = ConvNorm(
                channels, conv_dim, kernel_size=1, bias=False,
                norm=nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim),
            )  # fmt: skip
            output = ConvNorm(
                conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                norm=nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim), relu=True,
            )  # fmt: skip
            _c2_xavier_fill(lateral)
            _c2_xavier_fill(output)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # float32 throughout (float64 stays float64), autocast off (published
        # `@autocast(enabled=False)`)
        with torch.autocast(features[0].device.type, enabled=False):
            return self._forward([f if f.dtype == torch.float64 else f.float() for f in features])

    def _forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        coarse = features[self.num_fpn_levels :][::-1]  # res5, res4, res3
        srcs = [proj(x) for proj, x in zip(self.input_proj, coarse)]  # L x [N, C, h, w]
        positions = [
            normalized_sine_positions(x.shape[-2], x.shape[-1], x.shape[1] // 2, device=x.device)[
                None
            ]
            for x in srcs
        ]  # L x [1, C, h, w]
        memory = self.transformer(srcs, positions)  # [N, S, C]
        n = memory.shape[0]
        sizes = [s.shape[-2] * s.shape[-1] for s in srcs]
        out = [
            chunk.transpose(1, 2).reshape(n, -1, s.shape[-2], s.shape[-1])
            for chunk, s in zip(memory.split(sizes, dim=1), srcs)
        ]  # strides 32, 16, 8: [N, C, h, w]
        multi_scale = list(out)
        for idx in range(self.num_fpn_levels - 1, -1, -1):  # finest FPN level last
            lateral = getattr(self, f"adapter_{idx + 1}")(features[idx])
            up = F.interpolate(
                out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            out.append(getattr(self, f"layer_{idx + 1}")(lateral + up))
        return self.mask_features(out[-1]), multi_scale[: self.transformer_levels]


def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    """fvcore's `c2_xavier_fill`: kaiming-uniform with a = 1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
