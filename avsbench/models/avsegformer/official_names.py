"""Released AVSegFormer checkpoints <-> this project's AVSegFormer, both ways (the only place).

The six released files are flat state dicts of the published `AVSegFormer` module
(docs/AVSEGFORMER.md lists them):

    official                              project (AVSegFormer)
    backbone.<torchvision ResNet name>    visual.body.<timm name>   (layer3_1/layer4_1 -> layer3/4)
    backbone.layer3_2.*, layer4_2.*       -- (unused second ResNet branch)
    backbone.<original PVT-v2 name>       visual.body.<timm name>   (timm's checkpoint_filter_fn)
    vggish.<VGGish name>                  -- (handed over: report.vggish_state, VGGish's names)
    head.transformer.encoder.*            head.encoder.*
    head.transformer.decoder.*            head.decoder.*
    head.fusion_block.*                   head.mixer.*
    head.fpn.*, head.attn_fc.*            -- (built by the published head, never called)
    head.<anything else>, audio_proj.*    the same name

The backbone layouts are AVSBench's (`avsbench.models.backbones.official_names`), under
`backbone.`.
Checkpoints saved from `nn.DataParallel` carry a `module.` prefix; it is stripped on load.
`read_architecture` tells an AVSegFormer state dict by its keys and reads the arguments of
`build_avsegformer` off its shapes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from avsbench import config as C
from avsbench.models.avsegformer.config import AVSegFormerArch, preset
from avsbench.models.avsegformer.model import AVSegFormer
from avsbench.models.backbones.official_names import (
    backbone_style,
    official_state,
    pvt_original_to_timm,
    pvt_timm_to_original,
    resnet_official_to_timm,
    resnet_timm_to_official,
    strip_module_prefix,
)
from avsbench.state_dicts import LoadReport

BACKBONE = "backbone."
VGGISH = "vggish."
_VGGISH_PCA = "vggish.pproc."  # the published Postprocessor (PCA), absent from every release
_UNUSED = re.compile(r"^(backbone\.layer[34]_2\.|head\.fpn\.|head\.attn_fc\.)")
_RENAMED_HEAD = (  # (official prefix, project prefix)
    ("head.transformer.encoder.", "head.encoder."),
    ("head.transformer.decoder.", "head.decoder."),
    ("head.fusion_block.", "head.mixer."),
)
_FPN_CONVS = ("up1.1", "up2.1", "up3.1")  # the unused SimpleFPN's 3x3 convs (C -> C)

# (blocks per stage, bottleneck) -> timm name; (blocks per stage, first width) for PVT-v2
RESNETS = {
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
}
PVTS = {
    ((3, 6, 40, 3), 64): "pvt_v2_b5",
    ((2, 2, 2, 2), 32): "pvt_v2_b0",
    ((2, 2, 2, 2), 64): "pvt_v2_b1",
    ((3, 4, 6, 3), 64): "pvt_v2_b2",
    ((3, 4, 18, 3), 64): "pvt_v2_b3",
    ((3, 8, 27, 3), 64): "pvt_v2_b4",
}
PUBLISHED_NUM_HEADS = 8  # not visible in any shape; every release uses 8
SETTING_BY_CLASSES = {1: "s4", 71: "avss"}  # S4 and MS3 share one architecture


@dataclass
class AVSegFormerLoadReport:
    """What `load_official_state_dict` did with a released AVSegFormer checkpoint."""

    loaded: int  # tensors copied into the model
    dropped: list[str] = field(default_factory=list)  # official tensors the forward never uses
    unused_state: dict[str, torch.Tensor] = field(default_factory=dict)  # those, by name
    vggish_state: dict[str, torch.Tensor] = field(default_factory=dict)  # for avsbench.VGGish
    stripped_prefix: str = ""  # "module." for DataParallel checkpoints


# -- official -> project ------------------------------------------------------------------------
def _head_to_project(key: str) -> str | None:
    for official, project in _RENAMED_HEAD:
        if key.startswith(official):
            return project + key[len(official) :]
    if key.startswith(("head.", "audio_proj.")):
        return key
    return None


def _vggish_name(key: str, value: Any) -> tuple[str, Any]:
    if key.startswith(_VGGISH_PCA):  # avsbench.VGGish(postprocess=True) keeps flat means
        name = key[len(_VGGISH_PCA) :]
        return name, value.reshape(-1) if name == "pca_means" else value
    return key[len(VGGISH) :], value


def load_official_state_dict(model: AVSegFormer, sd: Mapping[str, Any]) -> AVSegFormerLoadReport:
    """Load a released AVSegFormer checkpoint (flat state dict, official names) into `model`.

    Every tensor of `model` must be present with the same shape. The tensors the published
    forward pass never uses (ResNet `layer3_2`/`layer4_2`, `head.fpn`, `head.attn_fc`) are
    listed in `report.dropped` (values in `report.unused_state`); the `vggish.*` tensors are
    returned under `avsbench.VGGish`'s names in `report.vggish_state`. Anything else missing,
    unexpected or mis-shaped raises ValueError listing the keys.
    """
    sd, prefix = strip_module_prefix(sd)
    style = backbone_style(model.visual, "AVSegFormer")
    pvt_keys = [k[len(BACKBONE) :] for k in sd if k.startswith(BACKBONE)] if style == "pvt" else []
    pvt_map = pvt_original_to_timm(pvt_keys) if pvt_keys else {}
    mapped: dict[str, Any] = {}
    names: dict[str, str] = {}  # project -> official
    report = AVSegFormerLoadReport(loaded=0, stripped_prefix=prefix)
    unknown: list[str] = []
    for key, value in sd.items():
        if _UNUSED.match(key):
            report.dropped.append(key)
            report.unused_state[key] = value
            continue
        if key.startswith(VGGISH):
            name, tensor = _vggish_name(key, value)
            report.vggish_state[name] = tensor
            continue
        project_key = _head_to_project(key)
        if key.startswith(BACKBONE):
            inner = key[len(BACKBONE) :]
            timm_key = pvt_map.get(inner) if style == "pvt" else resnet_official_to_timm(inner)
            body_key = model.visual.full_to_body_name(timm_key) if timm_key else None
            project_key = None if body_key is None else f"visual.body.{body_key}"
        if project_key is None:
            unknown.append(key)
            continue
        mapped[project_key] = value
        names[project_key] = key

    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    unexpected = unknown + [names[k] for k in mapped if k not in own]
    mismatched = [
        f"{names[k]}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        lines = ["the AVSegFormer checkpoint does not fit this model:"]
        if missing:
            official_missing = [project_to_official(model, k) for k in missing]
            lines.append(f"  missing {len(missing)}: {_short(official_missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)}: {_short(unexpected)}")
        if mismatched:
            lines.append(f"  shape mismatches {len(mismatched)}: {_short(mismatched)}")
        lines.append(
            "  build the model the checkpoint describes: "
            "build_model(**read_architecture(sd).build_kwargs(), method='avsegformer')"
        )
        raise ValueError("\n".join(lines))
    model.load_state_dict(mapped, strict=True)
    report.loaded = len(mapped)
    return report


# -- project -> official ------------------------------------------------------------------------
def project_to_official(model: AVSegFormer, key: str) -> str:
    """The official name of one of `model`'s state-dict keys."""
    if key.startswith("visual.body."):
        timm_key = model.visual.body_to_full_name(key[len("visual.body.") :])
        if backbone_style(model.visual, "AVSegFormer") == "resnet":
            return BACKBONE + resnet_timm_to_official(timm_key)
        return BACKBONE + pvt_timm_to_original(timm_key)
    for official, project in _RENAMED_HEAD:
        if key.startswith(project):
            return official + key[len(project) :]
    if key.startswith(("head.", "audio_proj.")):
        return key
    raise KeyError(f"no official AVSegFormer name for {key!r}")


def _default_unused(model: AVSegFormer, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Values for the tensors the published class has and never uses.

    ResNet `layer3_2`/`layer4_2`: copies of the used branch (what the published
    initialisation from ImageNet weights gives); `head.fpn`, `head.attn_fc`: zeros.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        m = re.match(r"^backbone\.layer([34])_1\.(.+)$", key)
        if m:
            out[f"backbone.layer{m[1]}_2.{m[2]}"] = value
    c = model.head.embed_dim
    weight = own["head.lateral_conv.0.weight"]
    for conv in _FPN_CONVS:
        out[f"head.fpn.{conv}.weight"] = weight.new_zeros(c, c, 3, 3)
        out[f"head.fpn.{conv}.bias"] = weight.new_zeros(c)
    for key, value in own.items():
        if key.startswith("head.fc."):
            out["head.attn_fc." + key[len("head.fc.") :]] = torch.zeros_like(value)
    return out


def _vggish_official(vggish_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in vggish_state.items():
        if name.startswith("pca_"):
            out[_VGGISH_PCA + name] = value.reshape(-1, 1) if name == "pca_means" else value
        else:
            out[VGGISH + name] = value
    return out


def to_official_state_dict(
    model: AVSegFormer,
    *,
    vggish_state: Mapping[str, torch.Tensor] | None = None,
    unused_state: Mapping[str, torch.Tensor] | None = None,
    with_unused: bool = True,
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """The model's state dict in the published layout and order (tensors shared, not copied).

    vggish_state: the frozen VGGish's state dict (`avsbench.VGGish().state_dict()` or a load
        report's `vggish_state`), written as `vggish.*`; None leaves VGGish out (the published
        class then needs strict=False, or the VGGish file, to load it).
    unused_state: values for the tensors the published forward never uses, by official name
        (e.g. a load report's `unused_state`); the others get `_default_unused` values.
    with_unused: False leaves those tensors out.
    prefix: e.g. "module." for the DataParallel layout.
    """
    own = {project_to_official(model, k): v for k, v in model.state_dict().items()}
    unused: dict[str, torch.Tensor] = {}
    if with_unused:
        unused = _default_unused(model, own)
        extra = sorted(set(unused_state or {}) - set(unused))
        if extra:
            raise ValueError(
                f"unused_state names tensors the published class lacks: {_short(extra)}"
            )
        unused.update(unused_state or {})
    vggish = _vggish_official(vggish_state or {})
    return {prefix + k: v for k, v in _published_order(own, unused, vggish)}


def _published_order(
    own: dict[str, torch.Tensor], unused: dict[str, torch.Tensor], vggish: dict[str, torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor]]:
    """backbone (used branch, then unused), vggish, head (fpn and attn_fc before fc), audio_proj."""
    backbone_done = fc_reached = False
    for key, value in own.items():
        if not backbone_done and not key.startswith(BACKBONE):
            backbone_done = True
            yield from ((k, v) for k, v in unused.items() if k.startswith(BACKBONE))
            yield from vggish.items()
        if not fc_reached and key.startswith("head.fc."):
            fc_reached = True
            yield from ((k, v) for k, v in unused.items() if k.startswith("head."))
        yield key, value


# -- recognising a checkpoint ------------------------------------------------------------------
@dataclass(frozen=True)
class AVSegFormerArchitecture:
    """What an AVSegFormer state dict says about the network that made it."""

    setting: str  # "s4" (1 class: also MS3's architecture) or "avss" (71 classes)
    backbone: str  # timm name: "resnet50" / "pvt_v2_b5" for the releases
    num_classes: int
    embed_dim: int
    num_queries: int
    encoder_layers: int
    decoder_layers: int
    generator_layers: int
    num_points: int
    ffn_dim: int
    generator_ffn_dim: int
    mlp_dim: int
    num_heads: int = PUBLISHED_NUM_HEADS  # assumed: no shape reveals it

    def build_kwargs(self) -> dict[str, Any]:
        """Arguments of `avsbench.build_model(..., method="avsegformer")` for this network."""
        kwargs = dataclasses.asdict(self)
        return {"setting": kwargs.pop("setting"), "backbone": kwargs.pop("backbone"), **kwargs}


def is_avsegformer_state_dict(sd: Mapping[str, Any]) -> bool:
    """True if `sd` has the keys of a published (or exported) AVSegFormer checkpoint."""
    if not isinstance(sd, Mapping):
        return False
    keys = strip_module_prefix(sd)[0]
    needed = (
        "audio_proj.weight",
        "head.fc.4.weight",
        "head.learnable_query.weight",
        "head.query_generator.query.weight",
    )
    return all(k in keys for k in needed) and any(k.startswith(BACKBONE) for k in keys)


def read_architecture(sd: Mapping[str, Any]) -> AVSegFormerArchitecture:
    """Read the setting, backbone and sizes of an AVSegFormer state dict off its keys.

    Setting from the class count (1 -> "s4", which is also MS3's architecture; 71 -> "avss");
    backbone from the backbone's keys and block counts. ValueError if `sd` is not an
    AVSegFormer state dict or its backbone is not one the project builds.
    """
    if not is_avsegformer_state_dict(sd):
        raise ValueError(
            "not an AVSegFormer state dict: expected backbone.*, head.query_generator.*, "
            "head.learnable_query.weight, head.fc.4.weight and audio_proj.weight"
        )
    sd = strip_module_prefix(sd)[0]
    num_classes, _, _, _ = sd["head.fc.4.weight"].shape
    if num_classes not in SETTING_BY_CLASSES:
        raise ValueError(
            f"AVSegFormer checkpoint with {num_classes} classes: the published settings have "
            f"{sorted(SETTING_BY_CLASSES)} (S4/MS3, AVSS)"
        )
    num_queries, embed_dim = sd["head.learnable_query.weight"].shape
    enc = "head.transformer.encoder.layers"
    weights_rows = sd[f"{enc}.0.self_attn.attention_weights.weight"].shape[0]  # M * L * P
    levels = sd["head.level_embed"].shape[0]
    return AVSegFormerArchitecture(
        setting=SETTING_BY_CLASSES[num_classes],
        backbone=_read_backbone(sd),
        num_classes=num_classes,
        embed_dim=embed_dim,
        num_queries=num_queries,
        encoder_layers=_count_layers(sd, enc),
        decoder_layers=_count_layers(sd, "head.transformer.decoder.layers"),
        generator_layers=_count_layers(sd, "head.query_generator.layers"),
        num_points=weights_rows // (PUBLISHED_NUM_HEADS * levels),
        ffn_dim=sd[f"{enc}.0.linear1.weight"].shape[0],
        generator_ffn_dim=sd["head.query_generator.layers.0.ffn.0.weight"].shape[0],
        mlp_dim=sd["head.mlp.layers.0.weight"].shape[0],
    )


def _count_layers(sd: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m[1] for k in sd if (m := pattern.match(k))})


def _read_backbone(sd: Mapping[str, Any]) -> str:
    if f"{BACKBONE}conv1.weight" in sd:  # ResNet (AVSBench's B2_ResNet layout)
        stages = ("layer1", "layer2", "layer3_1", "layer4_1")
        blocks = tuple(_count_layers(sd, BACKBONE + s) for s in stages)
        bottleneck = f"{BACKBONE}layer1.0.conv3.weight" in sd
        found = RESNETS.get((blocks, bottleneck))
        what = f"ResNet with blocks {blocks} ({'bottleneck' if bottleneck else 'basic'})"
    elif f"{BACKBONE}patch_embed1.proj.weight" in sd:  # PVT-v2, original names
        blocks = tuple(_count_layers(sd, f"{BACKBONE}block{i}") for i in range(1, 5))
        width = sd[f"{BACKBONE}patch_embed1.proj.weight"].shape[0]
        found = PVTS.get((blocks, width))
        what = f"PVT-v2 with blocks {blocks}, width {width}"
    else:
        raise ValueError("AVSegFormer backbone keys are neither ResNet (conv1) nor PVT-v2")
    if found is None:
        raise ValueError(f"unsupported AVSegFormer backbone: {what}")
    return found


def _short(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# -- the checkpoint detector (a row of the AVSegFormer spec's detectors) ------------------------
class OfficialAVSegFormer:
    """Detector of a released AVSegFormer checkpoint (flat state dict, the names above; the
    architecture is read off the keys by `read_architecture`). Its `vggish.*` tensors are
    the VGGish the model was trained with: `vggish_state` hands them over."""

    description = (
        "a released AVSegFormer state dict (keys backbone.*, vggish.*, head.query_generator.*, "
        "head.learnable_query.weight, audio_proj.*; 'module.' prefixes allowed)"
    )
    format_name = "official AVSegFormer"  # summary.json
    stores_config = False  # the architecture is read off the keys

    def matches(self, obj: Any) -> bool:
        return is_avsegformer_state_dict(official_state(obj))

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        """`base` (its paths and runtime) with AVSegFormer's recipe and the architecture of the
        keys. 1 class: S4, or MS3 when `base` is MS3 (the two share one network); 71: AVSS."""
        found = read_architecture(official_state(obj))
        setting = found.setting
        if found.num_classes == 1 and base is not None and base.model.setting == "ms3":
            setting = "ms3"
        recipe = preset(setting)
        if base is not None and base.model.setting == setting:
            recipe = C.recipe_with_user_settings(recipe, base)
        names = {f.name for f in dataclasses.fields(AVSegFormerArch)}
        arch = AVSegFormerArch(**{k: v for k, v in dataclasses.asdict(found).items() if k in names})
        model = dataclasses.replace(
            recipe.model, backbone=found.backbone, num_classes=found.num_classes, arch=arch
        )
        return dataclasses.replace(recipe, model=model)

    def load_into(self, model: AVSegFormer, obj: Any) -> LoadReport:
        report = load_official_state_dict(model, official_state(obj))
        return LoadReport(
            loaded=report.loaded, dropped=report.dropped, stripped_prefix=report.stripped_prefix
        )

    def vggish_state(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """The `vggish.*` tensors under `avsbench.VGGish`'s names (None if there are none)."""
        state = strip_module_prefix(official_state(obj))[0]
        found = dict(_vggish_name(k, v) for k, v in state.items() if k.startswith(VGGISH))
        return found or None
