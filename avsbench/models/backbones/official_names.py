"""Official names of the shared visual backbones, both ways (the only place).

The published AVS codebases store a ResNet-50 in torchvision names with AVSBench's
`layer3_1` / `layer4_1` (plus an unused `layer3_2` / `layer4_2` copy), and a PVT-v2 in
the original PVT names; the project's encoders use timm names. Each method's
`official_names.py` puts these under its own prefix (`resnet.`, `encoder_backbone.`,
`backbone.`) and maps the rest of its network itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import nn


def strip_module_prefix(sd: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(state dict without a `module.` prefix on every key, the prefix stripped or "")."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}, "module."
    return dict(sd), ""


def official_state(obj: Any) -> Any:
    """The state dict inside a file's object: its `state_dict` entry, or the object itself."""
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj


def backbone_style(visual: nn.Module, method: str) -> str:
    """ "resnet" or "pvt": which official layout the encoder `visual` has (ValueError else)."""
    name = getattr(visual, "name", "")
    if name.startswith("resnet"):
        return "resnet"
    if name.startswith("pvt_v2"):
        return "pvt"
    raise ValueError(
        f"the official {method} layout exists for ResNet and PVT-v2 backbones only; this "
        f"model uses {name!r}"
    )


def resnet_official_to_timm(key: str) -> str:
    """AVSBench's `layer3_1.` / `layer4_1.` -> timm's `layer3.` / `layer4.`."""
    return re.sub(r"^layer([34])_1\.", r"layer\1.", key)


def resnet_timm_to_official(key: str) -> str:
    """timm's `layer3.` / `layer4.` -> AVSBench's `layer3_1.` / `layer4_1.`."""
    return re.sub(r"^layer([34])\.", r"layer\1_1.", key)


def pvt_timm_to_original(key: str) -> str:
    """Inverse of timm's `pvt_v2.checkpoint_filter_fn` (timm name -> original PVT name)."""
    key = re.sub(r"^patch_embed\.", "patch_embed1.", key)
    key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", key)
    key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.", key)
    key = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", key)
    return key.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")


def pvt_original_to_timm(keys: list[str]) -> dict[str, str]:
    """Original PVT names -> timm names, through timm's own `checkpoint_filter_fn`."""
    from timm.models.pvt_v2 import checkpoint_filter_fn

    # checkpoint_filter_fn maps values in dict order: map each name with a placeholder value.
    mapped = checkpoint_filter_fn({k: i for i, k in enumerate(keys)}, None)
    return {keys[i]: new for new, i in mapped.items()}
