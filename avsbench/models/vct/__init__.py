"""VCT (Huang et al., CVPR 2025, "Vision-Centric Transformer for Audio-Visual Segmentation"):
exact to its published code (spyflying/VCT_AVS 9a18d2f), on the shared Mask2Former core
(`avsbench.models.mask2former`).

Parts: `swin` (Swin-B, D2's names both ways), `query_block` (audio level, vision-centric
query block with its hard assignment, prototype features), `model` (VCT + `build_vct`),
`official_names` (released checkpoints, both ways, and their detector), `config` (`VCTArch`,
whose input side sizes the query mixer, published 384; the published recipes), `losses`
(Mask2Former's set losses + the prototype loss). `SPEC` is its entry in
`avsbench.models.registry.METHODS`. See docs/VCT.md.
"""

from __future__ import annotations

from typing import Any

import torch

from avsbench import config as C
from avsbench.data.extra_inputs import MASKIGE
from avsbench.maskiges.inputs import SamMaskigeInputs
from avsbench.models.contract import check_output, unwrap
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.weight_decay import no_weight_decay
from avsbench.models.spec import MethodSpec
from avsbench.models.vct import config, official_names
from avsbench.models.vct.model import VCT, VCTTrace, build_from_config, build_vct
from avsbench.models.vct.releases import RELEASES

__all__ = ["SPEC", "VCT", "VCTTrace", "build_vct"]


def _loss(
    setting: str,
    output: Any,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: C.LossConfig,
    category: Any = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """`vct_loss`; category: the batch's clip categories (S4's prototype targets)."""
    check_output(output, Mask2FormerOutput, "vct")
    from avsbench.models.vct.losses import vct_loss  # the loss module is its own part

    return vct_loss(setting, output, masks, gt_valid, loss_cfg, categories=category)


def _param_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """ "backbone": both Swin backbones (published lr x 0.1 for modules named *backbone*),
    "rest": everything else (scale-factor blocks, head, `logit_scale`)."""
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
    arch = model_cfg.arch or config.VCTArch()
    protos = arch.prototypes_for(model_cfg.setting)
    return (
        f"VCT (two Swin width {arch.swin_embed_dim} depths {list(arch.swin_depths)}, "
        f"{arch.num_queries} queries, {arch.encoder_layers}/{arch.decoder_layers} layers, width "
        f"{arch.hidden_dim}, {protos or 'no'} prototypes, {arch.image_size} x {arch.image_size})"
    )


SPEC = MethodSpec(
    name="vct",
    description="VCT's model and recipe (Huang et al., CVPR 2025; docs/VCT.md)",
    arch_type=config.VCTArch,
    model_type=VCT,
    output_type=Mask2FormerOutput,
    preset=config.preset,
    synthetic=config.synthetic,
    build=build_vct,
    build_from_config=build_from_config,
    loss=_loss,
    loss_fields=(),
    detectors={"official_vct": official_names.OfficialVCT()},
    load_official=official_names.load_official_state_dict,
    to_official=official_names.to_official_state_dict,
    summary=_summary,
    not_architecture=("drop_path_rate",),
    check=config.check,
    param_groups=_param_groups,
    no_weight_decay=no_weight_decay,
    set_backbone_trainable=_set_backbone_trainable,
    target_frames=lambda cfg, gt_valid: gt_valid.reshape(-1) > 0,  # its losses read no other
    extra_inputs=(MASKIGE,),
    make_extra_inputs=SamMaskigeInputs(),  # predict: from --sam_weights (avsbench.maskiges)
    loss_batch_keys=("category",),
    audio_input="conv_map",
    releases=RELEASES,  # the zoo rows of its released checkpoints (releases.py)
)
