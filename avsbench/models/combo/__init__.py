"""COMBO (Yang et al., CVPR 2024, "Cooperation of Multi-order Bilateral Relations"): exact to
its published code (yannqi/COMBO-AVS cb8af1c), on the shared Mask2Former core
(`avsbench.models.mask2former`).

Parts: `config` (`ComboArch`, the published recipes), `fusion` (AVFuse, "MHA-B" / "MHA-None"),
`model` (COMBO + `build_combo`), `official_names` (released checkpoints, both ways),
`detector` (recognising them), `losses` (Mask2Former's set losses + COMBO's cosine loss).
`SPEC` is its entry in `avsbench.models.registry.METHODS`. See docs/COMBO.md.
"""

from __future__ import annotations

from typing import Any

import torch

from avsbench import config as C
from avsbench.data.extra_inputs import MASKIGE
from avsbench.maskiges.inputs import SamMaskigeInputs
from avsbench.models.combo import config, detector, official_names
from avsbench.models.combo.fusion import FUSION_TYPES
from avsbench.models.combo.model import COMBO, build_combo, build_from_config
from avsbench.models.combo.releases import RELEASES
from avsbench.models.contract import check_output, unwrap
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.weight_decay import no_weight_decay
from avsbench.models.spec import MethodFlag, MethodSpec

__all__ = ["SPEC", "COMBO", "build_combo"]


def _loss(
    setting: str,
    output: Any,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: C.LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    check_output(output, Mask2FormerOutput, "combo")
    from avsbench.models.combo.losses import combo_loss  # the loss module is its own part

    return combo_loss(setting, output, masks, gt_valid, loss_cfg)


def _param_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """ "backbone": both visual backbones (published lr x 0.1 for modules named *backbone*),
    "rest": everything else (the scale-factor blocks included)."""
    inner = unwrap(model)
    backbone = [
        *inner.visual.backbone.parameters(),
        *inner.visual.pre_sam_backbone.parameters(),
    ]
    ids = {id(p) for p in backbone}
    return {"backbone": backbone, "rest": [p for p in inner.parameters() if id(p) not in ids]}


def _set_backbone_trainable(model: torch.nn.Module, trainable: bool) -> None:
    unwrap(model).set_backbone_trainable(trainable)


def _summary(model_cfg: C.ModelConfig) -> str:
    arch = model_cfg.arch or config.ComboArch()
    return (
        f"COMBO ({arch.fusion}, {arch.num_queries} queries, {arch.encoder_layers}/"
        f"{arch.decoder_layers} layers, width {arch.hidden_dim}, two backbones)"
    )


SPEC = MethodSpec(
    name="combo",
    description="COMBO's model and recipe (Yang et al., CVPR 2024; docs/COMBO.md)",
    arch_type=config.ComboArch,
    model_type=COMBO,
    output_type=Mask2FormerOutput,
    preset=config.preset,
    synthetic=config.synthetic,
    build=build_combo,
    build_from_config=build_from_config,
    loss=_loss,
    loss_fields=(),
    detectors={"official_combo": detector.OfficialCOMBO()},
    load_official=official_names.load_official_state_dict,
    to_official=official_names.to_official_state_dict,
    summary=_summary,
    flags=(
        MethodFlag(
            "--combo_fusion",
            "model.arch.fusion",
            {
                "choices": FUSION_TYPES,
                "help": "COMBO's audio-visual fusion (published: MHA-B; the AVSS R50 test "
                "config: MHA-None)",
            },
        ),
        MethodFlag(
            "--combo_train_audio_groups",
            "model.arch.train_audio_groups",
            {
                "choices": ("batch", "clip"),
                "help": "groups of COMBO's audio-to-query reshape in training: batch "
                "(published: clips mix) or clip (a variant: each clip's sound stays its own)",
            },
            train_only=True,
        ),
        MethodFlag(
            "--combo_fusion_layer_scale",
            "model.arch.fusion_layer_scale",
            {
                "type": float,
                "help": "start value of the fusion's layer scales (published 1e-4; the "
                "synthetic configuration's is docs/COMBO.md's)",
            },
            train_only=True,
        ),
    ),
    not_architecture=("frames_per_clip", "train_audio_groups", "fusion_layer_scale"),
    param_groups=_param_groups,
    no_weight_decay=no_weight_decay,
    set_backbone_trainable=_set_backbone_trainable,
    target_frames=lambda cfg, gt_valid: gt_valid.reshape(-1) > 0,  # final prediction: read rows
    extra_inputs=(MASKIGE,),
    make_extra_inputs=SamMaskigeInputs(),  # predict: from --sam_weights (avsbench.maskiges)
    releases=RELEASES,  # the zoo rows of its released checkpoints (releases.py)
)
