"""Recognising a COMBO checkpoint and reading its architecture off its keys.

A released COMBO file is detectron2's `{"model": state_dict, "iteration": ..., trainer
state}` or the flat state dict; its keys are the meta-architecture's (official_names.py).
It is told from VCT's (same code base) by the 128-wide input of
`sem_seg_head.audio_transformation` (VGGish embedding; VCT: 512, the conv map) and by
`sem_seg_head.fusion_module` / `pre_sam_backbone`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from avsbench import config as C
from avsbench.models.backbones.official_names import strip_module_prefix
from avsbench.models.combo.config import ComboArch, preset
from avsbench.models.combo.model import COMBO
from avsbench.models.combo.official_names import (
    VGGISH,
    load_official_state_dict,
    official_state_dict,
)
from avsbench.state_dicts import LoadReport

AUDIO_IN = "sem_seg_head.audio_transformation.embeddings.0.weight"
PUBLISHED_HEADS = 8  # no shape reveals it; every release uses 8
PIXEL_LEVELS = 3  # the deformable encoder's levels (res3-res5)
RESNETS = {((3, 4, 6, 3), True): "resnet50", ((2, 2, 2, 2), False): "resnet18",
           ((3, 4, 6, 3), False): "resnet34", ((3, 4, 23, 3), True): "resnet101"}  # fmt: skip
PVTS = {((3, 6, 40, 3), 64): "pvt_v2_b5", ((2, 2, 2, 2), 32): "pvt_v2_b0",
        ((2, 2, 2, 2), 64): "pvt_v2_b1", ((3, 4, 6, 3), 64): "pvt_v2_b2"}  # fmt: skip


def is_combo_state_dict(obj: Any) -> bool:
    """True if `obj` (a file's object or a state dict) has the keys of a COMBO network."""
    sd = official_state_dict(obj)
    if not isinstance(sd, Mapping) or not sd:
        return False
    sd = strip_module_prefix(sd)[0]
    audio_in = sd.get(AUDIO_IN)
    if not isinstance(audio_in, torch.Tensor) or audio_in.ndim != 2 or audio_in.shape[1] != 128:
        return False
    return all(
        any(k.startswith(p) for k in sd)
        for p in ("sem_seg_head.fusion_module.", "pre_sam_backbone.")
    )


@dataclass(frozen=True)
class ComboArchitecture:
    """What a COMBO state dict says about the network that made it."""

    setting: str  # "s4" (2 classes: also MS3's network) or "avss" (71)
    backbone: str
    num_classes: int  # the contract's: 1 or 71
    fusion: str
    num_queries: int
    hidden_dim: int
    decoder_layers: int
    encoder_layers: int
    points: int
    decoder_ffn_dim: int
    encoder_ffn_dim: int
    audio_hidden_dim: int

    def build_kwargs(self) -> dict[str, Any]:
        """Arguments of `avsbench.build_model(..., method="combo")` for this network."""
        kwargs = dataclasses.asdict(self)
        return {"setting": kwargs.pop("setting"), "backbone": kwargs.pop("backbone"), **kwargs}


def _count(sd: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m[1] for k in sd if (m := pattern.match(k))})


def _backbone(sd: Mapping[str, Any]) -> str:
    if "backbone.stem.conv1.weight" in sd:
        blocks = tuple(_count(sd, f"backbone.res{s}") for s in range(2, 6))
        bottleneck = "backbone.res2.0.conv3.weight" in sd
        found = RESNETS.get((blocks, bottleneck))
        what = f"ResNet with blocks {blocks}"
    elif "backbone.patch_embed1.proj.weight" in sd:
        blocks = tuple(_count(sd, f"backbone.block{i}") for i in range(1, 5))
        width = sd["backbone.patch_embed1.proj.weight"].shape[0]
        found = PVTS.get((blocks, width))
        what = f"PVT-v2 with blocks {blocks}, width {width}"
    else:
        raise ValueError("COMBO backbone keys are neither detectron2 ResNet (stem) nor PVT-v2")
    if found is None:
        raise ValueError(f"unsupported COMBO backbone: {what}")
    return found


def read_architecture(obj: Any) -> ComboArchitecture:
    """The setting, backbone and sizes of a COMBO state dict; ValueError if it is none."""
    if not is_combo_state_dict(obj):
        raise ValueError(
            "not a COMBO state dict: expected sem_seg_head.audio_transformation (128 inputs) "
            "and sem_seg_head.fusion_module / pre_sam_backbone keys"
        )
    sd = strip_module_prefix(official_state_dict(obj))[0]
    pred = "sem_seg_head.predictor"
    pix = "sem_seg_head.pixel_decoder.transformer.encoder.layers"
    classes = sd[f"{pred}.class_embed.weight"].shape[0] - 1
    if classes not in (2, 71):
        raise ValueError(f"COMBO checkpoint with {classes} classes: published 2 (S4/MS3), 71")
    queries, hidden = sd[f"{pred}.query_feat.weight"].shape
    weights_rows = sd[f"{pix}.0.self_attn.attention_weights.weight"].shape[0]
    return ComboArchitecture(
        setting="s4" if classes == 2 else "avss",
        backbone=_backbone(sd),
        num_classes=1 if classes == 2 else classes,
        fusion="MHA-B" if any(".fusion_module.b_attn." in k for k in sd) else "MHA-None",
        num_queries=queries,
        hidden_dim=hidden,
        decoder_layers=_count(sd, f"{pred}.transformer_ffn_layers"),
        encoder_layers=_count(sd, pix),
        points=weights_rows // (PUBLISHED_HEADS * PIXEL_LEVELS),
        decoder_ffn_dim=sd[f"{pred}.transformer_ffn_layers.0.linear1.weight"].shape[0],
        encoder_ffn_dim=sd[f"{pix}.0.linear1.weight"].shape[0],
        audio_hidden_dim=sd[AUDIO_IN].shape[0],
    )


class OfficialCOMBO:
    """Detector of a COMBO checkpoint (released detectron2 file or flat state dict). Its
    `audio_backbone.*` tensors are the VGGish it was trained with: `vggish_state` hands
    them over."""

    description = (
        "a COMBO checkpoint (detectron2 {'model': ...} or flat; keys backbone.*, "
        "pre_sam_backbone.*, scale_factor_module.*, audio_backbone.*, sem_seg_head.*)"
    )
    format_name = "official COMBO"
    stores_config = False  # the architecture is read off the keys

    def matches(self, obj: Any) -> bool:
        return is_combo_state_dict(obj)

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        """`base` (paths, runtime) with COMBO's recipe and the architecture of the keys;
        2 classes: S4, or MS3 when `base` is MS3 (one network); 71: AVSS."""
        found = read_architecture(obj)
        setting = found.setting
        if setting == "s4" and base is not None and base.model.setting == "ms3":
            setting = "ms3"
        recipe = preset(setting)
        if base is not None and base.model.setting == setting:
            recipe = C.recipe_with_user_settings(recipe, base)
        names = {f.name for f in dataclasses.fields(ComboArch)}
        values = {k: v for k, v in dataclasses.asdict(found).items() if k in names}
        arch = dataclasses.replace(recipe.model.arch or ComboArch(), **values)
        model = dataclasses.replace(
            recipe.model, backbone=found.backbone, num_classes=found.num_classes, arch=arch
        )
        return dataclasses.replace(recipe, model=model)

    def load_into(self, model: COMBO, obj: Any) -> LoadReport:
        report = load_official_state_dict(model, obj)
        return LoadReport(
            loaded=report.loaded, dropped=report.dropped, stripped_prefix=report.stripped_prefix
        )

    def vggish_state(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """The `audio_backbone.*` tensors under `avsbench.VGGish`'s names (None if none)."""
        sd = strip_module_prefix(official_state_dict(obj))[0]
        found = {k[len(VGGISH) :]: v for k, v in sd.items() if k.startswith(VGGISH)}
        return found or None
