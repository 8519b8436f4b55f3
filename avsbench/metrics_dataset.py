"""The dataset-level protocol ("J&F") of CAVP, DDESeg and BYOAVP, beside the per-frame one.

Per-frame protocols (`avsbench.metrics`) average a score per frame or per batch. The
dataset-level protocol sums pixel counts over EVERY frame of the split first, per class,
and scores the sums once; the mean is over classes. Both published codes stream the same
per-class counts, so one accumulator holds them: a confusion matrix `[K (pred), K + 1 (gt)]`
(column K: ground truth equal to the ignore label 255), float64, summed over frames.

With I_c = #(pred = c, gt = c), P_c = #(pred = c), G_c = #(gt = c) over the split,
U_c = P_c + G_c - I_c, tp = I_c, fp = P_c - I_c, fn = G_c - I_c:

DDESeg (`YenanLiu/DDESeg` 75a8471, `util_tools/metrics.py` `compute_iou_per_class`,
`compute_fscore_per_class`, and `compute_metrics_ddp` of `train.py`):
    valid classes V = {c : U_c > 0};
    J = mean_{c in V} I_c / (U_c + 1e-10);
    P = tp / (tp + fp + 1e-10), R = tp / (tp + fn + 1e-10);
    F1 = mean_{c in V} 2PR / (P + R + 1e-10); F_0.3 = mean_{c in V} 1.3PR / (0.3P + R + 1e-10).
CAVP (`cyh-0/CAVP` 96a6c34, `utils/eval_utils.py` `MIoU`, `ForegroundDetect`):
    J = mean over ALL K classes of I_c / (U_c + 2.22e-16) (a class never predicted nor
    labelled counts 0); F_b = nanmean_c (1 + b) tp / ((1 + b) tp + b fn + fp) (classes with
    tp = fp = fn = 0 are left out), b = 1 and 0.3; FDR = nanmean_c fp / (fp + tp).
    Pixels whose ground truth is 255 count for no class (neither predicted nor labelled).
    The published code rounds each result to 4 decimals when it prints; the values here
    are not rounded.

The binary settings (S4, MS3) count TWO classes, background (0) and foreground (1), and
average over both: DDESeg sizes its sums `num_classes + 1` when `num_classes == 1`, CAVP
trains S4 with `num_classes = 2`. The foreground is sigmoid(logit) > 0.5 (DDESeg); AVSS
takes argmax over the classes (both codes; softmax does not change the argmax). DDESeg has
no ignore label (its `one_hot` refuses 255): here ignored pixels are left out for it too.
"""

from __future__ import annotations

import torch

from avsbench.metrics import _SumState

__all__ = [
    "DDESEG_EPS",
    "CAVP_IOU_EPS",
    "IGNORE_LABEL",
    "DatasetLevelMetrics",
    "confusion_counts",
    "ddeseg_scores",
    "cavp_scores",
]

DDESEG_EPS = 1e-10  # `compute_metrics_ddp(..., epsilon=1e-10)`
CAVP_IOU_EPS = 2.220446049250313e-16  # numpy.spacing(1) in CAVP's MIoU
IGNORE_LABEL = 255  # counts for no class (CAVP's ignore_index)
F_BETA2 = 0.3


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Class ids the dataset-level protocol scores: binary logits [n, H, W] or [n, 1, H, W]
    -> sigmoid(logit) > 0.5 as int64 [n, H, W]; class scores [n, K, H, W] (K > 1) -> argmax."""
    if logits.dim() == 4 and logits.shape[1] > 1:
        return logits.float().argmax(dim=1)
    if logits.dim() == 4:
        logits = logits[:, 0]
    if logits.dim() != 3:
        raise ValueError(
            f"dataset-level metrics: expected logits [n, H, W], [n, 1, H, W] or [n, K, H, W], "
            f"got {tuple(logits.shape)}"
        )
    return (torch.sigmoid(logits.float()) > 0.5).long()


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel counts float64 [K (pred), K + 1 (gt; column K = IGNORE_LABEL)] of class ids
    pred [n, H, W] in [0, K) and gt [n, H, W] in [0, K) or IGNORE_LABEL."""
    if pred.shape != gt.shape:
        raise ValueError(
            f"dataset-level metrics: prediction {tuple(pred.shape)} and ground truth "
            f"{tuple(gt.shape)} differ in shape"
        )
    if gt.dtype.is_floating_point or gt.dtype == torch.bool:
        gt = gt.round().long()
    k = num_classes
    ignored = gt == IGNORE_LABEL
    bad = ((gt < 0) | (gt >= k)) & ~ignored
    if bool(bad.any()):
        raise ValueError(
            f"dataset-level metrics: ground-truth ids must lie in [0, {k}) or be "
            f"{IGNORE_LABEL}; found {int(gt[bad][0])}"
        )
    if bool(((pred < 0) | (pred >= k)).any()):
        raise ValueError(f"dataset-level metrics: predicted ids must lie in [0, {k})")
    label = torch.where(ignored, torch.full_like(gt, k), gt).long()
    key = pred.long() * (k + 1) + label  # [n, H, W]
    counts = torch.bincount(key.reshape(-1), minlength=k * (k + 1))
    return counts.view(k, k + 1).double()


def _class_counts(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """tp, fp, fn, union per class [K] of a confusion [K, K + 1], ignored pixels left out."""
    k = confusion.shape[0]
    scored = confusion[:, :k]  # [K, K]
    tp = scored.diagonal()
    predicted = scored.sum(1)
    labelled = scored.sum(0)
    return {
        "tp": tp,
        "fp": predicted - tp,
        "fn": labelled - tp,
        "union": predicted + labelled - tp,
    }


def ddeseg_scores(
    confusion: torch.Tensor, per_class: bool = True
) -> dict[str, float | list[float]]:
    """DDESeg's `compute_metrics_ddp` on the summed counts (see the module docstring); with
    `per_class`, also its per-class IoU (0 for a class never seen)."""
    c = _class_counts(confusion)
    tp, fp, fn, union = c["tp"], c["fp"], c["fn"], c["union"]
    valid = union > 0
    iou = torch.where(valid, tp / (union + DDESEG_EPS), torch.zeros_like(tp))
    precision = tp / (tp + fp + DDESEG_EPS)
    recall = tp / (tp + fn + DDESEG_EPS)
    f1 = 2 * precision * recall / (precision + recall + DDESEG_EPS)
    f03 = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall + DDESEG_EPS)
    zero = torch.zeros_like(tp)
    f1, f03 = torch.where(valid, f1, zero), torch.where(valid, f03, zero)
    any_valid = bool(valid.any())

    def mean_valid(values: torch.Tensor) -> float:
        return float(values[valid].mean()) if any_valid else 0.0

    scores: dict[str, float | list[float]] = {
        "miou_dataset_ddeseg": mean_valid(iou),
        "f1_dataset_ddeseg": mean_valid(f1),
        "fscore_dataset_ddeseg": mean_valid(f03),
    }
    if per_class:
        scores["per_class_iou_dataset_ddeseg"] = iou.tolist()
    return scores


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else float("nan")


def cavp_scores(confusion: torch.Tensor) -> dict[str, float]:
    """CAVP's `MIoU` and `ForegroundDetect` on the summed counts (module docstring)."""
    c = _class_counts(confusion)
    tp, fp, fn, union = c["tp"], c["fp"], c["fn"], c["union"]

    def f_beta(beta2: float) -> float:
        return _nanmean((1 + beta2) * tp / ((1 + beta2) * tp + beta2 * fn + fp))

    return {
        "miou_dataset_cavp": float((tp / (CAVP_IOU_EPS + union)).mean()),
        "f1_dataset_cavp": f_beta(1.0),
        "fscore_dataset_cavp": f_beta(F_BETA2),
        "fdr_dataset_cavp": _nanmean(fp / (fp + tp)),
    }


class DatasetLevelMetrics(_SumState):
    """The dataset-level protocol, streamed: update(logits, gt, frame_valid=None) any number
    of times (batching does not matter), compute() -> DDESeg's and CAVP's values.

    logits: binary [n, (1,) H, W] (two classes, background counted) or [n, K, H, W];
    gt: [n, H, W] class ids (binary: {0, 1}); frame_valid [B, T] with B*T = n, or None:
    frames with frame_valid 0 (AVSBench's AVSS padding) are left out, as both published
    loaders give only real frames. Keys of compute(): `miou_dataset_ddeseg`,
    `f1_dataset_ddeseg`, `fscore_dataset_ddeseg` (beta^2 0.3), (AVSS only)
    `per_class_iou_dataset_ddeseg`,
    `miou_dataset_cavp`, `f1_dataset_cavp`, `fscore_dataset_cavp`, `fdr_dataset_cavp`,
    `num_frames_dataset`. The state is one summable confusion matrix (all-reduce by SUM).
    """

    def __init__(self, num_classes: int = 2, device: torch.device | str | None = None) -> None:
        if num_classes < 2:
            raise ValueError(
                f"DatasetLevelMetrics: num_classes counts the background, >= 2; got {num_classes}"
            )
        self.num_classes = num_classes
        self._shapes = {"confusion": (num_classes, num_classes + 1), "num_frames": ()}
        super().__init__(device)

    def update(
        self, logits: torch.Tensor, gt: torch.Tensor, frame_valid: torch.Tensor | None = None
    ) -> None:
        """Add the (real) frames of a batch; see the class docstring for the shapes."""
        pred = predicted_classes(logits)  # [n, H, W]
        if gt.dim() == 4 and gt.shape[1] == 1:
            gt = gt[:, 0]
        if logits.dim() == 4 and logits.shape[1] > 1 and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"dataset-level metrics: logits have {logits.shape[1]} classes, expected "
                f"{self.num_classes}"
            )
        if frame_valid is not None:
            if frame_valid.numel() != pred.shape[0]:
                raise ValueError(
                    f"dataset-level metrics: frame_valid has {frame_valid.numel()} entries "
                    f"for {pred.shape[0]} frames"
                )
            keep = (frame_valid.reshape(-1) > 0).nonzero().squeeze(1).to(pred.device)
            pred, gt = pred.index_select(0, keep), gt.index_select(0, keep.to(gt.device))
            if pred.shape[0] == 0:
                return
        counts = confusion_counts(pred, gt.to(pred.device), self.num_classes)
        self._to(counts.device)
        self._state["confusion"] += counts
        self._state["num_frames"] += pred.shape[0]

    def compute(self) -> dict[str, float | int | list[float]]:
        """DDESeg's and CAVP's dataset-level values (see the module docstring)."""
        confusion = self._state["confusion"].cpu()
        frames = int(self._state["num_frames"])
        if frames == 0:
            raise RuntimeError("DatasetLevelMetrics.compute() called before any update()")
        ddeseg = ddeseg_scores(confusion, per_class=self.num_classes > 2)
        return {**ddeseg, **cavp_scores(confusion), "num_frames_dataset": frames}
