"""TPAVI, the AVSBench model (Zhou et al., ECCV 2022; IJCV 2024): the default method.

Parts (one module each): `block` (the TPAVI block), `decoder` (dilated projections, fusion
decoder, output head), `model` (`AVSModel` + `build_tpavi_model`), `losses` (the published
segmentation and audio-visual matching losses), `target_frames` (the frames its losses
read), `official_names` (the published checkpoints, both ways), `config` (`TPAVIArch`, the
published recipes). `SPEC` is its entry in `avsbench.models.registry.METHODS`.
"""

from __future__ import annotations

from typing import Any

import torch

from avsbench import config as C
from avsbench.models.contract import check_output
from avsbench.models.spec import MethodSpec
from avsbench.models.tpavi import config, losses, official_names
from avsbench.models.tpavi.block import TPAVI_MODES
from avsbench.models.tpavi.flags import FLAGS
from avsbench.models.tpavi.model import AVSModel, TPAVIOutput, build_from_config, build_tpavi_model
from avsbench.models.tpavi.target_frames import loss_target_frames

__all__ = ["SPEC", "AVSModel", "TPAVIOutput", "build_tpavi_model"]


def _loss(
    setting: str,
    output: Any,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: C.LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    check_output(output, TPAVIOutput, "tpavi")
    return losses.tpavi_loss(setting, output, masks, gt_valid, loss_cfg)


def _check(cfg: C.Config) -> None:
    """Contradictions of TPAVI's architecture and loss flags (ValueError, one message)."""
    arch, loss = cfg.model.arch or config.TPAVIArch(), cfg.train.loss
    if arch.tpavi_stages and not (arch.tpavi_va or arch.tpavi_vv):
        raise ValueError("--tpavi_stages given but neither --tpavi_va_flag nor --tpavi_vv_flag")
    if arch.tpavi_mode not in TPAVI_MODES:
        raise ValueError(f"tpavi_mode {arch.tpavi_mode!r}: valid {list(TPAVI_MODES)}")
    s4 = cfg.model.setting == "s4"
    flag = "--sa_loss_flag" if s4 else "--masked_av_flag"
    wrong = "--masked_av_flag" if s4 else "--sa_loss_flag"
    if loss.masked_av_flag if s4 else loss.sa_loss_flag:
        raise ValueError(f"{wrong} is not a {cfg.model.setting.upper()} loss; use {flag}")
    if not (loss.sa_loss_flag or loss.masked_av_flag):
        return
    stages_flag = "--sa_loss_stages" if s4 else "--masked_av_stages"
    if loss.lambda_1 <= 0:
        raise ValueError(f"{flag} is on but --lambda_1 is {loss.lambda_1}: give --lambda_1 > 0")
    if not arch.tpavi_va:
        raise ValueError(
            f"{flag} needs the audio-visual TPAVI (--tpavi_va_flag): the matching loss uses the "
            "aligned audio it returns"
        )
    outside = sorted(set(loss.av_stages) - set(arch.tpavi_stages))
    if outside:
        raise ValueError(
            f"{stages_flag} {list(loss.av_stages)} includes stages {outside} without a TPAVI "
            f"block (--tpavi_stages {list(arch.tpavi_stages)})"
        )
    if loss.euclidean_flag and loss.kl_flag:
        raise ValueError("--euclidean_flag and --kl_flag contradict each other: give one")


def _summary(model_cfg: C.ModelConfig) -> str:
    arch = model_cfg.arch or config.TPAVIArch()
    return (
        f"TPAVI stages {list(arch.tpavi_stages)} (va {arch.tpavi_va}, vv {arch.tpavi_vv}), "
        f"width {arch.decoder_channels}"
    )


# the LossConfig fields the TPAVI losses read (the published flags)
LOSS_FIELDS = (
    "sa_loss_flag", "masked_av_flag", "lambda_1", "av_stages", "mask_pooling_type",
    "threshold_flag", "norm_fea_flag", "closer_flag", "euclidean_flag", "kl_flag",
    "avss_background",
)  # fmt: skip

SPEC = MethodSpec(
    name="tpavi",
    description="AVSBench's TPAVI model and recipe (Zhou et al., ECCV 2022), the default",
    arch_type=config.TPAVIArch,
    model_type=AVSModel,
    output_type=TPAVIOutput,
    preset=config.preset,
    synthetic=config.synthetic,
    build=build_tpavi_model,
    build_from_config=build_from_config,
    loss=_loss,
    loss_fields=LOSS_FIELDS,
    detectors={"official_tpavi": official_names.OfficialTPAVI()},
    load_official=official_names.load_official_state_dict,
    to_official=official_names.to_official_state_dict,
    summary=_summary,
    flags=FLAGS,
    check=_check,
    target_frames=loss_target_frames,
    not_architecture=config.NOT_ARCHITECTURE,
)
