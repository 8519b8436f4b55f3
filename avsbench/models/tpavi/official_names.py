"""Official AVSBench (TPAVI) state-dict names <-> this project's names, both ways (the only
place).

Files are read and dispatched by `avsbench.checkpoints.load` (detector "official_tpavi");
this module knows the names. Official layouts (tests/golden/avsbench/state_dicts/
avs_{s4,ms3,avss}_{resnet,pvt}.tsv):

    official                         project (AVSModel)
    resnet.<torchvision name>        visual.body.<timm name>   (layer3_1/layer4_1 -> layer3/4;
                                                                 unused layer3_2/layer4_2 dropped)
    encoder_backbone.<orig. PVT>     visual.body.<timm name>   (timm's checkpoint_filter_fn)
    conv{s+1}.conv2d_list.{i}        projections.{s}.conv2d_list.{i}
    tpavi_b{s+1}.<name>              tpavi_blocks.{s}.<name>
    path{s+1}.resConfUnit{j}.conv{k} decoder.fusions.{s}.resConfUnit{j}.conv{k}
    output_conv.{0,2,4}              decoder.output_conv.{0,2,4}

Checkpoints saved from `nn.DataParallel` carry a `module.` prefix; it is stripped on load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from avsbench import config as C
from avsbench.models.backbones.official_names import (
    backbone_style,
    official_state,
    pvt_original_to_timm,
    pvt_timm_to_original,
    resnet_official_to_timm,
    resnet_timm_to_official,
    strip_module_prefix,
)
from avsbench.models.tpavi.config import preset
from avsbench.models.tpavi.model import AVSModel
from avsbench.state_dicts import KeyReport, LoadReport

_RESNET_PREFIX = "resnet."
_PVT_PREFIX = "encoder_backbone."
_DROPPED = re.compile(r"^resnet\.layer[34]_2\.")  # the published model's unused second branch
_HEAD_RULES = (  # (official regex, project template) for everything but the backbone
    (re.compile(r"^conv([1-4])\.(.+)$"), "projections.{s}.{rest}"),
    (re.compile(r"^tpavi_b([1-4])\.(.+)$"), "tpavi_blocks.{s}.{rest}"),
    (re.compile(r"^path([1-4])\.(.+)$"), "decoder.fusions.{s}.{rest}"),
)


def looks_official(sd: Mapping[str, Any]) -> bool:
    """True if `sd` is a flat state dict in the published AVSBench layout (by key names)."""
    keys = strip_module_prefix(sd)[0].keys() if isinstance(sd, Mapping) else ()
    backbone = any(k.startswith((_RESNET_PREFIX, _PVT_PREFIX)) for k in keys)
    head = any(k.startswith("output_conv.") for k in keys)
    projection = any(re.match(r"^conv[1-4]\.conv2d_list\.", k) for k in keys)
    return backbone and head and projection


# -- official -> project ------------------------------------------------------------------------
def official_to_project(
    model: AVSModel, sd: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str], list[str], str]:
    """(project state dict, project -> official names, dropped keys, unknown keys, prefix)."""
    sd, prefix = strip_module_prefix(sd)
    out: dict[str, Any] = {}
    names: dict[str, str] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    pvt_keys = [k[len(_PVT_PREFIX) :] for k in sd if k.startswith(_PVT_PREFIX)]
    pvt_map = pvt_original_to_timm(pvt_keys) if pvt_keys else {}
    for key, value in sd.items():
        if _DROPPED.match(key):
            dropped.append(key)
            continue
        timm_key = None
        if key.startswith(_RESNET_PREFIX):
            timm_key = resnet_official_to_timm(key[len(_RESNET_PREFIX) :])
        elif key.startswith(_PVT_PREFIX):
            timm_key = pvt_map[key[len(_PVT_PREFIX) :]]
        if timm_key is not None:
            body_key = model.visual.full_to_body_name(timm_key)
            if body_key is None:
                unknown.append(key)
            else:
                out[f"visual.body.{body_key}"] = value
                names[f"visual.body.{body_key}"] = key
            continue
        if key.startswith("output_conv."):
            out[f"decoder.{key}"] = value
            names[f"decoder.{key}"] = key
            continue
        for pattern, template in _HEAD_RULES:
            m = pattern.match(key)
            if m:
                project_key = template.format(s=int(m[1]) - 1, rest=m[2])
                out[project_key] = value
                names[project_key] = key
                break
        else:
            unknown.append(key)
    return out, names, dropped, unknown, prefix


def load_official_state_dict(model: AVSModel, sd: Mapping[str, Any]) -> LoadReport:
    """Load a published AVSBench checkpoint (flat state dict, official names) into `model`.

    Every tensor of `model` must be present with the same shape; the published model's
    unused `resnet.layer3_2.*` / `resnet.layer4_2.*` are dropped (listed in the report).
    Anything else missing, unexpected or mis-shaped raises ValueError listing the keys.
    """
    mapped, names, dropped, unknown, prefix = official_to_project(model, sd)
    shown = lambda k: names.get(k) or _project_key_to_official(model, k)  # noqa: E731
    report = KeyReport.compare(model.state_dict(), mapped, name=shown)
    report.unexpected[:0] = unknown
    report.check(
        "the official checkpoint does not fit this model:",
        "build the model with the checkpoint's setting, backbone, tpavi_stages, tpavi_mode and "
        "align_bias (AVSS: align_bias=False, 71 classes)",
    )
    model.load_state_dict(mapped, strict=True)
    return LoadReport(
        kind="official_tpavi", loaded=len(mapped), dropped=dropped, stripped_prefix=prefix
    )


# -- project -> official ------------------------------------------------------------------------
def _project_key_to_official(model: AVSModel, key: str, style: str | None = None) -> str:
    if key.startswith("visual.body."):
        timm_key = model.visual.body_to_full_name(key[len("visual.body.") :])
        style = style or backbone_style(model.visual, "AVSBench")
        if style == "resnet":
            return _RESNET_PREFIX + resnet_timm_to_official(timm_key)
        return _PVT_PREFIX + pvt_timm_to_original(timm_key)
    if key.startswith("decoder.output_conv."):
        return key[len("decoder.") :]
    for project, official in (
        ("projections.", "conv"),
        ("tpavi_blocks.", "tpavi_b"),
        ("decoder.fusions.", "path"),
    ):
        if key.startswith(project):
            stage, rest = key[len(project) :].split(".", 1)
            return f"{official}{int(stage) + 1}.{rest}"
    raise KeyError(f"no official name for {key!r}")


def to_official_state_dict(
    model: AVSModel, *, with_unused_branch: bool = True, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """The model's state dict in the published layout (tensors are shared, not copied).

    with_unused_branch: for ResNet, also write `resnet.layer3_2.*` / `layer4_2.*` (copies of
    layer3/layer4 as the published initialisation makes them) so that the published code
    loads the file with strict=True. prefix: e.g. "module." for the DataParallel layout.
    """
    style = backbone_style(model.visual, "AVSBench")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        official = _project_key_to_official(model, key, style)
        out[prefix + official] = value
        if with_unused_branch and style == "resnet":
            m = re.match(r"^resnet\.layer([34])_1\.(.+)$", official)
            if m:
                out[f"{prefix}resnet.layer{m[1]}_2.{m[2]}"] = value
    return out


# -- the checkpoint detector (a row of the TPAVI spec's detectors) ----------------------------
class OfficialTPAVI:
    """Detector of a flat state dict as the published AVSBench code saves it (the names
    above; the architecture is read off the keys by `official_architecture`)."""

    description = (
        "an official AVSBench state dict (keys resnet.* or encoder_backbone.*, conv1-4, "
        "tpavi_b1-4, path1-4, output_conv.*; 'module.' prefixes allowed)"
    )
    format_name = "official"  # summary.json
    stores_config = False  # the architecture is read off the keys

    def matches(self, obj: Any) -> bool:
        state = official_state(obj)
        return isinstance(state, Mapping) and looks_official(state)

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        """`base` with the architecture of the keys. The class count decides the setting
        (71: AVSS; 1: S4 or MS3, whichever `base` is, else S4); without `base`, or when it
        is of another setting, the preset of that setting is the base."""
        changes = official_architecture(official_state(obj))
        classes = changes.get("model.num_classes")  # None: no output_conv.4 (loading says so)
        setting = base.model.setting if base is not None else "s4"
        if classes is not None and C.SETTINGS[setting].num_classes != classes:
            fits = [name for name, row in C.SETTINGS.items() if row.num_classes == classes]
            if not fits:
                raise ValueError(f"{classes} output classes fit no setting of {list(C.SETTINGS)}")
            setting = fits[0]
        if base is None or base.model.setting != setting:
            base = preset(setting)
        elif base.model.method != "tpavi":
            base = C.recipe_with_user_settings(preset(setting), base)
        return C.override(base, changes)

    def load_into(self, model: AVSModel, obj: Any) -> LoadReport:
        return load_official_state_dict(model, official_state(obj))

    def vggish_state(self, obj: Any) -> None:
        return None  # the published TPAVI checkpoints do not hold VGGish


def official_architecture(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config changes read off an official flat state dict: backbone (`resnet.*` ->
    resnet50, `encoder_backbone.*` -> pvt_v2_b5), decoder width (conv1 outputs), TPAVI
    stages (`tpavi_b{s+1}.*`), align_channel bias and the number of classes."""
    tensors = {k.removeprefix("module."): v for k, v in state.items()}
    changes: dict[str, Any] = {}
    arch = "model.arch."
    if any(k.startswith("resnet.") for k in tensors):
        changes["model.backbone"] = "resnet50"
    elif any(k.startswith("encoder_backbone.") for k in tensors):
        changes["model.backbone"] = "pvt_v2_b5"
    if "conv1.conv2d_list.0.weight" in tensors:
        changes[arch + "decoder_channels"] = int(tensors["conv1.conv2d_list.0.weight"].shape[0])
    stages = sorted({int(k[len("tpavi_b")]) - 1 for k in tensors if k.startswith("tpavi_b")})
    changes[arch + "tpavi_stages"] = tuple(stages)
    if stages:
        changes[arch + "align_bias"] = any(".align_channel.bias" in k for k in tensors)
    if "output_conv.4.weight" in tensors:
        changes["model.num_classes"] = int(tensors["output_conv.4.weight"].shape[0])
    return changes
