"""VCT's training loss (Huang et al., CVPR 2025): Mask2Former's set criterion plus, for S4 and
AVSS, its prototype loss (spec: VCT and COMBO, "Training recipe", Losses).

Source: `spyflying/VCT_AVS` at 9a18d2f, `models/modeling/criterion_s4_pac.py` (S4),
`criterion_ss_pac.py` (AVSS), `criterion.py` (MS3), `prototype_loss`; weights from
`configs/*_swinb_384/COMBO_SWINB.yaml` (CLASS 2, MASK 5, DICE 5, PROTO 1 for S4/AVSS, 0 for
MS3, COSINE 0: VCT has no cosine loss).

    total = sum over the 10 predictions of (2 loss_ce + 5 loss_mask + 5 loss_dice)
          + 1 loss_proto                                        (S4, AVSS)

    loss_proto = mean over the F annotated frames and C prototypes of
                 BCE-with-logits(exp(logit_scale) cos(feat_audio_f, feat_proto_c), y_fc)

y: S4 one-hot of the clip's category among the 23, in VCT's own order
(`VCT_S4_CATEGORY_IDS`, from its `register_avss4_sem.py`, not the AVSBench release order);
AVSS multi-hot of the classes present in the frame's GT (background included, 255 not).
The published code takes plain dot products of features its model has L2-normalised; the
cosine here is the same number (and the same gradient) for such features.
`logit_scale` is a trained scalar (published: `criterion.logit_scale`, initialised to
log(1 / 0.07)); here the model returns it in `extras`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from avsbench.models.contract import check_output
from avsbench.models.mask2former.criterion import (
    PUBLISHED_CRITERION,
    CriterionConfig,
    set_criterion,
    weighted_set_total,
)
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.mask2former.targets import SemanticTarget, num_classes

PROTO_WEIGHT = 1.0  # PROTO_WEIGHT of the S4 and AVSS configs (MS3: no prototypes)
PROTO_SETTINGS = ("s4", "avss")  # the settings whose VCT model has prototypes
S4_NUM_PROTOTYPES = 23

# VCT's S4 category labels (1-based; prototype index = label - 1), `register_avss4_sem.py`.
VCT_S4_CATEGORY_IDS = {
    "helicopter": 1,
    "mynah_bird_singing": 2,
    "typing_on_computer_keyboard": 3,
    "playing_violin": 4,
    "playing_glockenspiel": 5,
    "playing_piano": 6,
    "lions_roaring": 7,
    "baby_laughter": 8,
    "male_speech": 9,
    "lawn_mowing": 10,
    "playing_ukulele": 11,
    "playing_tabla": 12,
    "driving_buses": 13,
    "cap_gun_shooting": 14,
    "chainsawing_trees": 15,
    "playing_acoustic_guitar": 16,
    "cat_meowing": 17,
    "female_singing": 18,
    "ambulance_siren": 19,
    "dog_barking": 20,
    "horse_clip-clop": 21,
    "coyote_howling": 22,
    "race_car": 23,
}


def s4_prototype_index(category: str) -> int:
    """0-based prototype of an S4 category name (VCT's order); ValueError listing the valid."""
    if category not in VCT_S4_CATEGORY_IDS:
        raise ValueError(f"unknown S4 category {category!r}; valid: {sorted(VCT_S4_CATEGORY_IDS)}")
    return VCT_S4_CATEGORY_IDS[category] - 1


def prototype_targets(
    setting: str,
    rows: torch.Tensor,
    targets: list[SemanticTarget],
    num_frames: int,
    categories: Sequence[str] | None,
) -> torch.Tensor:
    """y [F, C] in {0, 1} for the annotated rows [F] of the N = num_frames frames.

    S4: one-hot of the category of the row's clip (clip = row // T, T = N / B with B =
    len(categories)); AVSS: multi-hot of the target's labels.
    """
    if setting == "avss":
        y = torch.zeros(len(targets), num_classes(setting))
        for frame, target in enumerate(targets):
            y[frame, target.labels.cpu()] = 1.0
        return y
    if categories is None:
        raise ValueError(
            "VCT's S4 prototype loss needs each clip's category (the batch's 'category'): "
            "pass categories=batch['category'] to vct_loss"
        )
    if len(categories) == 0 or num_frames % len(categories):
        raise ValueError(f"{len(categories)} categories for {num_frames} frames (B clips x T)")
    frames_per_clip = num_frames // len(categories)
    y = torch.zeros(len(rows), S4_NUM_PROTOTYPES)
    for frame, row in enumerate(rows.tolist()):
        y[frame, s4_prototype_index(categories[row // frames_per_clip])] = 1.0
    return y


def prototype_loss(
    feat_audio: torch.Tensor,
    feat_proto: torch.Tensor,
    logit_scale: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """BCE-with-logits of exp(logit_scale) x cos(audio, prototype), mean over [F, C].

    feat_audio: [F, D]; feat_proto: [C, D] (shared) or [F, C, D]; logit_scale: [];
    y: [F, C] -> scalar.
    """
    audio = F.normalize(feat_audio.float(), dim=-1)  # [F, D]
    proto = F.normalize(feat_proto.float(), dim=-1)
    if proto.ndim == 2:
        cosine = audio @ proto.T  # [F, C]
    else:
        cosine = torch.einsum("fd,fcd->fc", audio, proto)  # [F, C]
    if cosine.shape != y.shape:
        raise ValueError(
            f"{tuple(cosine.shape)} audio-prototype similarities for targets {tuple(y.shape)}"
        )
    logits = logit_scale.float().exp() * cosine
    return F.binary_cross_entropy_with_logits(logits, y.to(logits))


def vct_loss(
    setting: str,
    output: Mask2FormerOutput,
    masks: torch.Tensor,
    gt_valid: torch.Tensor,
    loss_cfg: Any = None,
    *,
    categories: Sequence[str] | None = None,
    criterion: CriterionConfig = PUBLISHED_CRITERION,
    proto_weight: float = PROTO_WEIGHT,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total VCT training loss of one batch.

    Args:
        setting: "s4" | "ms3" | "avss".
        output: the VCT model's output: pred_logits [N, Q, K+1], pred_masks [N, Q, h, w],
            aux_outputs (9 earlier predictions), N = B*T; S4/AVSS extras "feat_audio"
            [N, D], "feat_proto" [C, D] (C = 23 | 71), "logit_scale" [].
        masks: [N, H, W], float {0, 1} (S4, MS3) or int64 class ids (AVSS; 255 ignored).
        gt_valid: [N], 1 for annotated frames (the only ones any term reads).
        loss_cfg: the engine's LossConfig; no field of it applies to VCT.
        categories: S4 only: the B clips' category names (the batch's "category").
        generator: for the random points (tests); None: the device's global generator.
    Returns:
        (total, parts): the scalar to back-propagate and the log entries `loss_ce`,
        `loss_mask`, `loss_dice` (weighted, summed over the predictions), `loss_proto`
        (weighted; S4/AVSS) and `total_loss`, as floats.
    Raises FloatingPointError when the total is not finite.
    """
    del loss_cfg  # VCT reads none of the engine's loss options
    check_output(output, Mask2FormerOutput, "vct")
    losses, rows, targets = set_criterion(setting, output, masks, gt_valid, criterion, generator)
    total, parts = weighted_set_total(losses, criterion)
    if setting in PROTO_SETTINGS and proto_weight:
        missing = [k for k in ("feat_audio", "feat_proto", "logit_scale") if k not in output.extras]
        if missing:
            raise ValueError(f"VCT's {setting} prototype loss needs output.extras {missing}")
        extras = output.extras
        y = prototype_targets(setting, rows, targets, masks.shape[0], categories)
        feat_proto = extras["feat_proto"]
        rows_here = rows.to(extras["feat_audio"].device)
        if feat_proto.ndim == 3:  # one copy per frame, as the published [N, C, D]
            feat_proto = feat_proto[rows_here]
        proto = proto_weight * prototype_loss(
            extras["feat_audio"][rows_here], feat_proto, extras["logit_scale"], y
        )
        total = total + proto
        parts["loss_proto"] = float(proto.detach())
    if not torch.isfinite(total):
        raise FloatingPointError(f"VCT loss is not finite: {total.item()}")
    parts["total_loss"] = float(total.detach())
    return total, parts
