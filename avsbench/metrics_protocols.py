"""The metrics as VCT's and COMBO's own evaluators compute them, beside the official ones.

Source: `models/evaluation/sem_seg_evaluation.py` (S4, MS3) and `sem_seg_evaluation_ss.py`
(AVSS) of VCT (`spyflying/VCT_AVS` 9a18d2f) and COMBO (`yannqi/COMBO-AVS` cb8af1c; the two
files are the same in both). Their published tables come from detectron2's test loader,
which gives the evaluator ONE CLIP per call (`process`), so:

- S4/MS3 (`PerClipBinaryMetrics`): per clip, with p = softmax(sem_seg)[1] (for this project's
  contract sigmoid(logit), since logit = sem_seg[1] - sem_seg[0]), J = the mean over the
  clip's frames of AVSBench's per-frame IoU (p > 0.5; an empty ground truth scores the
  true-negative fraction) and F = max over the 255 thresholds of the mean F curve of the
  clip's non-empty frames (0 if it has none); the reported values are the means over clips.
  This is the official per-batch protocol at a test batch of one clip, so it does not depend
  on the test batch the project runs at.
- AVSS (`VctComboSemanticMetrics`): argmax over the 71 classes; per frame and class the
  `torch.histc` counts TP, predicted and labelled pixels, where a ground-truth value 255 (the
  detectron2 ignore label) is outside the histogram of the labels but its pixels still count
  as predicted; per class IoU = TP / (union + 2.22e-16) and F (beta^2 0.3, NaN -> 0) are
  summed over frames and divided by the number of frames where the class is predicted or
  labelled; mIoU and F are the means over ALL classes (background included; never-seen
  classes count 0). Their loader gives only the clip's real frames (5 for v1s/v1m, 10 for v2),
  so AVSBench's padding frames (`frame_valid` 0) are left out here.

Both accumulators stream (sums per clip / per class, float64, no prediction kept) and keep
their state as summable tensors like those of `avsbench.metrics`, so distributed evaluation
is an all-reduce of `state_tensors()`.
"""

from __future__ import annotations

import torch

from avsbench.metrics import (
    FSCORE_BETA2,
    NUM_THRESHOLDS,
    SEMANTIC_IOU_EPS,
    _SumState,
    binary_frame_stats,
)

__all__ = [
    "IGNORE_LABEL",
    "per_clip_binary_stats",
    "PerClipBinaryMetrics",
    "vct_combo_semantic_frame_stats",
    "VctComboSemanticMetrics",
    "protocol_metrics",
]

IGNORE_LABEL = 255  # detectron2's ignore label of the AVSS ground truth (outside the histogram)


def _clip_validity(frame_valid: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    """frame_valid [B, T] (float or bool, 1 = real frame) -> bool [B, T] on its device,
    checked against the number of frames of the batch (B * T)."""
    if frame_valid.dim() != 2 or frame_valid.numel() != frames:
        raise ValueError(
            f"{name}: frame_valid must be [clips, frames per clip] covering the batch's "
            f"{frames} frames in clip order, got {tuple(frame_valid.shape)}"
        )
    return frame_valid > 0


def per_clip_binary_stats(
    logits: torch.Tensor, gt: torch.Tensor, frame_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VCT/COMBO's S4/MS3 values of every clip of a batch.

    Args:
        logits: [B*T, H, W] or [B*T, 1, H, W] raw outputs, clip after clip.
        gt: [B*T, H, W] binary masks.
        frame_valid: [B, T], 1 for the clip's real frames (all of them in S4/MS3).
    Returns float64 `iou` [B] (mean per-frame IoU of the clip's real frames), `fscore` [B]
    (max_k of the mean F_k curve of its real non-empty frames, 0 if none) and bool `has_frames`
    [B] (clips with at least one real frame; the others are not clips the evaluator sees).
    Per-frame IoU and F_k are those of `avsbench.metrics.binary_frame_stats`.
    """
    stats = binary_frame_stats(logits, gt)
    valid = _clip_validity(frame_valid.to(stats["iou"].device), stats["iou"].numel(), "per clip")
    clips, per_clip = valid.shape
    iou = stats["iou"].view(clips, per_clip)  # [B, T]
    fcurve = stats["fcurve"].view(clips, per_clip, NUM_THRESHOLDS)  # [B, T, 255]
    kept = stats["kept"].view(clips, per_clip) & valid  # [B, T] frames F uses
    frame_count = valid.sum(1)  # [B]
    clip_iou = (iou * valid).sum(1) / frame_count.clamp(min=1)  # [B]
    kept_count = kept.sum(1)  # [B]
    curve = (fcurve * kept.unsqueeze(2)).sum(1) / kept_count.clamp(min=1).unsqueeze(1)  # [B, 255]
    clip_fscore = torch.where(kept_count > 0, curve.amax(1), torch.zeros_like(clip_iou))  # [B]
    return clip_iou, clip_fscore, frame_count > 0


class PerClipBinaryMetrics(_SumState):
    """S4/MS3 as VCT's and COMBO's `sem_seg_evaluation.py` compute them (one clip per call).

    update(logits [B*T, (1,) H, W], gt [B*T, H, W], frame_valid [B, T]) any number of clips
    per call: the values do not depend on how the clips are batched. compute() returns
        `miou_per_clip`: mean over clips of the clip's mean per-frame IoU;
        `fscore_per_clip`: mean over clips of the clip's max-F (0 for a clip whose frames are
            all empty), beta^2 = 0.3, 255 thresholds;
        `num_clips`: the clips counted.
    """

    _shapes = {"clip_miou_sum": (), "clip_fscore_sum": (), "num_clips": ()}

    def update(self, logits: torch.Tensor, gt: torch.Tensor, frame_valid: torch.Tensor) -> None:
        """Add the clips of one batch (see the class docstring for the shapes)."""
        clip_iou, clip_fscore, has_frames = per_clip_binary_stats(logits, gt, frame_valid)
        self._to(clip_iou.device)
        s = self._state
        s["clip_miou_sum"] += (clip_iou * has_frames).sum()
        s["clip_fscore_sum"] += (clip_fscore * has_frames).sum()
        s["num_clips"] += has_frames.sum()

    def compute(self) -> dict[str, float | int]:
        """The per-clip values (see the class docstring)."""
        s = {k: float(v) for k, v in self._state.items()}
        clips = int(s["num_clips"])
        if clips == 0:
            raise RuntimeError("PerClipBinaryMetrics.compute() called before any update()")
        return {
            "miou_per_clip": s["clip_miou_sum"] / clips,
            "fscore_per_clip": s["clip_fscore_sum"] / clips,
            "num_clips": clips,
        }


def vct_combo_semantic_frame_stats(
    logits: torch.Tensor, gt: torch.Tensor, ignore_label: int = IGNORE_LABEL
) -> dict[str, torch.Tensor]:
    """Per-frame, per-class quantities of VCT/COMBO's `sem_seg_evaluation_ss.py`.

    With c_hat = argmax_c softmax(logits) and, per frame f and class c,
    I = #(c_hat = c and gt = c), Pd = #(c_hat = c) (every pixel, ignored ones included),
    G = #(gt = c) (gt = `ignore_label` counts for no class), U = Pd + G - I:
        iou[f, c] = I / (U + 2.220446049250313e-16);
        fscore[f, c] = 1.3 P R / (0.3 P + R) with P = I / Pd, R = I / G (NaN -> 0);
        present[f, c] = U > 0.

    Args:
        logits: [n, K, H, W] class scores; gt: [n, H, W] integer ids in [0, K) or ignore_label.
    Returns float64 `iou` [n, K], `fscore` [n, K] and bool `present` [n, K].
    """
    if logits.dim() != 4 or gt.dim() != 3 or logits.shape[:1] + logits.shape[2:] != gt.shape:
        raise ValueError(
            "VCT/COMBO AVSS metrics: expected logits [n, K, H, W] and ground truth [n, H, W], "
            f"got {tuple(logits.shape)} and {tuple(gt.shape)}"
        )
    if gt.dtype.is_floating_point or gt.dtype == torch.bool:
        raise ValueError(
            f"VCT/COMBO AVSS metrics: ground truth must hold integer class ids, got {gt.dtype}"
        )
    n, k = logits.shape[:2]
    ignored = gt == ignore_label
    bad = ((gt < 0) | (gt >= k)) & ~ignored
    if bool(bad.any()):
        raise ValueError(
            f"VCT/COMBO AVSS metrics: ground-truth ids must lie in [0, {k}) or be the ignore "
            f"label {ignore_label}; found {int(gt[bad][0])} (check the palette decoding)"
        )
    pred = torch.softmax(logits.float(), dim=1).argmax(dim=1)  # [n, H, W]
    # confusion [n, K(pred), K + 1(gt; column K = ignored)] in one bincount
    label = torch.where(ignored, torch.full_like(gt, k), gt).long()  # [n, H, W]
    frame_offset = torch.arange(n, device=gt.device).view(n, 1, 1) * (k * (k + 1))
    key = frame_offset + pred * (k + 1) + label  # [n, H, W]
    confusion = torch.bincount(key.reshape(-1), minlength=n * k * (k + 1))
    confusion = confusion.view(n, k, k + 1).double()  # [n, K, K + 1]
    inter = confusion[:, :, :k].diagonal(dim1=1, dim2=2)  # [n, K]
    predicted = confusion.sum(2)  # [n, K] ignored pixels included
    labelled = confusion[:, :, :k].sum(1)  # [n, K]
    union = predicted + labelled - inter  # [n, K]
    iou = inter / (union + SEMANTIC_IOU_EPS)
    precision = inter / predicted  # 0/0 -> NaN, as the published code
    recall = inter / labelled
    fscore = (1 + FSCORE_BETA2) * precision * recall / (FSCORE_BETA2 * precision + recall)
    return {"iou": iou, "fscore": torch.nan_to_num(fscore, nan=0.0), "present": union > 0}


class VctComboSemanticMetrics(_SumState):
    """AVSS as VCT's and COMBO's `sem_seg_evaluation_ss.py` compute it.

    update(logits [n, K, H, W], gt [n, H, W], frame_valid [B, T] with B*T = n, or None):
    frames with frame_valid 0 (AVSBench's padding) are left out. compute() returns
        `miou_vct_combo_avss`, `fscore_vct_combo_avss`: means over all K classes of the
            per-class sums over frames / the number of frames where the class is predicted
            or labelled (0 for a class never seen);
        `per_class_iou_vct_combo_avss`, `per_class_fscore_vct_combo_avss`: those K values;
        `class_frame_count_vct_combo_avss`: the frame counts; `num_frames_vct_combo_avss`.
    """

    def __init__(self, num_classes: int = 71, device: torch.device | str | None = None) -> None:
        if num_classes < 2:
            raise ValueError(
                f"VctComboSemanticMetrics: num_classes must be >= 2, got {num_classes}"
            )
        self.num_classes = num_classes
        self._shapes = {
            "iou_sum": (num_classes,),
            "fscore_sum": (num_classes,),
            "class_count": (num_classes,),
            "num_frames": (),
        }
        super().__init__(device)

    def update(
        self, logits: torch.Tensor, gt: torch.Tensor, frame_valid: torch.Tensor | None = None
    ) -> None:
        """Add the real frames of a batch (see the class docstring for the shapes)."""
        if logits.dim() == 4 and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"VCT/COMBO AVSS metrics: logits have {logits.shape[1]} classes but the metric "
                f"expects {self.num_classes}"
            )
        if frame_valid is not None:
            valid = _clip_validity(frame_valid.to(logits.device), logits.shape[0], "AVSS")
            frames = valid.reshape(-1).nonzero().squeeze(1)  # [n_real]
            if frames.numel() == 0:
                return
            logits, gt = logits.index_select(0, frames), gt.index_select(0, frames)
        stats = vct_combo_semantic_frame_stats(logits, gt)
        self._to(stats["iou"].device)
        s = self._state
        s["iou_sum"] += stats["iou"].sum(0)
        s["fscore_sum"] += stats["fscore"].sum(0)
        s["class_count"] += stats["present"].sum(0)
        s["num_frames"] += stats["iou"].shape[0]

    def compute(self) -> dict[str, float | int | list[float] | list[int]]:
        """The values of the published evaluator (see the class docstring)."""
        s = {k: v.cpu() for k, v in self._state.items()}
        if int(s["num_frames"]) == 0:
            raise RuntimeError("VctComboSemanticMetrics.compute() called before any update()")
        count = s["class_count"]
        per_class_iou = torch.nan_to_num(s["iou_sum"] / count, nan=0.0)  # [K]
        per_class_fscore = torch.nan_to_num(s["fscore_sum"] / count, nan=0.0)  # [K]
        return {
            "miou_vct_combo_avss": float(per_class_iou.mean()),
            "fscore_vct_combo_avss": float(per_class_fscore.mean()),
            "per_class_iou_vct_combo_avss": per_class_iou.tolist(),
            "per_class_fscore_vct_combo_avss": per_class_fscore.tolist(),
            "class_frame_count_vct_combo_avss": [int(c) for c in count.tolist()],
            "num_frames_vct_combo_avss": int(s["num_frames"]),
        }


def protocol_metrics(
    semantic: bool, num_classes: int = 71
) -> PerClipBinaryMetrics | VctComboSemanticMetrics:
    """The accumulator of the VCT/COMBO protocol of a setting: `VctComboSemanticMetrics`
    (AVSS) or `PerClipBinaryMetrics` (S4, MS3); both take update(logits, gt, frame_valid)."""
    return VctComboSemanticMetrics(num_classes) if semantic else PerClipBinaryMetrics()
