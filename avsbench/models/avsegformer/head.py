"""AVSegFormer's segmentation head (the published `AVSegHead`), assembled from parts.

    4 backbone maps (strides 4, 8, 16, 32)
      -> in_proj: 1x1 conv + GroupNorm(32) to C channels each
      -> maps 1..3 + sine positions + level embeddings -> deformable encoder -> memory
      -> audio queries (query generator + learnable queries) -> query decoder -> queries [N, Q, C]
      -> mask feature: memory of map 1 upsampled to stride 4 + lateral_conv(map 0), out_conv,
         cross-modal mixer -> [N, C, H/4, W/4]
      -> einsum(queries, mask feature) -> mlp (1x1 convs Q -> 2048 -> 2048 -> C)
         + mask feature -> fc (3x3 conv, x4 bilinear, 3x3 conv, relu, 1x1 conv) -> logits

See docs/AVSEGFORMER.md for the shapes at 224 x 224 and the published names. The published
head also holds `fpn` and `attn_fc` modules that its forward pass never calls; they are not
built here (`official_names.py` reports them when loading a released checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsbench.models.avsegformer.mixer import CrossModalMixer
from avsbench.models.avsegformer.query_generator import QueryGenerator
from avsbench.models.avsegformer.transformer import DeformableEncoder, QueryDecoder
from avsbench.models.backbones.deform_attn import MSDeformAttn
from avsbench.models.backbones.positions import sine_positional_encoding

GROUP_NORM_GROUPS = 32  # GroupNorm groups of every projection (embed_dim must divide by it)
FC_CHANNELS = (128, 32)  # widths of the output convs `fc.0` and `fc.2`
FC_UPSAMPLING = 4  # `fc` upsamples the stride-4 mask feature to the input size


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    return nn.Sequential(conv, nn.GroupNorm(GROUP_NORM_GROUPS, out_channels))


class PixelMLP(nn.Module):
    """1x1 convs with ReLU between: [N, in, H, W] -> [N, out, H, W] (the published `MLP`)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, num_layers: int = 3):
        super().__init__()
        widths = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=1) for a, b in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class AVSegHead(nn.Module):
    """Transformer head of AVSegFormer.

    Args:
        in_channels: widths of the four backbone maps (strides 4, 8, 16, 32).
        encoder, query_generator, decoder, mixer: the parts (embed_dim C each).
        num_classes: K output channels.
        num_queries: Q, the width of the query-pixel product fed to `mlp`.
        mlp_dim: hidden width of `mlp`.

    forward(feats: 4 x [N, in_channels[s], H/r_s, W/r_s], audio_feat [N, 1, C])
        -> (logits [N, K, H, W], mask_feature [N, C, H/4, W/4])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        encoder: DeformableEncoder,
        query_generator: QueryGenerator,
        decoder: QueryDecoder,
        mixer: CrossModalMixer,
        num_classes: int,
        *,
        num_queries: int = 300,
        mlp_dim: int = 2048,
        temperature: float = 10000.0,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"need the widths of 4 backbone maps, got {list(in_channels)}")
        embed_dim = query_generator.query.embedding_dim
        if embed_dim % GROUP_NORM_GROUPS or embed_dim % 2:
            raise ValueError(f"embed_dim must be a multiple of 32, got {embed_dim}")
        self.embed_dim = embed_dim
        self.num_levels = 3  # maps 1..3 (strides 8, 16, 32) enter the transformer
        self.temperature = temperature
        # registration order = the published state-dict order (official_names.py relies on it)
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, embed_dim))
        self.learnable_query = nn.Embedding(num_queries, embed_dim)
        self.query_generator = query_generator
        self.encoder = encoder
        self.decoder = decoder
        self.in_proj = nn.ModuleList(_conv_norm(c, embed_dim) for c in in_channels)
        self.mlp = PixelMLP(num_queries, mlp_dim, embed_dim)
        self.mixer = mixer
        self.lateral_conv = _conv_norm(embed_dim, embed_dim)
        self.out_conv = nn.Sequential(*_conv_norm(embed_dim, embed_dim, 3), nn.ReLU())
        self.fc = nn.Sequential(
            nn.Conv2d(embed_dim, FC_CHANNELS[0], kernel_size=3, padding=1),
            nn.Upsample(scale_factor=FC_UPSAMPLING, mode="bilinear", align_corners=False),
            nn.Conv2d(FC_CHANNELS[0], FC_CHANNELS[1], kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(FC_CHANNELS[1], num_classes, kernel_size=1, bias=False),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The published initialisation: Xavier-uniform for every matrix and kernel,
        Deformable DETR's for the deformable attention, N(0, 1) level embeddings."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self, feats: Sequence[torch.Tensor], audio_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(feats) != 4:
            raise ValueError(f"need 4 backbone maps, got {len(feats)}")
        n = audio_feat.shape[0]
        lateral = self.in_proj[0](feats[0])  # [N, C, H/4, W/4]
        levels = [self.in_proj[s](feats[s]) for s in range(1, 4)]  # 3 x [N, C, h_l, w_l]
        shapes = [(int(x.shape[-2]), int(x.shape[-1])) for x in levels]
        src = torch.cat([x.flatten(2).transpose(1, 2) for x in levels], 1)  # [N, S, C]
        pos = torch.cat(
            [
                sine_positional_encoding(h, w, self.embed_dim // 2, self.temperature, src.device)
                .flatten(1)
                .t()
                + self.level_embed[lvl]
                for lvl, (h, w) in enumerate(shapes)
            ]
        )[None].to(src.dtype)  # [1, S, C]

        query = self.query_generator(audio_feat) + self.learnable_query.weight[None]  # [N, Q, C]
        memory = self.encoder(src, pos, shapes)  # [N, S, C]
        query = self.decoder(query, memory)  # [N, Q, C]

        h0, w0 = shapes[0]
        level0 = memory[:, : h0 * w0].transpose(1, 2).reshape(n, self.embed_dim, h0, w0)
        lateral = self.lateral_conv(lateral)
        upsampled = F.interpolate(
            level0, size=lateral.shape[-2:], mode="bilinear", align_corners=False
        )
        mask_feature = self.mixer(self.out_conv(lateral + upsampled), audio_feat)  # [N,C,H/4,W/4]

        query_maps = torch.einsum("nqc,nchw->nqhw", query, mask_feature)  # [N, Q, H/4, W/4]
        logits = self.fc(mask_feature + self.mlp(query_maps))  # [N, K, H, W]
        return logits, mask_feature
