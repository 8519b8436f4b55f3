"""Checkpoints in, models out: the one way a file becomes a model (docs/ARCHITECTURE.md,
"A checkpoint through checkpoints.load").

    loaded = load("S4_best.pth")            # or an official AVSBench .pth: no flags needed
    loaded.model, loaded.config, loaded.report, loaded.vggish_state, loaded.raw

`load` reads the file with `safe_torch_load` (weights_only: no code from the file ever
runs), asks the detectors of `detectors()` in table order which kind of file it is, lets that
detector write the config (a project checkpoint stores its own; an official state dict has
its architecture read off its keys), builds the model and has the detector copy the
tensors in, every misfit reported by the one `KeyReport` (`avsbench.state_dicts`). Learnt
from detectron2's `Checkpointer` (one loader dispatching on the file's format) and
segment-anything's `build_sam.py` (build, then load), not copied.

A method's official layouts are read by the detectors its spec lists (the `Detector`
protocol of `avsbench.models.spec`: `description`, `format_name`, `stores_config`,
`matches(obj)`, `config(obj, base)`, `load_into(model, obj)`, `vggish_state(obj)`), e.g.
`OfficialTPAVI` in `models/tpavi/official_names.py`; `detectors()` asks the registry for
them, after the project's own format. Nothing here knows a method's name.

Saving (atomic files, RNG states, the "avsbench/1" dict) is `avsbench.engine.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsbench import config as C
from avsbench.models import registry
from avsbench.models.spec import Detector
from avsbench.state_dicts import (
    CheckpointError,
    CheckpointNotFound,
    KeyReport,
    LoadReport,
    safe_torch_load,
)

__all__ = [
    "FORMAT",
    "CheckpointError",
    "CheckpointNotFound",
    "Detector",
    "KeyReport",
    "LoadReport",
    "Loaded",
    "VGGishChoice",
    "ProjectCheckpoint",
    "detect",
    "detectors",
    "build_chosen_vggish",
    "choose_vggish",
    "is_project_checkpoint",
    "load",
    "safe_torch_load",
]

FORMAT = "avsbench/1"  # the "format" entry of the project's checkpoints

# ModelConfig fields a project checkpoint does not fix (the rest is its architecture; a
# method's spec adds its own `not_architecture` fields of `model.arch`)
NOT_ARCHITECTURE = ("backbone_weights", "vggish_weights", "vggish_pca")


@dataclass
class Loaded:
    """A checkpoint turned into a model (`load`)."""

    model: nn.Module  # weights loaded, in train mode and on the CPU: the caller moves it
    config: C.Config  # the config the model was built with (backbone_weights None)
    report: LoadReport
    vggish_state: dict[str, torch.Tensor] | None  # VGGish tensors in the file, if any
    raw: Any  # the loaded object (resume reads optimizer, scaler, rng, epoch from it)


# ---------------------------------------------------------------------------------------
# The project's own checkpoints
# ---------------------------------------------------------------------------------------
def is_project_checkpoint(obj: Any) -> bool:
    """True for a dict written by this project (format avsbench/*, model, config)."""
    return (
        isinstance(obj, dict)
        and str(obj.get("format", "")).startswith("avsbench/")
        and isinstance(obj.get("model"), Mapping)
        and isinstance(obj.get("config"), Mapping)
    )


class ProjectCheckpoint:
    """`{"format": "avsbench/1", "model": state dict, "config": to_dict(cfg), ...}`."""

    description = (
        "a project checkpoint (a dict with 'format': 'avsbench/1', 'model' and 'config', "
        "e.g. <session>_best.pth or last.pth)"
    )
    format_name = FORMAT  # summary.json
    stores_config = True

    def matches(self, obj: Any) -> bool:
        return is_project_checkpoint(obj)

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        """The stored config. With `base` (the user's config.py): its data root, and its
        VGGish files when the stored ones are gone (VGGish is not in the checkpoint)."""
        if obj["format"] != FORMAT:
            raise ValueError(f"format {obj['format']!r}: this version of avsbench reads {FORMAT}")
        try:
            cfg = registry.config_from_dict(obj["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the stored config is not valid ({err})") from err
        if base is None:
            return cfg
        cfg = C.override(cfg, {"data.root": base.data.root})
        stored = cfg.model.vggish_weights
        if stored and not Path(stored).is_file() and base.model.vggish_weights:
            vggish = {"model.vggish_weights": base.model.vggish_weights}
            cfg = C.override(cfg, {**vggish, "model.vggish_pca": base.model.vggish_pca})
        return cfg

    def load_into(self, model: nn.Module, obj: Any) -> LoadReport:
        state = obj["model"]
        KeyReport.compare(model.state_dict(), state).check(
            "the checkpoint does not fit this model:",
            "its architecture is the one in its 'config' entry",
        )
        model.load_state_dict(state, strict=True)
        return LoadReport(loaded=len(state))

    def vggish_state(self, obj: Any) -> None:
        return None  # trained with a frozen VGGish from its own file


def detectors() -> dict[str, Detector]:
    """kind -> detector, the project's format first, then every method's official layouts
    (`registry.official_detectors`); the first that matches a file wins."""
    return {"project": ProjectCheckpoint(), **registry.official_detectors()}


# ---------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------
def detect(obj: Any, kinds: Sequence[str] | None = None) -> str | None:
    """The first kind of `detectors()` (among `kinds`, if given) whose detector matches."""
    for kind, detector in detectors().items():
        if (kinds is None or kind in kinds) and detector.matches(obj):
            return kind
    return None


def load(
    path: str | os.PathLike,
    *,
    base_config: C.Config | None = None,
    overrides: Mapping[str, Any] | Callable[[C.Config], Mapping[str, Any]] | None = None,
    expect_setting: str | None = None,
    kinds: Sequence[str] | None = None,
    into: nn.Module | None = None,
    what: str = "checkpoint",
    obj: Any = None,
) -> Loaded:
    """Read any checkpoint kind of `detectors()` and return the model with its weights.

    base_config: the user's config (paths, runtime); a project checkpoint keeps its own
        architecture, an official one has it read off its keys over `base_config` (or
        over the preset of its setting: no flags are needed).
    overrides: dotted config changes (flags given), or a function of the file's config that
        returns them (flags that depend on its method). On a file that stores its config (a
        project checkpoint) a change of its architecture (any model field but
        NOT_ARCHITECTURE or the method's `not_architecture`) is refused.
    expect_setting: refuse a model of another setting (e.g. an S4 model for the MS3 test).
    kinds: accept only these kinds (e.g. ("project",) for --resume).
    into: copy the tensors into this model instead of building one (training's --weights:
        the run's own architecture; the file must fit it). `config` is then the file's.
    what: how messages name the file ("--weights file").
    obj: the file's content when the caller has read it already (`safe_torch_load`): the
        file is then not read again.
    Raises CheckpointError (CheckpointNotFound for a missing file) naming the file.
    """
    path = Path(path)
    if obj is None:
        obj = safe_torch_load(path, what)
    known = detectors()
    kind = detect(obj, kinds)
    if kind is None:
        wanted = [known[k].description for k in (kinds or known) if k in known]
        raise CheckpointError(
            f"{what} {path} is not a checkpoint this project reads; expected " + " or ".join(wanted)
        )
    detector = known[kind]
    if base_config is None and expect_setting is not None and not detector.stores_config:
        base_config = registry.preset(expect_setting)  # keys cannot tell S4 from MS3
    try:
        cfg = detector.config(obj, base_config)
    except ValueError as err:
        raise CheckpointError(f"{what} {path}: {err}") from err
    if callable(overrides):
        try:
            overrides = overrides(cfg)
        except ValueError as err:
            raise CheckpointError(f"{what} {path}: {err}") from err
    asked = (overrides or {}).get("model.method")
    if asked is not None and asked != cfg.model.method:
        raise CheckpointError(
            f"{what} {path} holds a {cfg.model.method} model, not {asked}: leave --method "
            "out (it is read off the checkpoint)"
        )
    if overrides:
        fixed = detector.stores_config
        cfg = _with_overrides(cfg, dict(overrides), fixed=fixed, source=f"{what} {path}")
    setting = cfg.model.setting
    if expect_setting is not None and setting != expect_setting:
        raise CheckpointError(
            f"{what} {path} holds an {C.SETTINGS[setting].title} model, not "
            f"{C.SETTINGS[expect_setting].title}: use avs_scripts/"
            f"{C.SETTINGS[setting].script_folder}/"
        )
    model = into
    if model is None:
        cfg = C.override(cfg, {"model.backbone_weights": None})  # the file holds every weight
        try:
            model = registry.build_model_for(cfg)
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{what} {path}: cannot build its model ({err})") from err
    try:
        report = detector.load_into(model, obj)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{what} {path}: {err}") from err
    vggish_state = detector.vggish_state(obj)
    vggish = "checkpoint" if vggish_state else (cfg.model.vggish_weights or "random (no file)")
    report = dataclasses.replace(report, kind=kind, path=str(path), vggish=str(vggish))
    return Loaded(model=model, config=cfg, report=report, vggish_state=vggish_state, raw=obj)


def _with_overrides(
    cfg: C.Config, overrides: dict[str, Any], *, fixed: bool, source: str
) -> C.Config:
    """`cfg` with `overrides`; with `fixed`, changes of the architecture are refused."""
    try:
        new = C.override(cfg, overrides)
    except KeyError as err:
        raise CheckpointError(f"{source}: {err.args[0]}") from err
    if fixed:
        free = set(NOT_ARCHITECTURE) | {
            f"arch.{name}" for name in registry.method_spec(cfg.model.method).not_architecture
        }
        old_model, new_model = (
            C.flat_fields(C.to_dict(cfg)["model"]),
            C.flat_fields(C.to_dict(new)["model"]),
        )
        clash = [
            f"model.{k}: checkpoint {old_model[k]!r}, asked {new_model.get(k)!r}"
            for k in old_model
            if k not in free and old_model[k] != new_model.get(k)
        ]
        if clash:
            raise CheckpointError(
                f"{source} was trained with another architecture than asked for ("
                + "; ".join(clash)
                + "): leave those flags out, the model is rebuilt from the checkpoint's config"
            )
    return new


# ---------------------------------------------------------------------------------------
# Which VGGish (docs/RELIABILITY.md, "VGGish weights")
# ---------------------------------------------------------------------------------------
def _vggish_fix(flag_name: str) -> str:
    config_py = ", or set VGGISH_WEIGHTS in config.py" if flag_name == "--vggish_weights" else ""
    return (
        f"pass {flag_name} PATH/vggish-10086976.pth{config_py} (see pretrained_backbones/"
        "README.md). A random VGGish gives meaningless audio features: it is used only with "
        "--synthetic or for a checkpoint trained with one"
    )


@dataclass(frozen=True)
class VGGishChoice:
    """Where the frozen VGGish of a command comes from (`choose_vggish`)."""

    source: str  # "flag" | "checkpoint" | "config" | "random"
    weights: str | None = None  # the file (flag, config); None for checkpoint / random
    pca: str | None = None  # the PCA file of the config, if any
    state: dict[str, torch.Tensor] | None = None  # the checkpoint's VGGish tensors

    def describe(self) -> dict[str, Any]:
        """What metrics.json / summary.json record."""
        return {"source": self.source, "weights": self.weights, "pca": self.pca}


def choose_vggish(
    loaded: Loaded | None,
    config: C.Config,
    *,
    flag: str | os.PathLike | None = None,
    synthetic: bool = False,
    flag_name: str = "--vggish_weights",
) -> VGGishChoice:
    """The VGGish weights of test.sh, train.sh and predict, in this order: the flag, the
    checkpoint's own tensors, the config's file (config.py's, or the one a project
    checkpoint was trained with). Without any: a random VGGish if the checkpoint itself was
    trained with one (a project checkpoint whose config has no VGGish file) or, for a new
    training run (`loaded` None), with `synthetic`; else CheckpointError saying what to
    pass. A file that is named but missing is an error too.

    config: `loaded.config` for a checkpoint, the run's config for a new training run."""
    pca = config.model.vggish_pca
    if flag is not None:
        if not Path(flag).is_file():
            raise CheckpointError(f"{flag_name} {flag}: VGGish weights not found")
        return VGGishChoice("flag", str(flag), pca)
    if loaded is not None and loaded.vggish_state:
        return VGGishChoice("checkpoint", None, pca, loaded.vggish_state)
    held = f"{loaded.report.path}: the checkpoint holds no VGGish weights and " if loaded else ""
    weights = config.model.vggish_weights
    if weights:
        if not Path(weights).is_file():
            fix = _vggish_fix(flag_name)
            raise CheckpointError(f"{held}VGGish weights not found: {weights}; {fix}")
        return VGGishChoice("config", str(weights), pca)
    trained_random = loaded is not None and loaded.report.kind == "project"
    if trained_random or (loaded is None and synthetic):
        return VGGishChoice("random")
    raise CheckpointError(f"{held}no VGGish weights are configured; {_vggish_fix(flag_name)}")


def build_chosen_vggish(choice: VGGishChoice, config: C.Config) -> nn.Module:
    """The frozen VGGish of `choice` (architecture of `config.model`)."""
    from avsbench.models import registry
    from avsbench.models.backbones.vggish import build_vggish, for_audio_input

    files = {"model.vggish_weights": choice.weights, "model.vggish_pca": choice.pca}
    if choice.state is not None:
        files = {"model.vggish_weights": None, "model.vggish_pca": None}
    try:
        vggish = build_vggish(C.override(config, files).model)
        if choice.state is not None:
            vggish.load_official_state_dict(choice.state, pca=choice.pca)
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(f"cannot load the VGGish weights ({err})") from err
    audio_input = registry.method_spec(config.model.method).audio_input
    return for_audio_input(vggish, audio_input).requires_grad_(False).eval()
