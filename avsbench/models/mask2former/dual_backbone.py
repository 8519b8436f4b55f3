"""Two visual backbones, one on the frames and one on the maskiges, fused per level
(COMBO's and VCT's "pre-SAM" path, spec "The network" 3).

    frames   [N, 3, S, S] -> backbone          -> F_img: 4 maps (strides 4..32)
    maskiges [N, 3, S, S] -> pre_sam_backbone  -> F_msk: 4 maps
    per level: w = sigmoid(fc2(relu(fc1(avgpool(F_msk)))))  (C -> C/16 -> C, [N, C, 1, 1])
               F = F_img + w * F_msk

The two backbones have separate weights (both start from the same ImageNet file). ResNets
are detectron2's with FrozenBatchNorm (statistics and affine fixed, also in training): their
BatchNorm layers become torchvision's `FrozenBatchNorm2d` (eps 1e-5). Names: `backbone`,
`pre_sam_backbone`, `scale_factor_module.{l}.fc1/fc2` as published (the backbones' own
names are timm's; each method's `official_names` maps them).
"""

from __future__ import annotations

import os

import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn

from avsbench.models.backbones.visual import VisualEncoder, build_visual_encoder

SCALE_REDUCTION = 16  # fc1 width = C / 16


class ChannelWeightedBlock(nn.Module):
    """`channel_weighted_block`: F_msk [N, C, h, w] -> channel weights [N, C, 1, 1] in (0, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // SCALE_REDUCTION)
        self.fc2 = nn.Linear(channels // SCALE_REDUCTION, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        pooled = x.mean(dim=(2, 3))  # [N, C]
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled)))).reshape(n, c, 1, 1)


class DualBackbone(nn.Module):
    """forward(frames [N, 3, S, S], maskiges [N, 3, S, S]) -> 4 fused maps [N, C_l, S/r, S/r].

    The unfused maps can be read with forward hooks on `backbone` and `pre_sam_backbone`
    (each returns its list of 4 maps)."""

    def __init__(self, backbone: VisualEncoder, pre_sam_backbone: VisualEncoder) -> None:
        super().__init__()
        if backbone.channels != pre_sam_backbone.channels:
            raise ValueError(
                f"the two backbones differ: {backbone.channels} vs {pre_sam_backbone.channels}"
            )
        self.backbone = backbone
        self.pre_sam_backbone = pre_sam_backbone
        self.scale_factor_module = nn.ModuleList(ChannelWeightedBlock(c) for c in backbone.channels)
        self.channels = backbone.channels

    def forward(self, frames: torch.Tensor, maskiges: torch.Tensor) -> list[torch.Tensor]:
        if maskiges.shape != frames.shape:
            raise ValueError(
                f"maskige must be shaped like the frames {tuple(frames.shape)}, "
                f"got {tuple(maskiges.shape)}"
            )
        images = self.backbone(frames)
        masks = self.pre_sam_backbone(maskiges)
        return [f + weight(m) * m for f, m, weight in zip(images, masks, self.scale_factor_module)]


def build_published_backbone(
    name: str, weights: str | os.PathLike | None = None, pretrained: bool = False
) -> VisualEncoder:
    """One backbone as the published family builds it: a ResNet gets FrozenBatchNorm
    (detectron2 `build_resnet_backbone`, FREEZE_AT 0, NORM FrozenBN), the identity without
    `weights`; others unchanged."""
    encoder = build_visual_encoder(name, weights, pretrained=pretrained)
    if name.startswith("resnet"):
        if weights is None:  # detectron2's FrozenBatchNorm starts as the identity; timm
            for module in encoder.body.modules():  # zeroes each block's last BN scale,
                if isinstance(module, nn.BatchNorm2d):  # which frozen would never train
                    nn.init.ones_(module.weight)
        encoder.body = freeze_batch_norm_2d(encoder.body)
    return encoder


def build_dual_backbone(
    name: str, weights: str | os.PathLike | None = None, pretrained: bool = False
) -> DualBackbone:
    """Two backbones `name` (timm), both initialised from `weights` when given."""
    return DualBackbone(
        build_published_backbone(name, weights, pretrained),
        build_published_backbone(name, weights, pretrained),
    )
