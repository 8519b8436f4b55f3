"""The methods the library knows: one literal dict, `METHODS`, from name to `MethodSpec`.

Everything that depends on the method (building, presets, losses, checkpoint layouts,
flags, frozen parts, extra inputs) is asked of the spec found here; an unknown name is an
error listing the valid ones. Adding a method = writing its package under
`avsbench/models/<method>/` with a `SPEC`, and one line below (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from avsbench import config as C
from avsbench.models import avsegformer, combo, tpavi, vct
from avsbench.models.contract import unwrap
from avsbench.models.spec import Detector, MethodSpec

METHODS: dict[str, MethodSpec] = {
    "tpavi": tpavi.SPEC,
    "avsegformer": avsegformer.SPEC,
    "combo": combo.SPEC,
    "vct": vct.SPEC,
}

DEFAULT_METHOD = "tpavi"  # AVSBench's own model: what train.sh runs without --method


def method_spec(name: str) -> MethodSpec:
    """The spec of `name`; ValueError listing the valid names for an unknown one."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def spec_of(model: nn.Module) -> MethodSpec:
    """The spec whose model type `model` (or the module a DDP wrapper holds) is."""
    inner = unwrap(model)
    for spec in METHODS.values():
        if isinstance(inner, spec.model_type):
            return spec
    raise TypeError(
        f"{type(inner).__name__} is the model of no registered method ({sorted(METHODS)})"
    )


def arch_types() -> dict[str, type]:
    """{method: its architecture dataclass}, for `config.from_dict`."""
    return {name: spec.arch_type for name, spec in METHODS.items()}


def config_from_dict(d: Mapping[str, Any]) -> C.Config:
    """`config.from_dict` knowing every method's architecture (older flat configs too; a
    config from before methods existed is the default method's)."""
    d = dict(d)
    d["model"] = {"method": DEFAULT_METHOD, **d.get("model", {})}
    return with_arch(C.from_dict(d, arch_types()))


def with_arch(cfg: C.Config) -> C.Config:
    """`cfg` with `model.arch` filled in with its method's defaults if it is None."""
    spec = method_spec(cfg.model.method)
    if cfg.model.arch is None:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=spec.arch_type()))
    if not isinstance(cfg.model.arch, spec.arch_type):
        raise ValueError(
            f"model.arch is a {type(cfg.model.arch).__name__}, not the {spec.arch_type.__name__} "
            f"of method {spec.name!r}"
        )
    return cfg


def preset(setting: str, method: str = DEFAULT_METHOD) -> C.Config:
    """The published recipe of `method` for `setting` (s4 | ms3 | avss)."""
    C.setting_info(setting)  # an unknown setting lists the valid ones
    return with_arch(method_spec(method).preset(setting))


def synthetic(cfg: C.Config) -> C.Config:
    """The small CPU configuration of `cfg`'s method for the synthetic AVSBench."""
    return method_spec(cfg.model.method).synthetic(C.synthetic_base(with_arch(cfg)))


def build_model(
    setting: str, backbone: str, *, method: str = DEFAULT_METHOD, **kwargs: Any
) -> nn.Module:
    """Build the published model of `method` for `setting` in {"s4", "ms3", "avss"};
    `kwargs` go to that method's builder (e.g. TPAVI's `build_tpavi_model`)."""
    return method_spec(method).build(setting, backbone, **kwargs)


def build_model_for(cfg: C.Config) -> nn.Module:
    """The model of `cfg` (its method's builder, with its architecture fields)."""
    return method_spec(cfg.model.method).build_from_config(with_arch(cfg).model)


def official_detectors() -> dict[str, Detector]:
    """Every method's detectors of official checkpoint layouts: kind -> detector."""
    return {kind: d for spec in METHODS.values() for kind, d in spec.detectors.items()}


def load_official_state_dict(model: nn.Module, sd: Mapping[str, Any]) -> Any:
    """Load a published checkpoint of `model`'s method (flat state dict, official names)."""
    return spec_of(model).load_official(model, sd)


def to_official_state_dict(model: nn.Module, **options: Any) -> dict[str, torch.Tensor]:
    """`model`'s state dict in its method's published layout (options: the method's own,
    e.g. TPAVI's `with_unused_branch`, AVSegFormer's `vggish_state`)."""
    return spec_of(model).to_official(model, **options)
