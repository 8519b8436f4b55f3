"""VCT (Huang et al., CVPR 2025), assembled from the shared Mask2Former core, and its builder.

    frames, maskiges [N, 3, S, S] (S = arch.image_size, published 384) -> DualBackbone (two
      Swin-B) -> 4 fused maps -> sem_seg_head.pixel_decoder -> mask features
      [N, C, S/4, S/4], memory (S/32, S/16, S/8 px: 12, 24, 48 at 384)
    audio_emb [N, 12288] (VGGish's conv map [N, 512, 6, 4] flattened C-H-W, as the engine
      gives it; the 4-D map is taken too; the frozen VGGish stays outside the model)
      -> sem_seg_head.audio_transformation, per position -> audio level [N, C, 6, 4]
    sem_seg_head.predictor.visual_query_block(mask features) -> vision-centric queries
    queries = query_feat + those; decoder layer i attends level i % 4 (0 = audio, no mask;
      1-3 = strides 32 / 16 / 8, masked) -> pred_logits, pred_masks (+ aux)
    semantic inference at S -> sem_seg, bilinear to 224 x 224 -> contract logits
    S4/AVSS: feat_audio, feat_proto (prototype loss) and the trained `logit_scale`

Every frame is computed on its own (nothing mixes frames). Padding frames (frame_valid 0)
are not computed, as the published AVSS code feeds only the clip's frames, nor frames
outside `target_frames` (training: the annotated frames, the only ones VCT's losses read):
their outputs are zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from avsbench.config import ModelConfig, setting_info
from avsbench.models.contract import decoded_rows
from avsbench.models.mask2former.dual_backbone import DualBackbone
from avsbench.models.mask2former.inference import contract_logits, semantic_inference
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.pixel_decoder import MSDeformAttnPixelDecoder
from avsbench.models.mask2former.transformer_decoder import (
    AttentionMaskTrace,
    MaskedAttentionDecoder,
)
from avsbench.models.vct.config import (
    EVAL_SIZE,
    VCTArch,
    check_arch_size,
    check_backbone,
    mask_classes,
)
from avsbench.models.vct.query_block import (
    AudioTransformation,
    VisualQueryBlock,
    prototype_features,
)
from avsbench.models.vct.swin import SwinBackbone

AUDIO_CHANNELS, AUDIO_GRID = 512, (6, 4)  # VGGish's conv map per example
INITIAL_LOGIT_SCALE = math.log(1 / 0.07)  # the prototype loss's temperature (CLIP's start)


@dataclass
class VCTTrace(AttentionMaskTrace):
    """The decoder's attention-mask record (`AttentionMaskTrace`) plus VCT's assignment.

    force_assign: [N, (S/4)^2] query of every pixel, used instead of the computed argmax.
    assign_index, assign_gap: the computed assignment and its top-1 minus top-2 score;
    assign_largest: the largest |score| (the scale of the gap).
    visual_queries [N, Q, C], sem_seg [N, K, 224, 224]: recorded for the golden tests.
    """

    force_assign: torch.Tensor | None = None
    assign_index: torch.Tensor | None = None
    assign_gap: torch.Tensor | None = None
    assign_largest: float = 0.0
    visual_queries: torch.Tensor | None = None
    sem_seg: torch.Tensor | None = None


class VCTDecoder(MaskedAttentionDecoder):
    """`sem_seg_head.predictor`: Mask2Former's decoder over 4 memory levels (audio first,
    attended without a mask) + `visual_query_block` + the prototype loss's `audio_proj` and
    `proto_proj` (S4/AVSS)."""

    def __init__(
        self,
        num_classes: int,
        *,
        num_prototypes: int,
        num_pixels: int,
        mixer_dim: int = 256,
        hidden_dim: int = 256,
        num_queries: int = 100,
        **decoder_sizes: int,
    ) -> None:
        super().__init__(
            num_classes, hidden_dim=hidden_dim, num_queries=num_queries, mask_dim=hidden_dim,
            num_levels=4, unmasked_levels=(0,), **decoder_sizes,
        )  # fmt: skip
        self.visual_query_block = VisualQueryBlock(
            hidden_dim, num_pixels, num_queries, num_prototypes, mixer_dim
        )
        if num_prototypes:
            self.audio_proj = nn.Linear(hidden_dim, hidden_dim, bias=False)
            self.proto_proj = nn.Linear(hidden_dim, hidden_dim, bias=False)
            for proj in (self.audio_proj, self.proto_proj):
                nn.init.normal_(proj.weight, std=hidden_dim**-0.5)


class VCTHead(nn.Module):
    """`sem_seg_head`: pixel decoder, audio transformation, decoder (published names)."""

    def __init__(
        self,
        pixel_decoder: MSDeformAttnPixelDecoder,
        audio_transformation: AudioTransformation,
        predictor: VCTDecoder,
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.audio_transformation = audio_transformation
        self.predictor = predictor


class VCT(nn.Module):
    """forward(frames [N, 3, S, S], audio_emb [N, 12288] or [N, 512, 6, 4],
    frame_valid [N] | None, target_frames=None, maskige [N, 3, S, S], trace=None)
    -> Mask2FormerOutput. S: the backbones' `img_size` (arch.image_size; published 384).

    Frames and maskiges are ImageNet-normalised. logits [N, K, 224, 224] (K = 1: S4/MS3,
    71: AVSS); extras (S4/AVSS): feat_audio [N, C], feat_proto [P, C], logit_scale [].
    target_frames (the contract's, [N] bool): only these valid frames are computed, from the
    backbones on (nothing mixes frames; the others' outputs are zeros). In training the
    contract logits carry no gradient (the losses read pred_logits / pred_masks).
    trace: a `VCTTrace` (golden tests), None otherwise.
    """

    def __init__(
        self,
        visual: DualBackbone,
        sem_seg_head: VCTHead,
        num_classes: int,
        output_size: int = EVAL_SIZE,
    ) -> None:
        super().__init__()
        self.visual = visual
        self.sem_seg_head = sem_seg_head
        self.num_classes = num_classes  # the contract's: 1 (S4/MS3) or 71 (AVSS)
        self.output_size = output_size
        self.image_size = visual.backbone.img_size  # S: the query mixer's (S/4)^2 pixels
        if sem_seg_head.predictor.visual_query_block.has_prototypes:
            # published `criterion.logit_scale`: trained by the prototype loss
            self.logit_scale = nn.Parameter(torch.tensor(INITIAL_LOGIT_SCALE))

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or unfreeze both Swin backbones (not the scale-factor blocks)."""
        self.visual.backbone.requires_grad_(trainable)
        self.visual.pre_sam_backbone.requires_grad_(trainable)

    def _check_inputs(
        self,
        frames: torch.Tensor,
        audio_emb: torch.Tensor,
        frame_valid: torch.Tensor | None,
        maskige: torch.Tensor | None,
    ) -> int:
        bt = frames.shape[0]
        size = self.image_size
        if frames.ndim != 4 or tuple(frames.shape[-2:]) != (size, size):
            raise ValueError(
                f"this VCT works at {size} x {size} only: frames must be [B*T, 3, {size}, "
                f"{size}], got {tuple(frames.shape)}; set data.image_size to {size}"
            )
        flat = AUDIO_CHANNELS * AUDIO_GRID[0] * AUDIO_GRID[1]
        if tuple(audio_emb.shape) not in ((bt, flat), (bt, AUDIO_CHANNELS, *AUDIO_GRID)):
            raise ValueError(
                f"VCT's audio_emb is VGGish's conv map, [B*T={bt}, 12288] (C-H-W order) or "
                f"[B*T={bt}, 512, 6, 4] (the method's audio_input 'conv_map'), got "
                f"{tuple(audio_emb.shape)}"
            )
        if frame_valid is not None and frame_valid.numel() != bt:
            raise ValueError(f"frame_valid must be [B*T={bt}], got {tuple(frame_valid.shape)}")
        if maskige is None:
            raise ValueError(
                "VCT needs the maskige of every frame (sample key 'maskige', "
                "avsbench.data.extra_inputs.MASKIGE); none was given"
            )
        return bt

    def forward(
        self,
        frames: torch.Tensor,
        audio_emb: torch.Tensor,
        frame_valid: torch.Tensor | None = None,
        target_frames: torch.Tensor | None = None,
        maskige: torch.Tensor | None = None,
        trace: VCTTrace | None = None,
    ) -> Mask2FormerOutput:
        bt = self._check_inputs(frames, audio_emb, frame_valid, maskige)
        assert maskige is not None
        decode = None  # the real frames the losses read: nothing mixes frames, so the others
        if frame_valid is not None:  # (padding, unread) are not computed at all
            decode = frame_valid.reshape(bt) > 0
        if target_frames is not None:
            wanted = target_frames.reshape(bt).to(frames.device)
            decode = wanted if decode is None else decode & wanted
        rows = decoded_rows(decode, bt, frames.device)
        if rows is not None:
            frames, maskige, audio_emb = frames[rows], maskige[rows], audio_emb[rows]

        head = self.sem_seg_head
        predictor = head.predictor
        feats = self.visual(frames, maskige)  # 4 x [n, C_l, S/r, S/r]
        mask_features, memory = head.pixel_decoder(feats)  # [n, C, S/4, S/4], 3 levels
        audio_map = audio_emb.reshape(-1, AUDIO_CHANNELS, *AUDIO_GRID)  # [n, 512, 6, 4]
        audio = head.audio_transformation(audio_map)  # [n, C, 6, 4]
        forced = None if trace is None else trace.force_assign
        visual_queries, prototypes, decision = predictor.visual_query_block(mask_features, forced)
        queries = predictor.initial_queries(frames.shape[0]) + visual_queries.transpose(0, 1)
        out = predictor([audio, *memory], mask_features, queries, trace)  # [Q, n, C] queries
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.training):
            # the losses read pred_logits / pred_masks: no graph through the S x S masks
            sem_seg = semantic_inference(
                out.pred_logits, out.pred_masks, tuple(frames.shape[-2:]),
                (self.output_size, self.output_size),
            )  # fmt: skip  # [n, K', 224, 224]
        logits = contract_logits(sem_seg, self.num_classes)
        if trace is not None:
            trace.assign_index, trace.assign_gap = decision.index, decision.gap
            trace.assign_largest = float(decision.largest)
            trace.visual_queries, trace.sem_seg = visual_queries, sem_seg

        extras: dict[str, torch.Tensor] = {}
        if prototypes is not None:
            wide = torch.promote_types(audio.dtype, torch.float32)  # float32 under AMP too
            with torch.autocast(audio.device.type, enabled=False):
                feat_audio, feat_proto = prototype_features(
                    predictor.audio_proj, predictor.proto_proj, audio.to(wide), prototypes.to(wide)
                )
            extras = {"feat_audio": feat_audio, "feat_proto": feat_proto}
            extras["logit_scale"] = self.logit_scale
        return Mask2FormerOutput(
            logits=logits,
            pred_logits=out.pred_logits,
            pred_masks=out.pred_masks,
            aux_outputs=list(out.aux_outputs),
            extras=extras,
        ).scattered(rows, bt, per_frame_extras=("feat_audio",))


def build_vct(
    setting: str,
    backbone: str = "swin_base_patch4_window12_384",
    *,
    num_classes: int | None = None,
    arch: VCTArch | None = None,
) -> VCT:
    """Build VCT for `setting` in {"s4", "ms3", "avss"} (the defaults are published).

    backbone: Swin-B only ("swin_base_patch4_window12_384", "swinb"); its sizes are `arch`'s,
    and so is the input side (`arch.image_size`, which sizes the query mixer).
    num_classes: the contract's, 1 / 1 / 71 by default (the class head predicts 2 / 2 / 71
    classes + no object). Random initialisation; weights come from a checkpoint
    (`official_names.load_official_state_dict`) or the engine.
    """
    check_backbone(backbone)
    arch = arch or VCTArch()
    row = setting_info(setting)
    num_classes = row.num_classes if num_classes is None else num_classes
    check_arch_size(arch.image_size)
    visual = DualBackbone(
        SwinBackbone(arch.swin, arch.image_size), SwinBackbone(arch.swin, arch.image_size)
    )
    c = arch.hidden_dim
    pixel_decoder = MSDeformAttnPixelDecoder(
        visual.channels, conv_dim=c, mask_dim=c, encoder_layers=arch.encoder_layers,
        heads=arch.decoder_heads, ffn_dim=arch.encoder_ffn_dim,
    )  # fmt: skip
    audio = AudioTransformation(AUDIO_CHANNELS, arch.audio_hidden_dim, c)
    predictor = VCTDecoder(
        mask_classes(num_classes), num_prototypes=arch.prototypes_for(row.name),
        num_pixels=arch.mixer_pixels, mixer_dim=arch.mixer_dim, hidden_dim=c,
        num_queries=arch.num_queries, heads=arch.decoder_heads, ffn_dim=arch.decoder_ffn_dim,
        layers=arch.decoder_layers,
    )  # fmt: skip
    return VCT(visual, VCTHead(pixel_decoder, audio, predictor), num_classes)


def build_from_config(model_cfg: ModelConfig) -> VCT:
    """`build_vct` with the fields of `ModelConfig` and its `VCTArch`."""
    return build_vct(
        model_cfg.setting,
        model_cfg.backbone,
        num_classes=model_cfg.num_classes,
        arch=model_cfg.arch or VCTArch(),
    )
