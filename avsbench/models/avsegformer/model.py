"""AVSegFormer (Gao et al., AAAI 2024), assembled from parts, and its builder.

    frames [B*T, 3, H, W] -> visual encoder -> 4 maps (strides 4..32) (x frame_valid)
    audio_emb [B*T, 128] (frozen VGGish, outside the model) -> audio_proj -> [B*T, 1, C]
      -> AVSegHead -> logits [B*T, K, H, W], mask feature [B*T, C, H/4, W/4] (x frame_valid)

Every frame is processed on its own (no temporal interaction; only a ResNet's train-mode
BatchNorm shares batch statistics, as published), so any B*T works, one frame included.
`build_avsegformer` reproduces the six published configurations (S4 / MS3 / AVSS with
ResNet-50 or PVT-v2-b5); released checkpoints load through
`avsbench.models.avsegformer.official_names` (docs/AVSEGFORMER.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from avsbench.config import ModelConfig, setting_info
from avsbench.models.avsegformer.config import AVSegFormerArch
from avsbench.models.avsegformer.head import GROUP_NORM_GROUPS, AVSegHead
from avsbench.models.avsegformer.mixer import CrossModalMixer
from avsbench.models.avsegformer.query_generator import QueryGenerator, QueryGeneratorLayer
from avsbench.models.avsegformer.transformer import (
    DeformableEncoder,
    DeformableEncoderLayer,
    QueryDecoder,
    QueryDecoderLayer,
)
from avsbench.models.backbones.vggish import EMBEDDING_SIZE
from avsbench.models.backbones.visual import VisualEncoder, build_visual_encoder
from avsbench.models.contract import AVSOutput, check_inputs, decoded_rows
from avsbench.models.mask2former.output import spread_rows


@dataclass
class AVSegFormerOutput(AVSOutput):
    """`logits` and what AVSegFormer's mix loss reads: mask_feature [B*T, C, H/4, W/4]."""

    mask_feature: torch.Tensor


class AVSegFormer(nn.Module):
    """Visual encoder + audio projection + AVSegHead.

    Args:
        visual: four-stage encoder (`VisualEncoder`).
        head: `AVSegHead` built for `visual.channels`.
        audio_proj: Linear(128, C), the VGGish embedding to the head's width.

    forward(frames [B*T, 3, H, W], audio_emb [B*T, 128], frame_valid [B*T] | None,
            target_frames=None)
        -> AVSegFormerOutput(logits [B*T, K, H, W], mask_feature [B*T, C, H/4, W/4]).
    H and W must be divisible by 32. target_frames (the contract's, [B*T] bool): the visual
    encoder sees every frame (a ResNet's train-mode BatchNorm mixes the frames), the head
    (per frame, GroupNorm) only these; the others' logits and mask features are zeros.
    Padding frames (frame_valid 0) give zero logits and mask features, as published.
    """

    def __init__(self, visual: VisualEncoder, head: AVSegHead, audio_proj: nn.Linear) -> None:
        super().__init__()
        self.visual = visual
        self.head = head
        self.audio_proj = audio_proj

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the visual encoder, as the published recipe does
        for its first `freeze_epochs` epochs (the engine calls it through the method's spec).
        Only requires_grad changes: a ResNet's BatchNorm keeps its train mode."""
        self.visual.requires_grad_(trainable)

    def forward(
        self,
        frames: torch.Tensor,
        audio_emb: torch.Tensor,
        frame_valid: torch.Tensor | None = None,
        target_frames: torch.Tensor | None = None,
    ) -> AVSegFormerOutput:
        bt = check_inputs(frames, audio_emb, frame_valid)
        rows = decoded_rows(target_frames, bt, frames.device)  # [F] or None (every frame)
        valid = None
        if frame_valid is not None:
            valid = frame_valid.reshape(bt, 1, 1, 1).to(frames.dtype)  # [B*T, 1, 1, 1]
            valid = valid if rows is None else valid[rows]  # [F, 1, 1, 1]

        feats = self.visual(frames)  # 4 x [B*T, C_s, H/r, W/r]: BatchNorm sees every frame
        if rows is not None:  # the head works per frame (GroupNorm): the read frames only
            feats, audio_emb = [f[rows] for f in feats], audio_emb[rows]
        audio_feat = self.audio_proj(audio_emb)[:, None]  # [F, 1, C]
        if valid is not None:
            feats = [f * valid for f in feats]
        logits, mask_feature = self.head(feats, audio_feat)
        if valid is not None:
            logits = logits * valid
            mask_feature = mask_feature * valid
        if rows is not None:  # [F, ...] -> [B*T, ...], zeros for the frames not decoded
            logits = spread_rows(logits, rows, bt)
            mask_feature = spread_rows(mask_feature, rows, bt)
        return AVSegFormerOutput(logits=logits, mask_feature=mask_feature)


def build_avsegformer(
    setting: str,
    backbone: str,
    *,
    num_classes: int | None = None,
    embed_dim: int = 256,
    num_queries: int = 300,
    encoder_layers: int = 6,
    decoder_layers: int = 6,
    generator_layers: int = 6,
    num_heads: int = 8,
    num_points: int = 4,
    ffn_dim: int = 2048,
    generator_ffn_dim: int = 1024,
    mlp_dim: int = 2048,
    dropout: float = 0.1,
    backbone_weights: str | os.PathLike | None = None,
    pretrained: bool = False,
) -> AVSegFormer:
    """Build AVSegFormer for `setting` in {"s4", "ms3", "avss"} (the defaults are published).

    backbone: "resnet50" / "pvt_v2_b5" (published) or another timm name with four stages
    (e.g. "resnet18" with embed_dim=64, fewer layers and queries for small runs).
    num_classes defaults to 1 / 1 / 71. S4 and MS3 share one architecture. backbone_weights:
    a pretrained file as for `avsbench.build_model`; nothing is downloaded.
    """
    row = setting_info(setting)  # an unknown setting raises, listing the valid ones
    if embed_dim < GROUP_NORM_GROUPS or embed_dim % GROUP_NORM_GROUPS:
        raise ValueError(f"embed_dim must be a positive multiple of 32, got {embed_dim}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    counts = {
        "num_queries": num_queries,
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "generator_layers": generator_layers,
        "num_points": num_points,
    }
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    num_classes = row.num_classes if num_classes is None else num_classes

    visual = build_visual_encoder(backbone, backbone_weights, pretrained=pretrained)
    encoder = DeformableEncoder(
        [
            DeformableEncoderLayer(embed_dim, ffn_dim, dropout, 3, num_heads, num_points)
            for _ in range(encoder_layers)
        ]
    )
    generator = QueryGenerator(
        num_queries,
        [
            QueryGeneratorLayer(embed_dim, num_heads, generator_ffn_dim)
            for _ in range(generator_layers)
        ],
    )
    decoder = QueryDecoder(
        [QueryDecoderLayer(embed_dim, num_heads, ffn_dim, dropout) for _ in range(decoder_layers)]
    )
    mixer = CrossModalMixer(embed_dim, num_heads)
    head = AVSegHead(
        visual.channels,
        encoder,
        generator,
        decoder,
        mixer,
        num_classes,
        num_queries=num_queries,
        mlp_dim=mlp_dim,
    )
    return AVSegFormer(visual, head, nn.Linear(EMBEDDING_SIZE, embed_dim))


def build_from_config(model_cfg: ModelConfig) -> AVSegFormer:
    """`build_avsegformer` with the fields of `ModelConfig` and its `AVSegFormerArch`."""
    arch = model_cfg.arch or AVSegFormerArch()
    return build_avsegformer(
        model_cfg.setting,
        model_cfg.backbone,
        num_classes=model_cfg.num_classes,
        embed_dim=arch.embed_dim,
        num_queries=arch.num_queries,
        encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers,
        generator_layers=arch.generator_layers,
        num_points=arch.num_points,
        ffn_dim=arch.ffn_dim,
        generator_ffn_dim=arch.generator_ffn_dim,
        mlp_dim=arch.mlp_dim,
        backbone_weights=model_cfg.backbone_weights,
    )
