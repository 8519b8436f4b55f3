"""The TPAVI method's losses (AVSBench): segmentation losses and the audio-visual matching (AVM)
losses, with every flag of the published scripts.

Source: the `loss.py` of the published avs_s4, avs_ms3 and avss scripts (Zhou et al., ECCV
2022; IJCV 2024) as they stand today, described in docs/TRAINING.md; docstrings state the
formulas, including the published quirks that are kept on purpose (they change trained
models):

- S4 supervises only frames with an annotation (`gt_valid`; S4 train: the first frame).
- MS3 pools the LOGITS to each stage's size and applies the sigmoid after pooling; the S4
  sa loss applies the sigmoid before pooling.
- The KL form is `kl_div(log_softmax(m), softmax(target), reduction="sum")`: summed over
  channels AND frames (MS3), or summed over channels then averaged over annotated frames
  (AVSS). Every AVM loss is averaged over the stages.
- AVSS builds a class-agnostic object mask, argmax != background. Background is class 0,
  as in the published avss/loss.py since its commit 565587e (2024-09-06); before it, the
  published code used the LAST class (70), which `LossConfig.avss_background = "last"`
  reproduces for runs made before the fix (docs/DIFFERENCES.md).
- `closer_flag` (AVM-VV): the nearest other frame by audio distance, found with
  cdist + 10 * identity (so a frame can pick itself if all others are farther than 10,
  possible only without `norm_fea_flag`); it ignores `threshold_flag`; in AVSS the KL form
  compares with the audio, not with the chosen frame (as published).

Losses are computed in float32 whatever the autocast dtype of the model outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from avsbench.config import LossConfig

__all__ = [
    "s4_seg_loss",
    "ms3_seg_loss",
    "avss_seg_loss",
    "sa_loss",
    "masked_av_loss",
    "avss_masked_av_loss",
    "avss_background_index",
    "tpavi_loss",
]

MASK_POOLING = {"avg": F.adaptive_avg_pool2d, "max": F.adaptive_max_pool2d}
FEATURE_EPS = 1e-6  # official epsilon of the masked feature mean and of the sa loss' log
CLOSER_SELF_PENALTY = 10.0  # official: cdist + 10 * I keeps a frame from picking itself

# The class the AVSS masked AV loss treats as background (LossConfig.avss_background), as a
# function of the number of classes K.
AVSS_BACKGROUND = {
    "first": lambda num_classes: 0,  # class 0: the published avss/loss.py since 2024-09-06
    "last": lambda num_classes: num_classes - 1,  # class K - 1 (70): the published code before
}


def avss_background_index(name: str, num_classes: int) -> int:
    """Class index of `LossConfig.avss_background` ("first" -> 0, "last" -> num_classes - 1)."""
    if name not in AVSS_BACKGROUND:
        raise ValueError(
            f"unknown loss.avss_background {name!r}; valid: {sorted(AVSS_BACKGROUND)} "
            "(first: class 0, the published code today; last: the published code before "
            "2024-09-06)"
        )
    return AVSS_BACKGROUND[name](num_classes)


class ModelOutput(Protocol):
    """What the losses read from the model output (`TPAVIOutput`)."""

    logits: torch.Tensor  # [B*T, K, H, W]
    visual_maps: Sequence[torch.Tensor]  # 4 x [B*T, C, H_s, W_s]
    audio_maps: Sequence[torch.Tensor | None]  # 4 x [B*T, C] (aligned audio) or None


def _weighted_frame_mean(per_frame: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_f(l_f * w_f) / sum_f(w_f). per_frame, weights: [B*T]."""
    weights = weights.to(per_frame.dtype)
    return (per_frame * weights).sum() / weights.sum()


def _check_frames(name: str, logits: torch.Tensor, masks: torch.Tensor, *others: torch.Tensor):
    if logits.dim() != 4 or masks.dim() != 3 or logits.shape[0] != masks.shape[0]:
        raise ValueError(
            f"{name}: expected logits [B*T, K, H, W] and masks [B*T, H, W], got "
            f"{tuple(logits.shape)} and {tuple(masks.shape)}"
        )
    if logits.shape[2:] != masks.shape[1:]:
        raise ValueError(
            f"{name}: logits are {tuple(logits.shape[2:])} but masks {tuple(masks.shape[1:])}; "
            "the model output and the masks must have the same size (data.image_size)"
        )
    for other in others:
        if other.shape != (logits.shape[0],):
            raise ValueError(
                f"{name}: gt_valid must be [B*T] = [{logits.shape[0]}], got {tuple(other.shape)}"
            )


def s4_seg_loss(logits: torch.Tensor, masks: torch.Tensor, gt_valid: torch.Tensor) -> torch.Tensor:
    """S4 `iou_loss`: binary cross entropy on the annotated frames only.

    loss = sum_f w_f * mean_hw BCE(sigmoid(logit_f), mask_f) / sum_f w_f, w = gt_valid.
    In S4 training gt_valid is 1 for the first frame of every clip and 0 elsewhere, so this
    is the published nn.BCELoss over frames 0, 5, 10, ... of the batch (with gt_valid all
    ones, e.g. on validation data, it uses every frame). Computed in the stable
    BCE-with-logits form: equal to sigmoid + nn.BCELoss except where float32 saturates
    (|logit| > ~17), where nn.BCELoss clamps log() at -100 and this form stays exact.

    Args:
        logits: [B*T, 1, H, W]; masks: [B*T, H, W] in {0, 1}; gt_valid: [B*T] in {0, 1}.
    """
    _check_frames("s4_seg_loss", logits, masks, gt_valid)
    bce = F.binary_cross_entropy_with_logits(
        logits[:, 0].float(), masks.float(), reduction="none"
    )  # [B*T, H, W]
    return _weighted_frame_mean(bce.mean(dim=(1, 2)), gt_valid)


def ms3_seg_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """MS3 `iou_loss`: binary cross entropy over all pixels of all frames.

    loss = mean_{f,h,w} BCE(sigmoid(logit), mask) (stable BCE-with-logits form, see
    `s4_seg_loss`). Args: logits [B*T, 1, H, W]; masks [B*T, H, W] in {0, 1}.
    """
    _check_frames("ms3_seg_loss", logits, masks)
    return F.binary_cross_entropy_with_logits(logits[:, 0].float(), masks.float())


def avss_seg_loss(
    logits: torch.Tensor, masks: torch.Tensor, gt_valid: torch.Tensor
) -> torch.Tensor:
    """AVSS `iou_loss`: per-pixel cross entropy, averaged per frame, then weighted by gt_valid.

    loss = sum_f w_f * mean_hw CE(logits_f, mask_f) / sum_f w_f, w = gt_valid.

    Args:
        logits: [B*T, K, H, W]; masks: int64 [B*T, H, W] class ids; gt_valid: [B*T].
    """
    _check_frames("avss_seg_loss", logits, masks, gt_valid)
    if masks.dtype != torch.int64:
        raise ValueError(f"avss_seg_loss: masks must be int64 class ids, got {masks.dtype}")
    ce = F.cross_entropy(logits.float(), masks, reduction="none")  # [B*T, H, W]
    return _weighted_frame_mean(ce.mean(dim=(1, 2)), gt_valid)


def _stage_pair(
    audio_maps: Sequence[torch.Tensor | None],
    visual_maps: Sequence[torch.Tensor],
    stage: int,
    frames: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio [B*T, C] and visual map [B*T, C, h, w] of one stage, float32, validated."""
    if not 0 <= stage < len(visual_maps) or stage >= len(audio_maps):
        raise ValueError(
            f"AVM loss: stage {stage} does not exist (the model has {len(visual_maps)} "
            "stages); check loss.av_stages"
        )
    audio, visual = audio_maps[stage], visual_maps[stage]
    if audio is None:
        raise ValueError(
            f"AVM loss: stage {stage} has no TPAVI block, so no aligned audio "
            "(audio_maps[stage] is None); make loss.av_stages a subset of model.tpavi_stages"
        )
    audio = audio.reshape(-1, audio.shape[-1]).float()  # [B*T, C] (also accepts [B, T, C])
    if visual.dim() != 4 or visual.shape[0] != frames or audio.shape != visual.shape[:2]:
        raise ValueError(
            f"AVM loss, stage {stage}: expected audio [B*T, C] and visual [B*T, C, h, w] with "
            f"B*T = {frames}, got {tuple(audio.shape)} and {tuple(visual.shape)}"
        )
    return audio, visual.float()


def _pool(mask: torch.Tensor, size: Sequence[int], mask_pooling_type: str) -> torch.Tensor:
    """[B*T, 1, H, W] -> [B*T, 1, h, w] by adaptive average or max pooling."""
    if mask_pooling_type not in MASK_POOLING:
        raise ValueError(
            f"unknown mask_pooling_type {mask_pooling_type!r}; valid: {sorted(MASK_POOLING)}"
        )
    return MASK_POOLING[mask_pooling_type](mask, tuple(size))


def _masked_feature(visual: torch.Tensor, mask: torch.Tensor, threshold: bool) -> torch.Tensor:
    """Masked visual feature [B*T, C] from visual [B*T, C, h, w] and mask [B*T, 1, h, w].

    threshold: M = (mask > 0.5), m = sum_hw(v * M) / (sum_hw M + 1e-6); else m = mean_hw(v * mask).
    """
    if threshold:
        binary = (mask > 0.5).float()
        return (visual * binary).sum(dim=(2, 3)) / (binary.sum(dim=(2, 3)) + FEATURE_EPS)
    return (visual * mask).mean(dim=(2, 3))


def _nearest_other(audio: torch.Tensor) -> torch.Tensor:
    """Index [B*T] of the frame with the nearest audio (L2), itself penalised by +10."""
    dist = torch.cdist(audio, audio, p=2)  # [B*T, B*T]
    dist = dist + CLOSER_SELF_PENALTY * torch.eye(dist.shape[0], device=dist.device)
    return dist.argmin(dim=0)


def _kl_per_frame(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_c KL(softmax(target) || softmax(feature)) per frame: [B*T, C] x2 -> [B*T]."""
    return F.kl_div(
        F.log_softmax(feature, dim=-1), F.softmax(target, dim=-1), reduction="none"
    ).sum(-1)


def _check_distance(euclidean: bool, kl: bool) -> None:
    if not (euclidean or kl):
        raise ValueError(
            "masked AV loss: choose its form with euclidean_flag or kl_flag (the published "
            "recipes use kl_flag); with neither the official code fails"
        )


def sa_loss(
    logits: torch.Tensor,
    audio_maps: Sequence[torch.Tensor | None],
    visual_maps: Sequence[torch.Tensor],
    stages: Sequence[int],
    mask_pooling_type: str = "avg",
) -> torch.Tensor:
    """S4 `sa_loss` (`--sa_loss_flag`): audio / masked-visual cosine matching.

    Per stage s: M = pool(sigmoid(logits)) > 0.5 (binary, pooled to the stage's h x w),
    m = sum_hw(v * M) / (sum_hw M + 1e-6), a and m L2-normalised, c = relu(a . m) + 1e-6,
    L_s = mean_f(-log c). Returns mean over `stages` of L_s.

    Args:
        logits: [B*T, 1, H, W]; audio_maps: per stage [B*T, C] or None;
        visual_maps: per stage [B*T, C, h, w]; stages: e.g. (0, 1, 2, 3).
    """
    if not stages:
        raise ValueError("sa_loss: no stage given (loss.av_stages / --sa_loss_stages)")
    prob = torch.sigmoid(logits.float())  # [B*T, 1, H, W]
    total = logits.new_zeros((), dtype=torch.float32)
    for stage in stages:
        audio, visual = _stage_pair(audio_maps, visual_maps, stage, logits.shape[0])
        mask = _pool(prob, visual.shape[-2:], mask_pooling_type)  # [B*T, 1, h, w]
        feature = _masked_feature(visual, mask, threshold=True)  # [B*T, C]
        cosine = (F.normalize(feature, dim=-1) * F.normalize(audio, dim=-1)).sum(-1)  # [B*T]
        total = total + (-torch.log(F.relu(cosine) + FEATURE_EPS)).mean()
    return total / len(stages)


def masked_av_loss(
    logits: torch.Tensor,
    audio_maps: Sequence[torch.Tensor | None],
    visual_maps: Sequence[torch.Tensor],
    stages: Sequence[int],
    *,
    mask_pooling_type: str = "avg",
    threshold: bool = False,
    norm_fea: bool = False,
    closer: bool = False,
    euclidean: bool = False,
    kl: bool = False,
) -> torch.Tensor:
    """MS3 masked AV loss (`--masked_av_flag`), Loss_AVM_AV or, with `closer`, Loss_AVM_VV.

    Per stage s, with M = sigmoid(pool(logits)) (pooling BEFORE the sigmoid):
      AV: m = masked feature of M (threshold: M > 0.5 and sum / (count + 1e-6), else
          mean_hw(v * M)); target = a.
      VV (closer): m = mean_hw(v * M) (threshold ignored); target = m of the frame whose
          audio is nearest (cdist + 10 I, after normalising a if norm_fea).
      norm_fea: a (AV) / m (both) L2-normalised.
      euclidean (checked first): L_s = mean_f ||x - y + 1e-6|| (torch pairwise_distance,
          x = a and y = m for AV; x = target, y = m for VV);
      kl: L_s = sum_{f,c} KL(softmax(target) || softmax(m)) (summed over frames too).
    Returns mean over `stages` of L_s.

    Args: logits [B*T, 1, H, W]; audio_maps / visual_maps as in `sa_loss`.
    """
    _check_distance(euclidean, kl)
    if not stages:
        raise ValueError("masked_av_loss: no stage given (loss.av_stages / --masked_av_stages)")
    logits = logits.float()
    total = logits.new_zeros(())
    for stage in stages:
        audio, visual = _stage_pair(audio_maps, visual_maps, stage, logits.shape[0])
        mask = torch.sigmoid(_pool(logits, visual.shape[-2:], mask_pooling_type))
        if closer:
            if norm_fea:
                audio = F.normalize(audio, dim=-1)
            nearest = _nearest_other(audio)  # [B*T]
            feature = _masked_feature(visual, mask, threshold=False)
            if norm_fea:
                feature = F.normalize(feature, dim=-1)
            first, target = feature[nearest], feature[nearest]
        else:
            feature = _masked_feature(visual, mask, threshold)
            if norm_fea:
                audio, feature = F.normalize(audio, dim=-1), F.normalize(feature, dim=-1)
            first, target = audio, audio
        if euclidean:
            total = total + F.pairwise_distance(first, feature, p=2).mean()
        else:
            total = total + _kl_per_frame(feature, target).sum()
    return total / len(stages)


def avss_masked_av_loss(
    logits: torch.Tensor,
    audio_maps: Sequence[torch.Tensor | None],
    visual_maps: Sequence[torch.Tensor],
    gt_valid: torch.Tensor,
    stages: Sequence[int],
    *,
    mask_pooling_type: str = "avg",
    threshold: bool = False,
    norm_fea: bool = False,
    closer: bool = False,
    euclidean: bool = False,
    kl: bool = False,
    background_index: int = 0,
) -> torch.Tensor:
    """AVSS masked AV loss: as `masked_av_loss` with a class-agnostic object mask and
    per-frame weights.

    O = (argmax_c softmax(logits) != background_index) as float, then M = pool(O) (no
    sigmoid; with threshold M > 0.5 and sum / (count + 1e-6)). Per-frame losses
    l_f (euclidean ||x - y + 1e-6||, or KL summed over channels) are weighted:
    L_s = sum_f(l_f w_f) / sum_f(w_f), w = gt_valid. VV (closer): euclidean compares m with
    the nearest frame's m; KL compares m with the AUDIO (as published).
    Returns mean over `stages` of L_s.

    background_index: the class that is not an object. 0 (the AVSBench background) as the
    published avss/loss.py since 2024-09-06; num_classes - 1 (70) as it was before
    (`avss_background_index("last", K)`), for runs made before the fix.

    Args: logits [B*T, K, H, W]; gt_valid [B*T]; others as in `masked_av_loss`.
    """
    _check_distance(euclidean, kl)
    if not stages:
        raise ValueError("avss_masked_av_loss: no stage given (loss.av_stages)")
    if gt_valid.shape != (logits.shape[0],):
        raise ValueError(
            f"avss_masked_av_loss: gt_valid must be [B*T] = [{logits.shape[0]}], got "
            f"{tuple(gt_valid.shape)}"
        )
    if not 0 <= background_index < logits.shape[1]:
        raise ValueError(
            f"avss_masked_av_loss: background_index {background_index} is not a class of "
            f"logits with {logits.shape[1]} classes"
        )
    with torch.no_grad():
        classes = torch.softmax(logits.float(), dim=1).argmax(dim=1, keepdim=True)
        objects = (classes != background_index).float()  # [B*T, 1, H, W]
    total = logits.new_zeros((), dtype=torch.float32)
    for stage in stages:
        audio, visual = _stage_pair(audio_maps, visual_maps, stage, logits.shape[0])
        mask = _pool(objects, visual.shape[-2:], mask_pooling_type)  # [B*T, 1, h, w]
        if closer:
            if norm_fea:
                audio = F.normalize(audio, dim=-1)
            nearest = _nearest_other(audio)
            feature = _masked_feature(visual, mask, threshold=False)
            if norm_fea:
                feature = F.normalize(feature, dim=-1)
            first, target = feature[nearest], audio  # published: KL against the audio
        else:
            feature = _masked_feature(visual, mask, threshold)
            if norm_fea:
                audio, feature = F.normalize(audio, dim=-1), F.normalize(feature, dim=-1)
            first, target = audio, audio
        if euclidean:
            per_frame = F.pairwise_distance(first, feature, p=2)  # [B*T]
        else:
            per_frame = _kl_per_frame(feature, target)  # [B*T]
        total = total + _weighted_frame_mean(per_frame, gt_valid)
    return total / len(stages)


def tpavi_loss(
    setting: str,
    output: ModelOutput,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss of one batch, as the published train.py of `setting`.

    total = segmentation loss + lambda_1 * AVM loss (the AVM term only with
    `sa_loss_flag` for S4, `masked_av_flag` for MS3/AVSS).

    Args:
        setting: "s4" | "ms3" | "avss".
        output: the model output (logits [B*T, K, H, W], visual_maps, audio_maps).
        masks: [B*T, H, W] (float {0, 1} for S4/MS3, int64 class ids for AVSS).
        gt_valid: [B*T] 1 for annotated frames.
        loss_cfg: the flags (`avsbench.config.LossConfig`).
    Returns:
        (total, parts): the scalar to back-propagate and floats `iou_loss` (segmentation,
        official log name), `sa_loss` (AVM term before lambda_1; 0 when off), `total_loss`.
    Raises FloatingPointError when the total is not finite.
    """
    cfg = loss_cfg
    logits = output.logits
    av_kwargs: dict[str, Any] = dict(
        mask_pooling_type=cfg.mask_pooling_type,
        threshold=cfg.threshold_flag,
        norm_fea=cfg.norm_fea_flag,
        closer=cfg.closer_flag,
        euclidean=cfg.euclidean_flag,
        kl=cfg.kl_flag,
    )
    av: torch.Tensor | None = None
    if setting == "s4":
        if cfg.masked_av_flag:
            raise ValueError(
                "loss.masked_av_flag is an MS3/AVSS option; the S4 AVM loss is loss.sa_loss_flag"
            )
        s4_unused = ("threshold_flag", "norm_fea_flag", "closer_flag", "euclidean_flag", "kl_flag")
        if cfg.sa_loss_flag and any(getattr(cfg, name) for name in s4_unused):
            raise ValueError(
                f"the S4 sa loss has none of the options {s4_unused} (it always thresholds "
                "and normalises, cosine form); set them to False"
            )
        seg = s4_seg_loss(logits, masks, gt_valid)
        if cfg.sa_loss_flag:
            av = sa_loss(
                logits, output.audio_maps, output.visual_maps, cfg.av_stages, cfg.mask_pooling_type
            )
    elif setting in ("ms3", "avss"):
        if cfg.sa_loss_flag:
            raise ValueError(
                f"loss.sa_loss_flag is the S4 option; the {setting.upper()} AVM loss is "
                "loss.masked_av_flag"
            )
        if setting == "ms3":
            seg = ms3_seg_loss(logits, masks)
            if cfg.masked_av_flag:
                av = masked_av_loss(
                    logits, output.audio_maps, output.visual_maps, cfg.av_stages, **av_kwargs
                )
        else:
            seg = avss_seg_loss(logits, masks, gt_valid)
            if cfg.masked_av_flag:
                av = avss_masked_av_loss(
                    logits,
                    output.audio_maps,
                    output.visual_maps,
                    gt_valid,
                    cfg.av_stages,
                    background_index=avss_background_index(cfg.avss_background, logits.shape[1]),
                    **av_kwargs,
                )
    else:
        raise ValueError(f"unknown setting {setting!r}; valid: ['avss', 'ms3', 's4']")

    total = seg if av is None else seg + cfg.lambda_1 * av
    parts = {
        "iou_loss": float(seg.detach()),
        "sa_loss": 0.0 if av is None else float(av.detach()),
        "total_loss": float(total.detach()),
    }
    if not math.isfinite(parts["total_loss"]):
        raise FloatingPointError(
            f"{setting} loss is not finite: {parts}. Causes: a diverging model (lower "
            "train.lr, or use amp 'bf16' instead of 'fp16'), NaN inputs, or a batch without "
            "annotated frames (gt_valid all 0)"
        )
    return total, parts
