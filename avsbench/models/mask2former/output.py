"""What a Mask2Former-family model returns: the contract's logits plus the set predictions
its losses read (Mask2Former's `pred_logits`, `pred_masks`, `aux_outputs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from avsbench.models.contract import AVSOutput


@dataclass
class Mask2FormerOutput(AVSOutput):
    """logits: [B*T, K, H, W] as every method's (S4/MS3: K = 1, the sigmoid logit
        `sem_seg[1] - sem_seg[0]`, so sigmoid(logit) = softmax(sem_seg)[1]; AVSS: K = 71, the
        semantic scores `sem_seg` themselves, whose argmax is the prediction).
    pred_logits: [B*T, Q, K' + 1] class logits of the final layer (K' = 2 or 71, + no-object).
    pred_masks: [B*T, Q, S/4, S/4] mask logits of the final layer.
    aux_outputs: (pred_logits, pred_masks) of the initial queries and of every earlier
        decoder layer, in order (deep supervision).
    extras: method-specific tensors its loss reads (VCT: "feat_audio" [B*T, 256],
        "feat_proto" [C, 256], "logit_scale" []).
    """

    pred_logits: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    aux_outputs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
