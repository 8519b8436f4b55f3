"""What a Mask2Former-family model returns: the contract's logits plus the set predictions
its losses read (Mask2Former's `pred_logits`, `pred_masks`, `aux_outputs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from avsbench.models.contract import AVSOutput


def spread_rows(x: torch.Tensor, rows: torch.Tensor | None, total: int) -> torch.Tensor:
    """x [F, ...] of the frames `rows` (indices [F]) -> [total, ...], zeros for the others
    (rows None: x itself)."""
    if rows is None:
        return x
    out = x.new_zeros((total, *x.shape[1:]))
    out[rows] = x
    return out


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

    def scattered(
        self, rows: torch.Tensor | None, total: int, per_frame_extras: tuple[str, ...] = ()
    ) -> Mask2FormerOutput:
        """The output of the decoded frames `rows` (`contract.decoded_rows`; None: all were)
        spread over all `total` frames, zeros elsewhere: the logits, the set predictions and
        the extras named in `per_frame_extras` (the others, e.g. prototypes, are not per
        frame)."""
        if rows is None:
            return self

        def scatter(x: torch.Tensor) -> torch.Tensor:  # [n, ...] -> [total, ...]
            return spread_rows(x, rows, total)

        extras = {k: scatter(v) if k in per_frame_extras else v for k, v in self.extras.items()}
        return Mask2FormerOutput(
            logits=scatter(self.logits),
            pred_logits=None if self.pred_logits is None else scatter(self.pred_logits),
            pred_masks=None if self.pred_masks is None else scatter(self.pred_masks),
            aux_outputs=[(scatter(a), scatter(b)) for a, b in self.aux_outputs],
            extras=extras,
        )
