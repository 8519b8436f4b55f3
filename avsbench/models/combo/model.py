"""COMBO (Yang et al., CVPR 2024), assembled from the shared Mask2Former core, and its builder.

    frames, maskiges [N, 3, S, S] -> DualBackbone -> 4 fused maps (strides 4..32)
      -> sem_seg_head.pixel_decoder -> mask features [N, C, S/4, S/4], memory (32, 16, 8)
    audio_emb [N, 128] (frozen VGGish outside the model) -> [N, 1, 128]
      -> sem_seg_head.fusion_module (AVFuse, with the mask features) -> visual, audio
      -> sem_seg_head.audio_transformation 128 -> 4096 -> 4096 -> 256
      -> queries = query_feat + audio (reshape quirk below)
    sem_seg_head.predictor (masked attention, 3 levels) -> pred_logits, pred_masks (+ aux)
    semantic inference -> sem_seg [N, K, S, S] -> contract logits

The audio-to-query reshape quirk (published `audio.repeat(1, Q, 1).reshape(Q, -1, C)`): with
n frames decoded together, query q of frame b gets the audio of frame (q * n + b) // Q. The
published test decodes one clip per batch, its training the whole batch: `frames_per_clip`
T > 0 applies it per clip of T frames in eval mode and over the whole batch in training;
T = 0 always over the whole batch. Padding frames (frame_valid 0) are not decoded at all, as
the published AVSS code feeds only the frames of the clip; their outputs are zeros.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from avsbench.config import ModelConfig, setting_info
from avsbench.models.backbones.vggish import EMBEDDING_SIZE
from avsbench.models.combo.config import ComboArch
from avsbench.models.combo.fusion import LAYER_SCALE_INIT, AVFuse
from avsbench.models.contract import check_inputs, decoded_rows
from avsbench.models.mask2former.dual_backbone import DualBackbone, build_dual_backbone
from avsbench.models.mask2former.inference import contract_logits, semantic_inference
from avsbench.models.mask2former.output import Mask2FormerOutput, spread_rows
from avsbench.models.mask2former.pixel_decoder import GROUP_NORM_GROUPS, MSDeformAttnPixelDecoder
from avsbench.models.mask2former.transformer_decoder import (
    AttentionMaskTrace,
    MaskedAttentionDecoder,
)


class AudioMLP(nn.Module):
    """`audio_transformation`: Linear 128 -> H, ReLU, H -> H, ReLU, H -> C (`embeddings.*`)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embeddings(x)


class ComboHead(nn.Module):
    """`sem_seg_head`: pixel decoder, fusion, audio MLP and masked-attention decoder."""

    def __init__(
        self,
        pixel_decoder: MSDeformAttnPixelDecoder,
        fusion_module: AVFuse,
        audio_transformation: AudioMLP,
        predictor: MaskedAttentionDecoder,
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.fusion_module = fusion_module
        self.audio_transformation = audio_transformation
        self.predictor = predictor


def audio_queries(audio: torch.Tensor, num_queries: int, groups: list[int]) -> torch.Tensor:
    """The published reshape of the audio into the queries, per group of frames.

    audio [n, C] -> [Q, n, C]: within a group of g frames, query q of frame b gets the audio
    of frame (q * g + b) // Q of that group. groups: the group sizes, summing to n.
    """
    n, c = audio.shape
    if sum(groups) != n:
        raise ValueError(f"groups {groups} do not cover the {n} decoded frames")
    out = [
        clip[:, None].expand(g, num_queries, c).reshape(num_queries, g, c)  # [Q, g, C]
        for clip, g in zip(audio.split(groups), groups)
    ]
    return torch.cat(out, 1)  # [Q, n, C]


class COMBO(nn.Module):
    """forward(frames [N, 3, S, S], audio_emb [N, 128], frame_valid [N] | None,
    target_frames=None, maskige [N, 3, S, S], trace=None) -> Mask2FormerOutput.

    Frames and maskiges are ImageNet-normalised; S divisible by 32. target_frames (the
    contract's, [N] bool): every valid frame is decoded up to the last decoder layer (the
    audio quirk mixes frames, the cosine loss reads every frame's earlier predictions), the
    last layer and the final prediction only for these frames (the others' final
    predictions and logits are zeros; docs/ARCHITECTURE.md, "Exact savings").
    trace: an `AttentionMaskTrace` (golden tests), None otherwise. In training the contract
    logits carry no gradient (the losses read pred_logits / pred_masks).
    """

    def __init__(
        self,
        visual: DualBackbone,
        sem_seg_head: ComboHead,
        num_classes: int,
        frames_per_clip: int = 5,
        train_audio_groups: str = "batch",
    ) -> None:
        super().__init__()
        if train_audio_groups not in ("batch", "clip"):
            raise ValueError(
                f"train_audio_groups must be 'batch' or 'clip', got {train_audio_groups!r}"
            )
        self.visual = visual
        self.sem_seg_head = sem_seg_head
        self.num_classes = num_classes  # the contract's: 1 (S4/MS3) or 71 (AVSS)
        self.frames_per_clip = frames_per_clip
        self.train_audio_groups = train_audio_groups  # "batch" (published) | "clip"

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or unfreeze both visual backbones (not the scale-factor blocks)."""
        self.visual.backbone.requires_grad_(trainable)
        self.visual.pre_sam_backbone.requires_grad_(trainable)

    def quirk_groups(self, frames: int | torch.Tensor) -> list[int]:
        """Sizes of the frame groups of the audio quirk, over the decoded frames.

        frames: the number of frames (all valid) or frame_valid [N]. Training (published,
        train_audio_groups "batch"), or frames_per_clip 0: one group, the whole batch; eval
        (and training with train_audio_groups "clip"): the valid frames of each clip of T =
        frames_per_clip (one group if N is not a multiple of T).
        """
        valid = torch.ones(frames, dtype=torch.bool) if isinstance(frames, int) else frames > 0
        n, t = valid.numel(), self.frames_per_clip
        total = int(valid.sum())
        whole_batch = self.training and self.train_audio_groups == "batch"
        if whole_batch or t <= 0 or n % t:
            return [total]
        counts = valid.reshape(n // t, t).sum(1).tolist()
        return [int(c) for c in counts if c > 0]

    def forward(
        self,
        frames: torch.Tensor,
        audio_emb: torch.Tensor,
        frame_valid: torch.Tensor | None = None,
        target_frames: torch.Tensor | None = None,
        maskige: torch.Tensor | None = None,
        trace: AttentionMaskTrace | None = None,
    ) -> Mask2FormerOutput:
        bt = check_inputs(frames, audio_emb, frame_valid)
        if maskige is None:
            raise ValueError(
                "COMBO needs the maskige of every frame (sample key 'maskige', "
                "avsbench.data.extra_inputs.MASKIGE); none was given"
            )
        rows = None  # the real frames: padding frames are not decoded
        if frame_valid is not None:
            rows = decoded_rows(frame_valid.reshape(bt) > 0, bt, frames.device)
        if rows is not None:
            frames, maskige, audio_emb = frames[rows], maskige[rows], audio_emb[rows]
        groups = self.quirk_groups(bt if frame_valid is None else frame_valid.reshape(bt))

        head = self.sem_seg_head
        feats = self.visual(frames, maskige)  # 4 x [n, C_l, S/r, S/r]
        mask_features, memory = head.pixel_decoder(feats)  # [n, C, S/4, S/4], 3 levels
        visual, audio = head.fusion_module(mask_features, audio_emb[:, None])  # audio [n, 1, A]
        audio = head.audio_transformation(audio)  # [n, 1, C]
        predictor = head.predictor
        queries = predictor.initial_queries(frames.shape[0])  # [Q, n, C]
        queries = queries + audio_queries(audio[:, 0], predictor.num_queries, groups)
        final = final_rows(target_frames, rows, bt, frames.device)  # [F] of the n, or None
        out = predictor(memory, visual, queries, trace, last_rows=final)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.training):
            # the losses read pred_logits / pred_masks: no graph through the S x S masks
            sem_seg = semantic_inference(out.pred_logits, out.pred_masks, tuple(frames.shape[-2:]))
        n = frames.shape[0]
        return Mask2FormerOutput(
            logits=spread_rows(contract_logits(sem_seg, self.num_classes), final, n),
            pred_logits=spread_rows(out.pred_logits, final, n),
            pred_masks=spread_rows(out.pred_masks, final, n),
            aux_outputs=list(out.aux_outputs),
        ).scattered(rows, bt)


def final_rows(
    target_frames: torch.Tensor | None, rows: torch.Tensor | None, bt: int, device: torch.device
) -> torch.Tensor | None:
    """Indices, among the n decoded frames (`rows` of the B*T; None: all), of the frames in
    target_frames [B*T] bool (the contract's: the frames whose final prediction is read);
    None when that is all of them."""
    wanted = decoded_rows(target_frames, bt, device)  # [F] of the B*T, or None
    if wanted is None:
        return None
    keep = torch.zeros(bt, dtype=torch.bool, device=device)
    keep[wanted] = True
    keep = keep if rows is None else keep[rows]  # [n]
    return None if bool(keep.all()) else keep.nonzero().squeeze(1)


def build_combo(
    setting: str,
    backbone: str,
    *,
    num_classes: int | None = None,
    fusion: str = "MHA-B",
    num_queries: int = 100,
    hidden_dim: int = 256,
    decoder_layers: int = 9,
    encoder_layers: int = 6,
    heads: int = 8,
    points: int = 4,
    decoder_ffn_dim: int = 2048,
    encoder_ffn_dim: int = 1024,
    audio_hidden_dim: int = 4096,
    frames_per_clip: int | None = None,
    train_audio_groups: str = "batch",
    fusion_layer_scale: float = LAYER_SCALE_INIT,
    backbone_weights: str | os.PathLike | None = None,
    pretrained: bool = False,
) -> COMBO:
    """Build COMBO for `setting` in {"s4", "ms3", "avss"} (the defaults are published).

    backbone: "resnet50" / "pvt_v2_b5" (published) or another timm name with four stages.
    num_classes: the contract's, 1 / 1 / 71 by default (the class head predicts 2 / 2 / 71
    classes + no object). fusion: "MHA-B" or "MHA-None" (`ComboArch.fusion`).
    frames_per_clip: clip length of the eval-time audio quirk (default: the setting's).
    train_audio_groups: "batch" (published) or "clip" (`ComboArch.train_audio_groups`).
    fusion_layer_scale: start value of the fusion's layer scales (published 1e-4).
    backbone_weights: one pretrained file for both backbones; nothing is downloaded.
    """
    row = setting_info(setting)
    if hidden_dim < GROUP_NORM_GROUPS or hidden_dim % GROUP_NORM_GROUPS:
        raise ValueError(f"hidden_dim must be a positive multiple of 32, got {hidden_dim}")
    if hidden_dim % heads:
        raise ValueError(f"hidden_dim {hidden_dim} must be divisible by heads {heads}")
    counts = {"num_queries": num_queries, "decoder_layers": decoder_layers, "points": points}
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    num_classes = row.num_classes if num_classes is None else num_classes
    head_classes = 2 if num_classes == 1 else num_classes
    visual = build_dual_backbone(backbone, backbone_weights, pretrained=pretrained)
    pixel_decoder = MSDeformAttnPixelDecoder(
        visual.channels, conv_dim=hidden_dim, mask_dim=hidden_dim, encoder_layers=encoder_layers,
        heads=heads, points=points, ffn_dim=encoder_ffn_dim,
    )  # fmt: skip
    fusion_module = AVFuse(
        fusion, hidden_dim, EMBEDDING_SIZE, heads, layer_scale=fusion_layer_scale
    )
    audio_mlp = AudioMLP(EMBEDDING_SIZE, audio_hidden_dim, hidden_dim)
    predictor = MaskedAttentionDecoder(
        head_classes, hidden_dim=hidden_dim, num_queries=num_queries, heads=heads,
        ffn_dim=decoder_ffn_dim, layers=decoder_layers, mask_dim=hidden_dim, num_levels=3,
    )  # fmt: skip
    head = ComboHead(pixel_decoder, fusion_module, audio_mlp, predictor)
    clip = row.frames_per_clip if frames_per_clip is None else frames_per_clip
    return COMBO(visual, head, num_classes, clip, train_audio_groups)


def build_from_config(model_cfg: ModelConfig) -> COMBO:
    """`build_combo` with the fields of `ModelConfig` and its `ComboArch`."""
    arch = model_cfg.arch or ComboArch()
    return build_combo(
        model_cfg.setting,
        model_cfg.backbone,
        num_classes=model_cfg.num_classes,
        fusion=arch.fusion,
        num_queries=arch.num_queries,
        hidden_dim=arch.hidden_dim,
        decoder_layers=arch.decoder_layers,
        encoder_layers=arch.encoder_layers,
        heads=arch.heads,
        points=arch.points,
        decoder_ffn_dim=arch.decoder_ffn_dim,
        encoder_ffn_dim=arch.encoder_ffn_dim,
        audio_hidden_dim=arch.audio_hidden_dim,
        frames_per_clip=arch.frames_per_clip,
        train_audio_groups=arch.train_audio_groups,
        fusion_layer_scale=arch.fusion_layer_scale,
        backbone_weights=model_cfg.backbone_weights,
    )
