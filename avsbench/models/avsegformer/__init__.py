"""AVSegFormer (Gao et al., AAAI 2024): the second method, exact to its published code.

Parts (one module each): `transformer` (deformable encoder, query decoder), `query_generator`,
`mixer` (cross-modal mixer), `head` (AVSegHead), `model` (AVSegFormer + `build_avsegformer`),
`losses` (dice or CE + 0.1 x mix), `official_names` (released checkpoints, both ways),
`config` (`AVSegFormerArch`, the published recipes). The deformable attention and the
positions are shared (`avsbench.models.backbones`). `SPEC` is its entry in
`avsbench.models.registry.METHODS`. See docs/AVSEGFORMER.md.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from avsbench import config as C
from avsbench.models.avsegformer import config, official_names
from avsbench.models.avsegformer.losses import avsegformer_loss
from avsbench.models.avsegformer.model import (
    AVSegFormer,
    AVSegFormerOutput,
    build_avsegformer,
    build_from_config,
)
from avsbench.models.avsegformer.releases import RELEASES
from avsbench.models.contract import check_output, unwrap
from avsbench.models.spec import MethodFlag, MethodSpec

__all__ = ["SPEC", "AVSegFormer", "AVSegFormerOutput", "build_avsegformer"]


def _loss(
    setting: str,
    output: Any,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: C.LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    check_output(output, AVSegFormerOutput, "avsegformer")
    return avsegformer_loss(
        setting, output.logits, output.mask_feature, masks, gt_valid,
        mix_weight=loss_cfg.mix_loss_weight,
    )  # fmt: skip


def _set_backbone_trainable(model: torch.nn.Module, trainable: bool) -> None:
    """AVSegFormer's own freezing (`AVSegFormer.set_backbone_trainable`)."""
    unwrap(model).set_backbone_trainable(trainable)


def _summary(model_cfg: C.ModelConfig) -> str:
    arch = model_cfg.arch or config.AVSegFormerArch()
    return (
        f"AVSegFormer ({arch.num_queries} queries, {arch.encoder_layers}/{arch.decoder_layers} "
        f"layers, width {arch.embed_dim})"
    )


def _width(text: str) -> int:
    value = int(text)
    if value < 32 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32, got {value}")
    return value


SPEC = MethodSpec(
    name="avsegformer",
    description="AVSegFormer's model and recipe (Gao et al., AAAI 2024; docs/AVSEGFORMER.md)",
    arch_type=config.AVSegFormerArch,
    model_type=AVSegFormer,
    output_type=AVSegFormerOutput,
    preset=config.preset,
    synthetic=config.synthetic,
    build=build_avsegformer,
    build_from_config=build_from_config,
    loss=_loss,
    loss_fields=("mix_loss_weight",),
    detectors={"official_avsegformer": official_names.OfficialAVSegFormer()},
    load_official=official_names.load_official_state_dict,
    to_official=official_names.to_official_state_dict,
    summary=_summary,
    set_backbone_trainable=_set_backbone_trainable,
    target_frames=lambda cfg, v: v.reshape(-1) > 0 if cfg.model.setting != "ms3" else None,
    flags=(
        MethodFlag(
            "--decoder_channels",
            "model.arch.embed_dim",
            {"type": _width, "help": "model width (AVSegFormer published: 256)"},
        ),
    ),
    releases=RELEASES,  # the zoo rows of its released checkpoints (releases.py)
)
