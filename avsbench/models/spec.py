"""`MethodSpec`: everything the engine, the checkpoint reader, the predictor and the command
line need to know about one method, in one record (`avsbench.models.registry.METHODS`).

A method is one package under `avsbench/models/<method>/` that builds its `SPEC`; nothing
outside that package and the registry knows its name (docs/ARCHITECTURE.md, "Where a
method lives"). Learnt from segment-anything's `sam_model_registry` (one literal dict of
builders) and detectron2's per-architecture config additions, not copied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from avsbench.models.contract import unwrap

if TYPE_CHECKING:
    from avsbench.config import Config, ModelConfig
    from avsbench.state_dicts import LoadReport


class Detector(Protocol):
    """One kind of checkpoint file (`avsbench.checkpoints.detectors()`)."""

    description: str  # what such a file holds, for "not a checkpoint this project reads"
    format_name: str  # how summary.json names the format
    stores_config: bool  # the file holds its config: its architecture is fixed

    def matches(self, obj: Any) -> bool: ...

    def config(self, obj: Any, base: Config | None) -> Config: ...

    def load_into(self, model: nn.Module, obj: Any) -> LoadReport: ...

    def vggish_state(self, obj: Any) -> dict[str, torch.Tensor] | None: ...


@dataclass(frozen=True)
class MethodFlag:
    """A command-line flag of a method (train.sh / test.sh), e.g. TPAVI's --tpavi_mode.

    name: the flag; key: the dotted config field it sets ("model.arch.tpavi_mode",
    "train.loss.kl_flag"); options: `argparse.add_argument` keyword arguments (the default
    is always None: "not given"); also: {dotted key: value} set whenever this flag is given,
    unless that key's own flag is given too (TPAVI's --tpavi_vv_flag turns the audio-visual
    attention off unless --tpavi_va_flag is given, as published); settings: the settings
    that have the flag (None: all); train_only: a flag of train.sh only (losses)."""

    name: str
    key: str
    options: Mapping[str, Any] = field(default_factory=dict)
    also: Mapping[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] | None = None
    train_only: bool = False


def visual_backbone_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """{"backbone": the parameters of the model's `visual` encoder, "rest": the others} (no
    "backbone" group for a model without `visual`): the groups of a method whose visual
    encoder is its `visual` attribute (the "backbone" group trains at lr x
    train.backbone_lr_mult)."""
    inner = unwrap(model)
    visual = getattr(inner, "visual", None)
    backbone = list(visual.parameters()) if isinstance(visual, nn.Module) else []
    ids = {id(p) for p in backbone}
    rest = [p for p in inner.parameters() if id(p) not in ids]
    return {"backbone": backbone, "rest": rest} if backbone else {"rest": rest}


def set_visual_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (False) or unfreeze the `visual` encoder: only requires_grad changes (a frozen
    ResNet's BatchNorm keeps its train mode, as in the published code)."""
    unwrap(model).visual.requires_grad_(trainable)


# (setting, output, masks, gt_valid, loss_cfg, **batch keys it reads) -> (total, log entries)
Loss = Callable[..., tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class MethodSpec:
    """One method, as the rest of the library sees it."""

    name: str  # the registry key, --method's value
    description: str  # one line for logs and --help
    arch_type: type  # its frozen architecture dataclass (`ModelConfig.arch`)
    model_type: type[nn.Module]  # what its builders return
    output_type: type  # its `AVSOutput` subclass: what its loss reads
    preset: Callable[[str], Config]  # the published recipe of a setting
    synthetic: Callable[[Config], Config]  # its small CPU config, over `config.synthetic_base`
    build: Callable[..., nn.Module]  # build(setting, backbone, **kwargs): `build_model`
    build_from_config: Callable[[ModelConfig], nn.Module]
    # loss(setting, output, masks, gt_valid, loss_cfg, **{k: batch[k] for k in
    # loss_batch_keys}) -> (total, log entries)
    loss: Loss
    loss_fields: tuple[str, ...]  # LossConfig fields it reads; others must keep defaults
    detectors: Mapping[str, Detector]  # official layouts it reads: kind -> detector
    load_official: Callable[..., LoadReport]  # (model, state dict) -> report
    to_official: Callable[..., dict[str, torch.Tensor]]  # (model, **options) -> state dict
    summary: Callable[[ModelConfig], str]  # the architecture in a few words, for logs
    flags: tuple[MethodFlag, ...] = ()
    not_architecture: tuple[str, ...] = ()  # arch fields a checkpoint does not fix
    check: Callable[[Config], None] = lambda cfg: None  # ValueError on a contradiction
    # [B*T] bool of the frames its losses read (None: all): the model decodes only those
    target_frames: Callable[[Config, torch.Tensor], torch.Tensor | None] = lambda c, v: None
    # named parameter groups ("backbone" gets train.backbone_lr_mult)
    param_groups: Callable[[nn.Module], dict[str, list[nn.Parameter]]] = visual_backbone_groups
    set_backbone_trainable: Callable[[nn.Module, bool], None] = set_visual_trainable
    # the parameters trained with weight decay 0 (None: all decayed; Mask2Former family:
    # norms, embeddings, Swin's position tables, `mask2former.weight_decay.no_weight_decay`)
    no_weight_decay: Callable[[nn.Module], list[nn.Parameter]] | None = None
    # extra per-frame inputs (`avsbench.data.extra_inputs.ExtraInput`), fed to the model
    # by their sample key; for a new video `make_extra_inputs(rgb frames) -> {key: images}`
    extra_inputs: tuple[Any, ...] = ()
    # keys of the loader batch its loss also reads, passed as keyword arguments of the same
    # names (VCT's prototype loss: "category", the S4 clips' category names)
    loss_batch_keys: tuple[str, ...] = ()
    # what the model receives of the frozen VGGish as `audio_emb`: "embedding" [B*T, 128] or
    # "conv_map" [B*T, 512*6*4] (features(x) flattened, C-H-W order; VCT)
    audio_input: str = "embedding"
    make_extra_inputs: Callable[..., dict[str, Any]] | None = None
    # its released checkpoints (`avsbench.models.release.ZooEntry` rows of the model zoo)
    releases: tuple[Any, ...] = ()
