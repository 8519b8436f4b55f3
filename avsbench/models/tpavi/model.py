"""The AVSBench model (Zhou et al., ECCV 2022; IJCV 2024), assembled from parts.

    frames [B*T, 3, H, W] -> visual encoder -> 4 stage maps (strides 4..32)
      -> per-stage dilated projections to C channels (x frame_valid)
      -> TPAVI on the chosen stages, over windows of T' frames (x frame_valid)
      -> top-down fusion decoder -> logits [B*T, K, H, W]

`build_tpavi_model` reproduces the published S4 / MS3 / AVSS networks
(docs/ARCHITECTURE.md); official checkpoints load through `avsbench.checkpoints` (names in
`official_names.py` beside this file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from avsbench.config import setting_info
from avsbench.models.backbones.visual import VisualEncoder, build_visual_encoder
from avsbench.models.contract import AVSOutput, check_inputs, decoded_rows
from avsbench.models.tpavi.block import TPAVI, TPAVI_MODES
from avsbench.models.tpavi.decoder import Decoder, DilatedProjection

if TYPE_CHECKING:
    from avsbench.config import ModelConfig


@dataclass
class TPAVIOutput(AVSOutput):
    """What `AVSModel.forward` returns (the same in train and eval): `logits` and what the
    TPAVI losses read.

    visual_maps: 4 x [B*T, C, H_s, W_s], the stage maps after projection and TPAVI, rectified
        (relu) as the published model returns them (its decoder's in-place ReLU).
    audio_maps: 4 entries, [B*T, C] aligned audio of the TPAVI block of that stage, or None
        where the stage has no audio-visual TPAVI.
    """

    visual_maps: list[torch.Tensor] = field(default_factory=list)
    audio_maps: list[torch.Tensor | None] = field(default_factory=list)


class AVSModel(nn.Module):
    """Visual encoder + projections + TPAVI blocks + decoder.

    Args:
        visual: four-stage encoder (`VisualEncoder`), `channels` gives the stage widths.
        projections: 4 modules mapping stage s to C channels (`DilatedProjection`).
        tpavi_blocks: {stage: TPAVI} for the stages with interaction (0-based).
        decoder: `Decoder` taking the 4 maps and frame_valid.
        tpavi_va / tpavi_vv: audio-visual and/or video self-attention (both: averaged).
        window_frames: T', frames per TPAVI window (5 in every published setting; AVSS
            10-frame clips form two windows).

    forward(frames [B*T, 3, H, W], audio_emb [B*T, 128], frame_valid [B*T] | None,
            target_frames [B*T] bool | None) -> TPAVIOutput.
        H, W divisible by 32; B*T divisible by window_frames when TPAVI is on.
        target_frames: the frames whose logits are wanted (the training step passes the
        frames its losses read, `target_frames.py`); the per-frame decoder and
        output head run on those only and the other rows of `.logits` are zeros. The encoder,
        projections and TPAVI (which mixes the frames of a window) see every frame, so the
        target rows, `visual_maps` and `audio_maps` equal those of the full computation.
        None: every frame (docs/ARCHITECTURE.md, "Exact savings").
    """

    def __init__(
        self,
        visual: VisualEncoder,
        projections: Sequence[nn.Module],
        tpavi_blocks: Mapping[int, TPAVI],
        decoder: Decoder,
        *,
        tpavi_va: bool = True,
        tpavi_vv: bool = False,
        window_frames: int = 5,
    ) -> None:
        super().__init__()
        if len(projections) != 4:
            raise ValueError(f"need 4 projections (one per stage), got {len(projections)}")
        stages = sorted(int(s) for s in tpavi_blocks)
        if any(s not in range(4) for s in stages):
            raise ValueError(f"TPAVI stages must be in 0..3, got {stages}")
        if stages and not (tpavi_va or tpavi_vv):
            raise ValueError(
                "TPAVI blocks given but tpavi_va and tpavi_vv are both False: turn on tpavi_va "
                "(audio-visual, published) and/or tpavi_vv (video self-attention)"
            )
        if window_frames < 1:
            raise ValueError(f"window_frames must be >= 1, got {window_frames}")
        self.visual = visual
        self.projections = nn.ModuleList(projections)
        self.tpavi_blocks = nn.ModuleDict({str(s): tpavi_blocks[s] for s in stages})
        self.decoder = decoder
        self.tpavi_stages: tuple[int, ...] = tuple(stages)
        self.tpavi_va = tpavi_va
        self.tpavi_vv = tpavi_vv
        self.window_frames = window_frames

    def forward(
        self,
        frames: torch.Tensor,
        audio_emb: torch.Tensor,
        frame_valid: torch.Tensor | None = None,
        target_frames: torch.Tensor | None = None,
    ) -> TPAVIOutput:
        bt = check_inputs(frames, audio_emb, frame_valid)
        if self.tpavi_stages and bt % self.window_frames:
            raise ValueError(
                f"B*T = {bt} frames do not split into TPAVI windows of {self.window_frames} "
                f"frames (window_frames)"
            )
        valid = None
        if frame_valid is not None and not bool((frame_valid == 1).all()):
            # all ones (S4, MS3): x * 1 changes nothing
            valid = frame_valid.reshape(bt).to(frames.dtype)  # [B*T]
            audio_emb = audio_emb * valid[:, None]  # padding frames carry no audio
        v4 = None if valid is None else valid.reshape(bt, 1, 1, 1)
        rows = decoded_rows(target_frames, bt, frames.device)  # [F] or None (all frames)

        feats = self.visual(frames)  # 4 x [B*T, C_s, H/r, W/r]
        maps = [proj(f) for proj, f in zip(self.projections, feats)]  # 4 x [B*T, C, H_s, W_s]
        if v4 is not None:
            maps = [m * v4 for m in maps]

        audio_maps: list[torch.Tensor | None] = [None] * 4
        for s in self.tpavi_stages:
            block = self.tpavi_blocks[str(s)]
            x = self._to_windows(maps[s])  # [B', C, T', H, W]
            results = []
            if self.tpavi_vv:
                z, _ = block(x)
                results.append(self._from_windows(z))
            if self.tpavi_va:
                audio = audio_emb.reshape(-1, self.window_frames, audio_emb.shape[-1])  # [B',T',D]
                z, aligned = block(x, audio)
                results.append(self._from_windows(z))
                audio_maps[s] = aligned.reshape(bt, -1)  # [B*T, C]
            if v4 is not None:
                results = [r * v4 for r in results]
            maps[s] = results[0] if len(results) == 1 else sum(results) / len(results)

        # The published decoder rectifies its inputs in place (see decoder.py), so the stage
        # maps it returns -- and the AVM losses use -- are relu(m). The decoder rectifies
        # each map first itself, so it is given m (relu is idempotent: the same logits).
        visual_maps = [F.relu(m) for m in maps]
        if rows is None:
            logits = self.decoder(maps, valid)  # [B*T, K, H, W]
        else:  # per-frame decoder and head on the target frames only; the others stay 0
            picked = self.decoder(
                [m.index_select(0, rows) for m in maps],
                None if valid is None else valid.index_select(0, rows),
            )  # [F, K, H, W]
            logits = picked.new_zeros((bt, *picked.shape[1:])).index_copy(0, rows, picked)
        return TPAVIOutput(logits=logits, visual_maps=visual_maps, audio_maps=audio_maps)

    def _to_windows(self, x: torch.Tensor) -> torch.Tensor:
        bt, c, h, w = x.shape
        x = x.reshape(bt // self.window_frames, self.window_frames, c, h, w)  # [B', T', C, H, W]
        return x.permute(0, 2, 1, 3, 4)  # [B', C, T', H, W]

    @staticmethod
    def _from_windows(x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # [B*T, C, H, W]


def build_tpavi_model(
    setting: str,
    backbone: str,
    *,
    tpavi_stages: Sequence[int] = (0, 1, 2, 3),
    tpavi_vv: bool = False,
    tpavi_va: bool = True,
    tpavi_mode: str = "dot",
    tpavi_dense: bool = False,
    decoder_channels: int = 256,
    window_frames: int = 5,
    align_bias: bool | None = None,
    num_classes: int | None = None,
    backbone_weights: str | os.PathLike | None = None,
    pretrained: bool = False,
) -> AVSModel:
    """Build the published AVSBench model for `setting` in {"s4", "ms3", "avss"}.

    backbone: "resnet50" / "pvt_v2_b5" (published) or another timm name with four stages.
    num_classes defaults to 1 / 1 / 71 and align_bias to True / True / False (S4 / MS3 /
    AVSS: the published AVSS model has no align_channel bias). backbone_weights: a
    pretrained file (resnet50-19c8e357.pth, pvt_v2_b5.pth in the original PVT naming, or
    a timm checkpoint). pretrained=True without a file is an
    error: nothing is downloaded. Unknown names raise ValueError listing the valid ones.
    """
    defaults = setting_info(setting)  # published num_classes of the setting
    if tpavi_mode not in TPAVI_MODES:
        raise ValueError(f"unknown tpavi_mode {tpavi_mode!r}; valid: {list(TPAVI_MODES)}")
    stages = tuple(int(s) for s in tpavi_stages)
    if len(set(stages)) != len(stages) or any(s not in range(4) for s in stages):
        raise ValueError(f"tpavi_stages must be distinct stages among 0, 1, 2, 3; got {stages}")
    if decoder_channels < 2:
        raise ValueError(f"decoder_channels must be >= 2, got {decoder_channels}")
    num_classes = defaults.num_classes if num_classes is None else num_classes
    align_bias = not defaults.semantic if align_bias is None else align_bias

    visual = build_visual_encoder(backbone, backbone_weights, pretrained=pretrained)
    projections = [DilatedProjection(c, decoder_channels) for c in visual.channels]
    blocks = {
        s: TPAVI(decoder_channels, mode=tpavi_mode, align_bias=align_bias, dense=tpavi_dense)
        for s in stages
    }
    decoder = Decoder(decoder_channels, num_classes)
    return AVSModel(
        visual,
        projections,
        blocks,
        decoder,
        tpavi_va=tpavi_va,
        tpavi_vv=tpavi_vv,
        window_frames=window_frames,
    )


def build_from_config(model_cfg: ModelConfig) -> AVSModel:
    """`build_tpavi_model` with the fields of `ModelConfig` and its `TPAVIArch`."""
    from avsbench.models.tpavi.config import TPAVIArch

    arch = model_cfg.arch or TPAVIArch()
    return build_tpavi_model(
        model_cfg.setting,
        model_cfg.backbone,
        tpavi_stages=tuple(arch.tpavi_stages),
        tpavi_vv=arch.tpavi_vv,
        tpavi_va=arch.tpavi_va,
        tpavi_mode=arch.tpavi_mode,
        tpavi_dense=arch.tpavi_dense,
        decoder_channels=arch.decoder_channels,
        window_frames=arch.window_frames,
        align_bias=arch.align_bias,
        num_classes=model_cfg.num_classes,
        backbone_weights=model_cfg.backbone_weights,
    )
