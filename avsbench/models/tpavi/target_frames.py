"""Which frames the training losses read: the model decodes only those (an exact saving).

The published S4 recipe supervises only the annotated frame of each training clip (the
seg loss weights frames by `gt_valid`, docs/TRAINING.md) and has no sa loss: the decoder
and output head of the other four frames are computed for nothing. `target_frames` tells
the TPAVI model (`AVSModel.forward(..., target_frames=)`) to decode only the frames the
losses read; the gradient is the same, because an unread frame contributes an exact zero
(docs/ARCHITECTURE.md, "Exact savings").

    S4, no sa loss       -> the annotated frames (gt_valid > 0)
    S4 with the sa loss  -> every frame (it pools the logits of every frame)
    AVSS, no masked AV   -> the annotated frames (its CE weights frames by gt_valid: in
                            training v1s has 1 of its 10 padded frames, v1m 5, v2 10)
    AVSS with masked AV  -> every frame (the published recipe)
    MS3                  -> every frame (all five are annotated and read)

It is the TPAVI spec's `target_frames` (other methods declare their own, or none).
"""

from __future__ import annotations

import torch

from avsbench import config as C


def loss_target_frames(cfg: C.Config, gt_valid: torch.Tensor) -> torch.Tensor | None:
    """[B*T] bool of the frames the losses of `cfg` read, or None for every frame.

    gt_valid: [B*T], 1 for annotated frames.
    """
    loss, setting = cfg.train.loss, cfg.model.setting
    if (setting == "s4" and not loss.sa_loss_flag) or (
        setting == "avss" and not loss.masked_av_flag
    ):
        return gt_valid.reshape(-1) > 0  # [B*T]
    return None
