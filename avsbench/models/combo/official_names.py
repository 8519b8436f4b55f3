"""Released COMBO checkpoints <-> this project's COMBO, both ways (the only place).

A released file is detectron2's `{"model": state_dict, "iteration": ..., trainer state}`
(or the flat state dict itself) of the published meta-architecture:

    official                                 project (COMBO)
    backbone.<d2 ResNet | original PVT>      visual.backbone.body.<timm name>
    pre_sam_backbone.<same>                  visual.pre_sam_backbone.body.<timm name>
    scale_factor_module.*                    visual.scale_factor_module.*
    sem_seg_head.*                           the same name
    audio_backbone.*                         -- (VGGish, handed over: report.vggish_state)
    criterion.empty_weight                   -- (the loss's class weights: reported, dropped)

detectron2 ResNet names: `stem.conv1(.norm)` = timm `conv1` / `bn1`; `res{s}.{i}.conv{k}`
(`.norm`) = `layer{s-1}.{i}.conv{k}` / `bn{k}`; `.shortcut(.norm)` = `.downsample.0` / `.1`
(FrozenBatchNorm: no `num_batches_tracked`). PVT-v2: the original names (`patch_embed{i}`,
`block{i}`, `norm{i}`) through timm's own `checkpoint_filter_fn`, and back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from avsbench.models.backbones.official_names import (
    pvt_original_to_timm,
    pvt_timm_to_original,
    strip_module_prefix,
)
from avsbench.models.backbones.visual import VisualEncoder
from avsbench.models.combo.model import COMBO

BACKBONES = {  # official prefix -> project prefix
    "backbone.": "visual.backbone.body.",
    "pre_sam_backbone.": "visual.pre_sam_backbone.body.",
}
SCALE = ("scale_factor_module.", "visual.scale_factor_module.")
HEAD = "sem_seg_head."
VGGISH = "audio_backbone."
CRITERION = "criterion."


@dataclass
class ComboLoadReport:
    """What `load_official_state_dict` did with a COMBO state dict."""

    loaded: int  # tensors copied into the model
    dropped: list[str] = field(default_factory=list)  # official tensors the forward never uses
    vggish_state: dict[str, torch.Tensor] = field(default_factory=dict)  # avsbench.VGGish names
    stripped_prefix: str = ""  # "module." for DataParallel-style files


# -- detectron2 ResNet <-> timm ----------------------------------------------------------------
def d2_resnet_to_timm(key: str) -> str | None:
    """detectron2 ResNet name -> timm name (None: not a ResNet name)."""
    if m := re.fullmatch(r"stem\.conv1\.(weight|bias)", key):
        return f"conv1.{m[1]}"
    if m := re.fullmatch(r"stem\.conv1\.norm\.(\w+)", key):
        return f"bn1.{m[1]}"
    m = re.fullmatch(r"res([2-5])\.(\d+)\.(conv(\d)|shortcut)(\.norm)?\.(\w+)", key)
    if m is None:
        return None
    stage, block, part, conv, norm, name = m[1], m[2], m[3], m[4], m[5], m[6]
    prefix = f"layer{int(stage) - 1}.{block}."
    if part == "shortcut":
        return prefix + ("downsample.1." if norm else "downsample.0.") + name
    return prefix + (f"bn{conv}." if norm else f"conv{conv}.") + name


def timm_resnet_to_d2(key: str) -> str:
    """timm ResNet name -> detectron2 name (inverse of `d2_resnet_to_timm`)."""
    if m := re.fullmatch(r"conv1\.(\w+)", key):
        return f"stem.conv1.{m[1]}"
    if m := re.fullmatch(r"bn1\.(\w+)", key):
        return f"stem.conv1.norm.{m[1]}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv(\d)|bn(\d)|downsample\.([01]))\.(\w+)", key)
    if m is None:
        raise KeyError(f"no detectron2 ResNet name for timm key {key!r}")
    prefix = f"res{int(m[1]) + 1}.{m[2]}."
    if m[4]:
        return f"{prefix}conv{m[4]}.{m[7]}"
    if m[5]:
        return f"{prefix}conv{m[5]}.norm.{m[7]}"
    return prefix + ("shortcut." if m[6] == "0" else "shortcut.norm.") + m[7]


def _style(encoder: VisualEncoder) -> str:
    if encoder.name.startswith("resnet"):
        return "resnet"
    if encoder.name.startswith("pvt_v2"):
        return "pvt"
    raise ValueError(
        f"the official COMBO layout exists for ResNet and PVT-v2 backbones only; this model "
        f"uses {encoder.name!r}"
    )


# -- official -> project -----------------------------------------------------------------------
def load_official_state_dict(model: COMBO, sd: Mapping[str, Any]) -> ComboLoadReport:
    """Load a COMBO state dict (official names; the detectron2 wrapper {"model": ...} too).

    Every tensor of `model` must be present with its shape. `audio_backbone.*` is returned as
    `report.vggish_state` (avsbench.VGGish names), `criterion.*` listed in `report.dropped`.
    Anything else missing, unexpected or mis-shaped raises ValueError listing the keys.
    """
    sd, prefix = strip_module_prefix(official_state_dict(sd))
    report = ComboLoadReport(loaded=0, stripped_prefix=prefix)
    style = _style(model.visual.backbone)
    mapped: dict[str, Any] = {}
    names: dict[str, str] = {}  # project -> official
    unknown: list[str] = []
    for official, project_prefix in BACKBONES.items():
        inner = [k[len(official) :] for k in sd if k.startswith(official)]
        pvt_map = pvt_original_to_timm(inner) if style == "pvt" and inner else {}
        encoder = model.visual.get_submodule(project_prefix.split(".")[1])
        for key in inner:
            timm_key = pvt_map.get(key) if style == "pvt" else d2_resnet_to_timm(key)
            body_key = encoder.full_to_body_name(timm_key) if timm_key else None
            if body_key is None:
                unknown.append(official + key)
                continue
            mapped[project_prefix + body_key] = sd[official + key]
            names[project_prefix + body_key] = official + key
    for key, value in sd.items():
        if key.startswith(tuple(BACKBONES)):
            continue
        if key.startswith(VGGISH):
            report.vggish_state[key[len(VGGISH) :]] = value
        elif key.startswith(CRITERION):
            report.dropped.append(key)
        elif key.startswith(SCALE[0]):
            mapped[SCALE[1] + key[len(SCALE[0]) :]] = value
            names[SCALE[1] + key[len(SCALE[0]) :]] = key
        elif key.startswith(HEAD):
            mapped[key] = value
            names[key] = key
        else:
            unknown.append(key)

    own = model.state_dict()
    missing = [project_to_official(model, k) for k in own if k not in mapped]
    unexpected = unknown + [names[k] for k in mapped if k not in own]
    mismatched = [
        f"{names[k]}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_short(unexpected)}")
        if missing:
            parts.append(f"missing {len(missing)}: {_short(missing)}")
        if mismatched:
            parts.append(f"shape mismatches {len(mismatched)}: {_short(mismatched)}")
        raise ValueError(
            "the COMBO checkpoint does not fit this model (" + "; ".join(parts) + "); build the "
            "model it describes: build_model(**read_architecture(sd).build_kwargs(), "
            "method='combo')"
        )
    model.load_state_dict(mapped, strict=True)
    report.loaded = len(mapped)
    return report


# -- project -> official -----------------------------------------------------------------------
def project_to_official(model: COMBO, key: str) -> str:
    """The official name of one of `model`'s state-dict keys."""
    for official, project_prefix in BACKBONES.items():
        if key.startswith(project_prefix):
            encoder = model.visual.get_submodule(project_prefix.split(".")[1])
            timm_key = encoder.body_to_full_name(key[len(project_prefix) :])
            if _style(encoder) == "resnet":
                return official + timm_resnet_to_d2(timm_key)
            return official + pvt_timm_to_original(timm_key)
    if key.startswith(SCALE[1]):
        return SCALE[0] + key[len(SCALE[1]) :]
    if key.startswith(HEAD):
        return key
    raise KeyError(f"no official COMBO name for {key!r}")


def to_official_state_dict(
    model: COMBO,
    *,
    vggish_state: Mapping[str, torch.Tensor] | None = None,
    empty_weight: torch.Tensor | None = None,
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """The model's state dict in the published layout (tensors shared, not copied).

    vggish_state: VGGish's state dict (avsbench.VGGish names), written as `audio_backbone.*`
        after `scale_factor_module` as published; None leaves it out.
    empty_weight: `criterion.empty_weight` [K+1] to write (the published loss's class
        weights: 1, no-object 0.1); None writes those defaults.
    """
    own = {project_to_official(model, k): v for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        if key.startswith(HEAD) and vggish_state is not None:  # VGGish before the head
            out.update({VGGISH + k: v for k, v in vggish_state.items()})
            vggish_state = None
        out[key] = value
    if empty_weight is None:
        classes = model.sem_seg_head.predictor.class_embed.out_features
        empty_weight = torch.ones(classes)
        empty_weight[-1] = 0.1
    out[CRITERION + "empty_weight"] = empty_weight
    return {prefix + k: v for k, v in out.items()}


def official_state_dict(obj: Any) -> Any:
    """The state dict inside a file's object: detectron2's `model` entry, a `state_dict`
    entry, or the object itself."""
    if isinstance(obj, Mapping):
        for container in ("model", "state_dict"):
            if isinstance(obj.get(container), Mapping):
                return obj[container]
    return obj


def _short(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
