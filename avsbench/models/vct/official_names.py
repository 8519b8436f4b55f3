"""Released VCT checkpoints <-> this project's VCT, both ways (the only place).

The released files (`{s4,ms3,ss}_swinb_384/model_best.pth`, docs/VCT.md) are detectron2
checkpoints, `{"model": state_dict, "iteration": ..., trainer state}`; a flat state dict is
read too. The names of the published meta-architecture:

    official                                  project (VCT)
    backbone.<D2 Swin name>                   visual.backbone.<SwinBackbone name> (swin.py)
    pre_sam_backbone.<D2 Swin name>           visual.pre_sam_backbone.<SwinBackbone name>
    scale_factor_module.*                     visual.scale_factor_module.*
    audio_backbone.* (VGGish)                 -- (handed over: vggish_state, VGGish's names)
    sem_seg_head.*                            the same name
    criterion.logit_scale (S4/AVSS)           logit_scale
    criterion.empty_weight                    -- (the loss's constant class weights: dropped)

D2's `relative_position_index` buffers are constants: on load their shape is checked and
their values are not read (timm rebuilds them, as its own checkpoint filter skips them);
they count as loaded; on export they are written.
A `module.` prefix (DataParallel) is stripped on load.
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
from avsbench.models.vct.config import BACKBONE, PROTOTYPES, VCTArch, preset
from avsbench.models.vct.model import VCT
from avsbench.models.vct.swin import from_d2_state, timm_to_d2_name, to_d2_state
from avsbench.state_dicts import LoadReport

SWINS = ("backbone.", "pre_sam_backbone.")  # official prefixes of the two Swin backbones
VGGISH = "audio_backbone."
LOGIT_SCALE = "criterion.logit_scale"
EMPTY_WEIGHT = "criterion.empty_weight"
NO_OBJECT_WEIGHT = 0.1  # Mask2Former's eos_coef: the last entry of `criterion.empty_weight`
PUBLISHED_DECODER_HEADS = 8  # not visible in any shape; every release uses 8
_PROJECT_SAME = ("sem_seg_head.",)


def unwrap_checkpoint(obj: Any) -> dict[str, Any]:
    """The state dict of a detectron2 checkpoint ({"model": sd, ...}) or a flat one."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    return dict(obj) if isinstance(obj, Mapping) else {}


# -- official -> project ------------------------------------------------------------------------
def load_official_state_dict(model: VCT, sd: Mapping[str, Any]) -> LoadReport:
    """Load a released VCT checkpoint (detectron2 wrapper or flat state dict) into `model`.

    Every tensor of `model` must be present with its shape, except `criterion.*`, which a
    file may leave out (the model then keeps its `logit_scale`, a loss parameter);
    `criterion.empty_weight` is dropped (listed in `report.dropped`); `audio_backbone.*`
    (VGGish) is not part of the model: `OfficialVCT.vggish_state` hands it over. Anything
    else -> ValueError, one line naming the first unexpected and the first missing key.
    """
    state, prefix = strip_module_prefix(unwrap_checkpoint(sd))
    _check_input_size(model, state)
    mapped: dict[str, Any] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    constants = 0  # Swin index buffers: taken as the model's own constants
    for swin_prefix in SWINS:
        part = {k[len(swin_prefix) :]: v for k, v in state.items() if k.startswith(swin_prefix)}
        swin = getattr(model.visual, swin_prefix[:-1])
        found, rest, count = from_d2_state(swin, part, swin_prefix)
        mapped.update({f"visual.{swin_prefix}{k}": v for k, v in found.items()})
        unknown += [swin_prefix + k for k in rest]
        constants += count
    for key, value in state.items():
        if key.startswith(SWINS) or key.startswith(VGGISH):
            continue
        if key == EMPTY_WEIGHT:
            dropped.append(key)
        elif key == LOGIT_SCALE:
            mapped["logit_scale"] = value
        elif key.startswith("scale_factor_module."):
            mapped["visual." + key] = value
        elif key.startswith(_PROJECT_SAME):
            mapped[key] = value
        else:
            unknown.append(key)
    own = model.state_dict()
    if "logit_scale" in own and "logit_scale" not in mapped:  # a file without criterion.*
        mapped["logit_scale"] = own["logit_scale"]  # keeps the training's start, log(1/0.07)
    unexpected = unknown + [official_name(k) for k in mapped if k not in own]
    missing = [official_name(k) for k in own if k not in mapped]
    mismatched = [
        f"{official_name(k)} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if unexpected or missing or mismatched:
        raise ValueError(_mismatch_line(unexpected, missing, mismatched))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in mapped.items()}, strict=True)
    return LoadReport(
        kind="official_vct",
        loaded=len(mapped) + constants,
        dropped=dropped,
        stripped_prefix=prefix,
    )


MIXER_IN = "sem_seg_head.predictor.visual_query_block.query_mixer.layers.0.weight"


def input_size_of(mixer_pixels: int) -> int | None:
    """The input side S whose (S/4)^2 mask-feature pixels the query mixer takes (None if
    the pixel count is not a square)."""
    side = round(mixer_pixels**0.5)
    return 4 * side if side * side == mixer_pixels else None


def _check_input_size(model: VCT, state: Mapping[str, Any]) -> None:
    """ValueError (one line) if the file's query mixer was made for another input size than
    `model`'s (a released file: 96 x 96 pixels, 384 x 384 inputs)."""
    value = state.get(MIXER_IN)
    if value is None or len(getattr(value, "shape", ())) != 2:
        return  # the general check names the missing or odd key
    pixels = int(value.shape[1])
    own = model.sem_seg_head.predictor.visual_query_block.num_pixels
    if pixels != own:
        size = input_size_of(pixels)
        fix = (
            f"set data.image_size and model.arch.image_size to {size}"
            if size
            else "no S x S input has (S/4)^2 such pixels"
        )
        raise ValueError(
            f"the VCT checkpoint's query mixer takes {pixels} mask-feature pixels, this "
            f"model's {own} ({model.image_size} x {model.image_size} inputs): {fix}"
        )


def _mismatch_line(unexpected: list[str], missing: list[str], mismatched: list[str]) -> str:
    parts = []
    for label, items in (
        ("unexpected", unexpected),
        ("missing", missing),
        ("mis-shaped", mismatched),
    ):
        if items:
            parts.append(f"{len(items)} {label} (first: {items[0]})")
    return (
        "the VCT checkpoint does not fit this model: " + "; ".join(parts) + "; build the model "
        "it describes: avsbench.models.vct.official_names.read_architecture(sd)"
    )


# -- project -> official ------------------------------------------------------------------------
def official_name(key: str) -> str:
    """The official name of one of the model's state-dict keys."""
    for swin_prefix in SWINS:
        if key.startswith("visual." + swin_prefix):
            return swin_prefix + timm_to_d2_name(key[len("visual." + swin_prefix) :])
    if key.startswith("visual.scale_factor_module."):
        return key[len("visual.") :]
    if key == "logit_scale":
        return LOGIT_SCALE
    if key.startswith(_PROJECT_SAME):
        return key
    raise KeyError(f"no official VCT name for {key!r}")


def to_official_state_dict(
    model: VCT,
    *,
    vggish_state: Mapping[str, torch.Tensor] | None = None,
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """The model's state dict in the published layout and order (tensors shared, not
    copied): both Swins with their index buffers, the scale-factor blocks, VGGish as
    `audio_backbone.*` when `vggish_state` is given (`avsbench.VGGish().state_dict()`),
    `sem_seg_head.*`, `criterion.logit_scale` (S4/AVSS) and `criterion.empty_weight`
    (1 per class, 0.1 for no object). prefix: e.g. "module."."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for swin_prefix in SWINS:
        swin = getattr(model.visual, swin_prefix[:-1])
        out.update({swin_prefix + k: v for k, v in to_d2_state(swin).items()})
    out.update({official_name(k): v for k, v in own.items() if k.startswith("visual.scale")})
    out.update({VGGISH + k: v for k, v in (vggish_state or {}).items()})
    out.update({k: v for k, v in own.items() if k.startswith(_PROJECT_SAME)})
    if "logit_scale" in own:
        out[LOGIT_SCALE] = own["logit_scale"]
    classes = model.sem_seg_head.predictor.class_embed.out_features
    empty = torch.ones(classes)
    empty[-1] = NO_OBJECT_WEIGHT
    out[EMPTY_WEIGHT] = empty
    return {prefix + k: v for k, v in out.items()}


# -- recognising a checkpoint ------------------------------------------------------------------
def is_vct_state_dict(sd: Any) -> bool:
    """True if `sd` (or the state dict a detectron2 checkpoint holds) has VCT's keys: the
    vision-centric query block and a Swin backbone."""
    keys = strip_module_prefix(unwrap_checkpoint(sd))[0]
    return any(k.startswith("sem_seg_head.predictor.visual_query_block.") for k in keys) and any(
        k.startswith("backbone.layers.") for k in keys
    )


@dataclass(frozen=True)
class VCTArchitecture:
    """What a VCT state dict says about the network that made it."""

    setting: str  # s4 (23 prototypes), ms3 (none), avss (71 classes)
    num_classes: int  # the contract's: 1 or 71
    arch: VCTArch


def read_architecture(sd: Any) -> VCTArchitecture:
    """Setting and sizes of a VCT state dict, read off its keys and shapes (ValueError if it
    is not one)."""
    if not is_vct_state_dict(sd):
        raise ValueError(
            "not a VCT state dict: expected sem_seg_head.predictor.visual_query_block.* and "
            "backbone.layers.* (a detectron2 checkpoint {'model': ...} or a flat state dict)"
        )
    s = strip_module_prefix(unwrap_checkpoint(sd))[0]
    p = "sem_seg_head.predictor."
    classes = s[p + "class_embed.weight"].shape[0] - 1
    protos_key = p + "visual_query_block.prototype.weight"
    prototypes = s[protos_key].shape[0] if protos_key in s else 0
    if classes == 2:
        setting = "s4" if prototypes else "ms3"
    elif classes == 71:
        setting = "avss"
    else:
        raise ValueError(f"VCT checkpoint with {classes} classes: the releases have 2 or 71")
    depths = tuple(
        _count(s, f"backbone.layers.{i}.blocks.") for i in range(_count(s, "backbone.layers."))
    )
    heads = tuple(
        s[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]
        for i in range(len(depths))
    )
    table = s["backbone.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    queries, hidden = s[p + "query_feat.weight"].shape
    mixer_pixels = s[p + "visual_query_block.query_mixer.layers.0.weight"].shape[1]
    image_size = input_size_of(mixer_pixels)
    if image_size is None:
        raise ValueError(
            f"VCT checkpoint whose query mixer takes {mixer_pixels} pixels: not the (S/4)^2 "
            "pixels of any S x S input"
        )
    enc = "sem_seg_head.pixel_decoder.transformer.encoder.layers."
    arch = VCTArch(
        swin_embed_dim=s["backbone.patch_embed.proj.weight"].shape[0],
        swin_depths=depths,
        swin_num_heads=heads,
        swin_window=(round(table**0.5) + 1) // 2,
        hidden_dim=hidden,
        num_queries=queries,
        decoder_layers=_count(s, p + "transformer_ffn_layers."),
        decoder_heads=PUBLISHED_DECODER_HEADS,
        decoder_ffn_dim=s[p + "transformer_ffn_layers.0.linear1.weight"].shape[0],
        encoder_layers=_count(s, enc),
        encoder_ffn_dim=s[enc + "0.linear1.weight"].shape[0],
        audio_hidden_dim=s["sem_seg_head.audio_transformation.embeddings.0.weight"].shape[0],
        mixer_dim=s[p + "visual_query_block.query_mixer.layers.0.weight"].shape[0],
        num_prototypes=None if prototypes == PROTOTYPES[setting] else prototypes,
        image_size=image_size,
    )
    return VCTArchitecture(setting=setting, num_classes=1 if classes == 2 else classes, arch=arch)


def _count(sd: Mapping[str, Any], prefix: str) -> int:
    """How many distinct indices follow `prefix` ("<prefix><i>.") in the keys."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m[1] for k in sd if (m := pattern.match(k))})


# -- the checkpoint detector (the VCT spec's detectors) ----------------------------------------
class OfficialVCT:
    """Detector of a released VCT checkpoint (detectron2 `model_best.pth` or its flat state
    dict; the architecture is read off the keys). Its `audio_backbone.*` tensors are the
    VGGish the model was trained with: `vggish_state` hands them over."""

    description = (
        "a released VCT checkpoint (detectron2 {'model': state dict, 'iteration': ...} or the "
        "flat state dict: keys backbone.layers.*, sem_seg_head.predictor.visual_query_block.*)"
    )
    format_name = "official VCT"  # summary.json
    stores_config = False  # the architecture is read off the keys

    def matches(self, obj: Any) -> bool:
        return is_vct_state_dict(obj)

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        """`base` (its paths and runtime) with VCT's recipe and the architecture of the keys,
        input size included: the query mixer takes the pixels of one input size only, so
        `data.image_size` is the file's whatever the base says (a `--synthetic` base's 64 px
        included)."""
        found = read_architecture(obj)
        recipe = preset(found.setting)
        if base is not None and base.model.setting == found.setting:
            recipe = C.recipe_with_user_settings(recipe, base)
        recipe = C.override(recipe, {"data.image_size": found.arch.image_size})
        model = dataclasses.replace(
            recipe.model, backbone=BACKBONE, num_classes=found.num_classes, arch=found.arch
        )
        return dataclasses.replace(recipe, model=model)

    def load_into(self, model: VCT, obj: Any) -> LoadReport:
        return load_official_state_dict(model, obj)

    def vggish_state(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """The `audio_backbone.*` tensors under `avsbench.VGGish`'s names (None if none)."""
        state = strip_module_prefix(unwrap_checkpoint(obj))[0]
        found = {k[len(VGGISH) :]: v for k, v in state.items() if k.startswith(VGGISH)}
        return found or None
