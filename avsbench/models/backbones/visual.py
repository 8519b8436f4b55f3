"""Visual encoders: a timm backbone cut into four feature stages (strides 4, 8, 16, 32).

The published AVSBench models use ResNet-50 (torchvision ImageNet weights,
`resnet50-19c8e357.pth`) or PVT-v2-b5 (`pvt_v2_b5.pth` in the original PVT naming).
timm's `resnet50` and `pvt_v2_b5` are the same networks (docs/MODEL.md,
pretrained_backbones/README.md); any other timm model with four feature stages of strides
4..32 works too (`resnet18`, `pvt_v2_b0`, `convnext_tiny`, ...).

Weights always come from files the user brings (`pretrained_backbones/README.md`); this
module never downloads anything. Names are mapped in two steps: file -> timm's full-model
names (torchvision ResNet names are timm's; original PVT names go through timm's own
`timm.models.pvt_v2.checkpoint_filter_fn`) -> the names of the `features_only` wrapper.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import timm
import torch
from torch import nn

from avsbench.state_dicts import KeyReport, safe_torch_load

# The two published backbones, and the timm keyword arguments that reproduce the official
# constructors: the official PVT-v2 builders use stochastic depth 0.1 (AVSBench `pvt.py`).
PUBLISHED_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet50": {},
    "pvt_v2_b5": {"drop_path_rate": 0.1},
}

# The official scripts' --visual_backbone values -> timm names (other names pass through)
BACKBONE_ALIASES = {"resnet": "resnet50", "pvt": "pvt_v2_b5"}


def resolve_backbone(name: str) -> str:
    """Official flag values resnet / pvt -> timm names; other names pass through."""
    return BACKBONE_ALIASES.get(name, name)


# Examples listed in error messages (any timm model with four stages of stride 4..32 works).
OTHER_BACKBONE_EXAMPLES = ("resnet18", "resnet34", "pvt_v2_b0", "pvt_v2_b2", "convnext_tiny")

# The file each published backbone is initialised from (pretrained_backbones/README.md).
PRETRAINED_FILES = {"resnet50": "resnet50-19c8e357.pth", "pvt_v2_b5": "pvt_v2_b5.pth"}

STAGE_REDUCTIONS = (4, 8, 16, 32)


def _timm_kwargs(name: str) -> dict[str, Any]:
    if name in PUBLISHED_BACKBONES:
        return dict(PUBLISHED_BACKBONES[name])
    if name.startswith("pvt_v2_"):  # every official PVT-v2 builder uses drop_path_rate 0.1
        return {"drop_path_rate": 0.1}
    return {}


def check_backbone_name(name: str) -> None:
    """Raise ValueError naming the valid choices if `name` is not a timm model."""
    if not isinstance(name, str) or not timm.is_model(name):
        raise ValueError(
            f"unknown visual backbone {name!r}; valid: {sorted(PUBLISHED_BACKBONES)} (published) "
            f"or any timm model with four feature stages of strides 4-32, e.g. "
            f"{list(OTHER_BACKBONE_EXAMPLES)} (see timm.list_models())"
        )


@functools.lru_cache(maxsize=16)
def _meta_model_info(name: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(out_indices of the four stride-4..32 stages, full-model state-dict names) of a timm model.

    Built on the meta device: no memory, no weights, under a second even for PVT-v2-b5.
    """
    with torch.device("meta"):
        full = timm.create_model(name, pretrained=False)
    info = list(getattr(full, "feature_info", []))
    indices = []
    for reduction in STAGE_REDUCTIONS:
        # The last feature of each stride is the stage output (e.g. ResNet layer1 after act1).
        matches = [i for i, f in enumerate(info) if f.get("reduction") == reduction]
        if not matches:
            found = [f.get("reduction") for f in info]
            raise ValueError(
                f"visual backbone {name!r} has no feature stage of stride {reduction} "
                f"(strides found: {found}); use a timm model with four stages of strides "
                f"4, 8, 16, 32 such as {list(OTHER_BACKBONE_EXAMPLES)}"
            )
        indices.append(matches[-1])
    return tuple(indices), tuple(full.state_dict().keys())


def _normalise(key: str) -> str:
    # timm's features_only wrapper flattens `stages.0` into `stages_0`: compare with `_` == `.`
    return key.replace("_", ".")


class VisualEncoder(nn.Module):
    """A timm backbone returning four feature maps.

    forward(frames: [B*T, 3, H, W]) -> [f_0, f_1, f_2, f_3], f_s: [B*T, channels[s], H/r_s, W/r_s]
    with r = (4, 8, 16, 32); H and W must be divisible by 32.

    Attributes: `name` (timm name), `channels` (from `feature_info.channels()`), `body`
    (the timm `features_only` network; its parameters are `body.<timm feature names>`).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        check_backbone_name(name)
        out_indices, full_keys = _meta_model_info(name)
        self.name = name
        self.body = timm.create_model(
            name,
            pretrained=False,
            features_only=True,
            out_indices=out_indices,
            **_timm_kwargs(name),
        )
        self.channels: tuple[int, ...] = tuple(self.body.feature_info.channels())
        self.reductions: tuple[int, ...] = tuple(self.body.feature_info.reduction())
        if self.reductions != STAGE_REDUCTIONS:
            raise ValueError(
                f"backbone {name!r} gives strides {self.reductions}, need 4, 8, 16, 32"
            )
        # full timm name -> name inside `body` (the features_only wrapper drops heads)
        by_norm = {_normalise(k): k for k in full_keys}
        self._full_to_body: dict[str, str] = {}
        for key in self.body.state_dict():
            full_key = by_norm.get(_normalise(key))
            if full_key is None:
                raise RuntimeError(
                    f"cannot relate timm feature key {key!r} of {name!r} to the model"
                )
            self._full_to_body[full_key] = key
        self._body_to_full = {v: k for k, v in self._full_to_body.items()}

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B*T, 3, H, W], got {tuple(frames.shape)}")
        if frames.shape[-1] % 32 or frames.shape[-2] % 32:
            raise ValueError(f"frame size {tuple(frames.shape[-2:])} must be divisible by 32")
        return list(self.body(frames))

    # -- names ---------------------------------------------------------------------------
    def full_to_body_name(self, full_key: str) -> str | None:
        """timm full-model name (e.g. `stages.0.blocks.1.attn.q.weight`) -> `body` name, or None
        for tensors the four-stage encoder does not use (classifier heads)."""
        return self._full_to_body.get(full_key)

    def body_to_full_name(self, body_key: str) -> str:
        return self._body_to_full[body_key]

    def load_timm_state_dict(
        self, state_dict: dict[str, torch.Tensor], source: str = "state dict"
    ) -> list[str]:
        """Load tensors named as timm's full model (or as the features_only wrapper).

        Tensors of parts the encoder does not have (classifier heads `fc.*`, `head.*`, ...)
        are ignored and returned. Missing tensors, unknown names and shape mismatches raise
        ValueError naming `source`.
        """
        own = self.body.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        ignored, unexpected = [], []
        full_names = set(_meta_model_info(self.name)[1])
        for key, value in state_dict.items():
            body_key = self._full_to_body.get(key, key if key in own else None)
            if body_key is None:
                (ignored if key in full_names else unexpected).append(key)
            else:
                mapped[body_key] = value
        report = KeyReport.compare(own, mapped, name=self.body_to_full_name, given_word="file")
        report.unexpected += unexpected
        report.check(f"{source} does not fit the {self.name!r} backbone:")
        self.body.load_state_dict(mapped, strict=True)
        return ignored


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A flat state dict from a pretrained file (`avsbench.checkpoints.safe_torch_load`).

    Unwraps the usual containers ({"state_dict": ...}, {"model": ...}). FileNotFoundError /
    ValueError name the file and say that `what` was expected in it.
    """
    fix = "Put the file in pretrained_backbones/ (see its README.md) and set its path in config.py"
    obj = safe_torch_load(path, what, fix=fix)
    for container in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(container), dict):
            obj = obj[container]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{what}: {path!r} does not hold a state dict (got {type(obj).__name__})")
    return obj


def to_timm_names(state_dict: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    """Map a pretrained file's names to timm's full-model names.

    torchvision ResNet names are timm's already; the original PVT-v2 naming
    (`patch_embed1`, `block1.0`, `norm1`, `mlp.dwconv.dwconv`) goes through timm's own
    `checkpoint_filter_fn`. timm checkpoints pass unchanged.
    """
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if name.startswith("pvt_v2") and "patch_embed1.proj.weight" in tensors:
        from timm.models.pvt_v2 import checkpoint_filter_fn

        return checkpoint_filter_fn(tensors, None)
    return tensors


def load_backbone_weights(encoder: VisualEncoder, path: str | os.PathLike) -> list[str]:
    """Initialise `encoder` from a pretrained file; returns the ignored (head) tensor names.

    Accepts torchvision `resnet50-19c8e357.pth`, `pvt_v2_b5.pth` in the original PVT naming,
    or a timm checkpoint of the same architecture.
    """
    expected = PRETRAINED_FILES.get(encoder.name, f"a timm {encoder.name} checkpoint")
    what = f"pretrained {encoder.name} weights (expected {expected})"
    state_dict = read_state_dict(path, what)
    source = f"{os.fspath(path)!r}"
    return encoder.load_timm_state_dict(to_timm_names(state_dict, encoder.name), source=source)


def build_visual_encoder(
    name: str, weights: str | os.PathLike | None = None, pretrained: bool = False
) -> VisualEncoder:
    """A four-stage encoder, initialised from `weights` if given.

    `pretrained=True` without a file is refused (no downloads): the user brings the file.
    """
    check_backbone_name(name)
    if pretrained and weights is None:
        expected = PRETRAINED_FILES.get(name, f"a timm {name} checkpoint (.pth/.safetensors)")
        raise ValueError(
            f"pretrained weights for {name!r} are never downloaded: put {expected} in "
            f"pretrained_backbones/ and set its path as `backbone_weights` in config.py"
        )
    encoder = VisualEncoder(name)
    if weights is not None:
        load_backbone_weights(encoder, weights)
    return encoder
