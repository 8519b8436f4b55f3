"""A model ready for `avsbench predict`: a checkpoint, its VGGish and a device.

Any checkpoint `avsbench.checkpoints.load` reads (a project checkpoint, an official
AVSBench state dict whose architecture is read off its keys) becomes a `Predictor`; the
`--setting` / `--backbone` flags are only checks. docs/PREDICT.md "Command line".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsbench.errors import PredictError  # noqa: F401 (defined in errors.py)


@dataclass
class Predictor:
    """A loaded model ready for `predict_video` (load once, predict many videos).

    model: the method's model in eval mode; vggish: frozen VGGish; config: the avsbench
    Config the model was built from; info: what the summary reports about the checkpoint.
    """

    model: torch.nn.Module
    vggish: torch.nn.Module
    config: Any
    device: torch.device
    info: dict[str, Any]
    # the method's maker of its extra per-frame inputs (rgb uint8 [H, W, 3], image size ->
    # {key: float32 [3, S, S]}), None when it needs none
    make_extra_inputs: Callable[[np.ndarray, int], dict[str, np.ndarray]] | None = None

    @property
    def setting(self) -> str:
        return str(self.config.model.setting)

    @property
    def semantic(self) -> bool:
        from avsbench.config import setting_info

        return setting_info(self.setting).semantic

    @property
    def frames_per_clip(self) -> int:
        return int(self.config.data.frames_per_clip)

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device (None: cuda if available, else cpu); PredictError for a
    name torch does not know or a CUDA device this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise PredictError(
            f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)"
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise PredictError(
                f"--device {device}: no CUDA GPU is available here "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise PredictError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return resolved


def load_predictor(
    weights: str | os.PathLike[str],
    *,
    setting: str | None = None,
    backbone: str | None = None,
    vggish_weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
) -> Predictor:
    """The model of any checkpoint `avsbench.checkpoints.load` reads, with its VGGish.

    The architecture comes from the file (a project checkpoint's config, or read off an
    official state dict's keys); `setting` / `backbone`, if given, are checks: a
    contradiction is an error. Keys cannot tell S4 from MS3 (the same network): an
    official file counts as S4 unless `setting` says ms3, and a ResNet-18 one needs
    `backbone`. `vggish_weights` (vggish-10086976.pth) overrides the config's VGGish file.
    """
    from avsbench import checkpoints
    from avsbench import config as config_lib
    from avsbench.models import registry
    from avsbench.models.backbones.visual import resolve_backbone

    resolved = resolve_device(device)
    path = Path(weights)
    backbone = resolve_backbone(backbone) if backbone else None
    try:
        loaded = checkpoints.load(
            path,
            base_config=registry.preset(setting) if setting else None,
            overrides={"model.backbone": backbone} if backbone else None,
            what="--weights file",
        )
    except checkpoints.CheckpointError as exc:
        raise PredictError(str(exc)) from exc
    cfg = loaded.config
    spec = registry.method_spec(cfg.model.method)
    if spec.extra_inputs and spec.make_extra_inputs is None:
        keys = ", ".join(x.key for x in spec.extra_inputs)
        raise PredictError(
            f"{path}: a {spec.name} model needs a {keys} image per frame, which this version "
            "cannot make for a new video; test it on a dataset that holds them (test.sh)"
        )
    if setting is not None and cfg.model.setting != setting:
        raise PredictError(
            f"{path}: --setting {setting} contradicts the checkpoint, which holds a "
            f"{cfg.model.setting} model; leave --setting out (it is read off the checkpoint)"
        )
    try:
        choice = checkpoints.choose_vggish(
            loaded, cfg, flag=vggish_weights, flag_name="--vggish-weights"
        )
        vggish = checkpoints.build_chosen_vggish(choice, cfg)
    except checkpoints.CheckpointError as exc:
        raise PredictError(str(exc)) from exc
    cfg = config_lib.override(
        cfg, {"model.vggish_weights": choice.weights, "model.vggish_pca": choice.pca}
    )
    loaded.model.to(resolved).eval()
    vggish.to(resolved).eval()
    raw = loaded.raw if isinstance(loaded.raw, dict) else {}
    info: dict[str, Any] = {
        "weights": str(path),
        "checkpoint_format": checkpoints.detectors()[loaded.report.kind].format_name,
        "method": cfg.model.method,
        **{k: raw[k] for k in ("epoch", "best_miou") if isinstance(raw.get(k), int | float)},
        "setting": cfg.model.setting,
        "backbone": cfg.model.backbone,
        "num_classes": int(cfg.model.num_classes),
        "image_size": int(cfg.data.image_size),
        "frames_per_clip": int(cfg.data.frames_per_clip),
        "vggish_weights": choice.weights,
        "vggish": choice.source,  # flag | checkpoint | config | random
    }
    return Predictor(loaded.model, vggish, cfg, resolved, info, spec.make_extra_inputs)
