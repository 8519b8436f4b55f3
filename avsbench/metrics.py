"""Official AVSBench metrics (S4/MS3 Jaccard and F-measure, AVSS per-class mIoU and F) and
better-defined variants beside them.

Source: the evaluation code published with AVSBench (Zhou et al., ECCV 2022; IJCV 2024):
`mask_iou` / `Eval_Fmeasure` (S4, MS3) and `calc_color_miou_fscore` (AVSS), as described in
docs/METRICS.md (formulas and quirks). The official numbers are reproduced to float
precision (tests compare with golden values produced by the published code); the variants
are named for what they are and never replace them.

Everything is vectorised torch that runs on the device of its inputs. Counts are exact
integers; ratios are taken in float64. The F-measure is computed for all 255 thresholds at
once: each probability is assigned to its interval between thresholds (shifted by one
above 0.5, so that the same histogram also counts the Jaccard's prediction), a `bincount`
gives per-frame histograms of these intervals, and reverse cumulative sums give, for every
threshold, the numbers of predicted and of true-positive pixels (exact, no sorting, no
loop over thresholds; int32 keys; on a CPU the frames go in cache-sized chunks).

Accumulators keep their state as a few float64 tensors of sums and counts
(`state_tensors()`), so that summing the states of several processes (an all-reduce)
gives exactly the `compute()` of one process that saw all the batches.
"""

from __future__ import annotations

import torch

__all__ = [
    "NUM_THRESHOLDS",
    "FSCORE_BETA2",
    "fscore_thresholds",
    "binary_frame_stats",
    "official_batch_miou",
    "official_batch_fscore",
    "BinaryMetrics",
    "semantic_frame_stats",
    "SemanticMetrics",
]

NUM_THRESHOLDS = 255  # thresholds of the official F-measure curve
FSCORE_BETA2 = 0.3  # beta^2 of the F-measure (precision weighted more than recall)
IOU_EPS = 1e-7  # official S4/MS3 Jaccard denominator epsilon
PR_EPS = 1e-20  # official S4/MS3 precision/recall denominator epsilon
SEMANTIC_IOU_EPS = 2.220446049250313e-16  # official AVSS IoU denominator epsilon (float eps)

# The official code builds torch.linspace(0, 1 - 1e-10, 255) in float32 (so the last
# threshold rounds to exactly 1.0) and compares float32 probabilities with it. Built once
# on the CPU so that every device uses bit-identical thresholds.
_THRESHOLDS_CPU = torch.linspace(0, 1 - 1e-10, NUM_THRESHOLDS, dtype=torch.float32)
# t_{j+1} for j = 0..255 (t_255 and t_256 do not exist: +inf, never <= a probability)
_TABLE_CPU = torch.cat([_THRESHOLDS_CPU[1:], torch.full((2,), float("inf"))])  # [256]
_TABLES: dict[torch.device, torch.Tensor] = {}
# B = #{k: t_k <= 0.5} (128: t_127 is exactly 0.5): p <= 0.5 has bucket <= B, p > 0.5 >= B
_HALF_BUCKET = int((_THRESHOLDS_CPU <= 0.5).sum())


def fscore_thresholds(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 255 official F-measure thresholds, float32 [255] on `device`."""
    return _THRESHOLDS_CPU.to(device)


def _threshold_table(device: torch.device) -> torch.Tensor:
    """t_{j+1} for j = 0..255, float32 [256], cached per device."""
    if device not in _TABLES:
        _TABLES[device] = _TABLE_CPU.to(device)
    return _TABLES[device]


def _as_frames(logits: torch.Tensor, gt: torch.Tensor, name: str) -> tuple[torch.Tensor, ...]:
    """Check binary inputs; return logits float32 [n, HW], gt (as given) [n, HW] and (H, W)."""
    if logits.dim() == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]  # [n, 1, H, W] -> [n, H, W]
    if gt.dim() == 4 and gt.shape[1] == 1:
        gt = gt[:, 0]
    if logits.dim() != 3 or logits.shape != gt.shape:
        raise ValueError(
            f"{name}: expected logits and ground truth of the same shape [n, H, W] (or "
            f"[n, 1, H, W]), got logits {tuple(logits.shape)} and gt {tuple(gt.shape)}"
        )
    n, h, w = logits.shape
    if n == 0:
        raise ValueError(f"{name}: empty batch (0 frames)")
    if gt.device != logits.device:
        raise ValueError(f"{name}: logits on {logits.device} but ground truth on {gt.device}")
    logits = logits.float().reshape(n, h * w)  # [n, HW]
    return logits, gt.reshape(n, h * w), (h, w)


# Pixels handled per step on a CPU: temporaries that stay in the cache are ~3x faster than
# one pass over a whole batch. GPUs take a batch in one step.
CPU_CHUNK_PIXELS = 1 << 17


def _bucket_histograms(
    logits: torch.Tensor, gt: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel counts by_gt[gt, frame, bucket] (int64 [2, n, 256]), predicted[gt, frame]
    (int64 [2, n]) and sum(gt) (float64 [n]).

    bucket = #{k: t_k <= sigmoid(logit)}; predicted counts pred = sigmoid(logit) > 0.5.
    One int32 `bincount` per chunk of frames, of the key b' + 257 * frame + 257 * m * gt
    with b' = bucket + pred: since p <= 0.5 gives bucket <= B and p > 0.5 gives bucket >= B
    (B = #{t_k <= 0.5}), b' is bucket for p <= 0.5 and bucket + 1 >= B + 1 for p > 0.5, so
    both the bucket counts and the prediction counts come back exactly from one histogram.
    logits: float32 [n, HW]; gt: [n, HW] binary (validated here).
    """
    n, hw = logits.shape
    nbins = NUM_THRESHOLDS + 2  # b' values 0..256
    device = logits.device
    chunk = CPU_CHUNK_PIXELS if device.type == "cpu" else 1 << 26
    step = max(1, chunk // hw)  # frames per step
    hist = torch.empty(2, n, nbins, dtype=torch.int64, device=device)
    gt_sum = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        frames = stop - start
        part_gt = gt[start:stop]  # [m, HW]
        if part_gt.dtype != torch.bool:
            low, high = torch.aminmax(part_gt)
            if low < 0 or high > 1:
                _raise_not_binary(name, low, high)
        part = logits[start:stop]
        # a cheap reduction first; the exact (slower) test only when something is off
        if not bool(torch.isfinite(part.sum())) and bool(torch.isnan(part).any()):
            raise ValueError(f"{name}: the logits contain NaN (did the model diverge?)")
        prob = torch.sigmoid(part)  # [m, HW] float32, as the official code
        key = _threshold_buckets(prob)  # [m, HW] int32
        key += prob.gt(0.5)  # b' = bucket + pred
        key += (torch.arange(frames, dtype=torch.int32, device=device) * nbins).unsqueeze(1)
        # values in [0, 1] were checked; non-integers truncate to 0 and are caught later
        gt_code = part_gt.to(torch.int32)
        gt_code *= frames * nbins
        key += gt_code
        counts = torch.bincount(key.view(-1), minlength=2 * frames * nbins)
        hist[:, start:stop] = counts.view(2, frames, nbins)
        gt_sum[start:stop] = part_gt.sum(1, dtype=torch.float64)
    by_gt = torch.cat(
        [
            hist[..., :_HALF_BUCKET],
            hist[..., _HALF_BUCKET : _HALF_BUCKET + 1]
            + hist[..., _HALF_BUCKET + 1 : _HALF_BUCKET + 2],
            hist[..., _HALF_BUCKET + 2 :],
        ],
        dim=-1,
    )  # [2, n, 256]
    predicted = hist[..., _HALF_BUCKET + 1 :].sum(-1)  # [2, n]
    return by_gt, predicted, gt_sum


def binary_frame_stats(logits: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame quantities of the official S4/MS3 metrics for one batch.

    Args:
        logits: [n, H, W] (or [n, 1, H, W]) raw model outputs (before the sigmoid).
        gt: [n, H, W] binary ground truth (0/1, any dtype, or bool).

    Returns a dict of tensors on the input's device:
        `iou` float64 [n]: official Jaccard per frame, with p = sigmoid(logit) > 0.5:
            non-empty g: sum(p*g) / (sum(max(p, g)) + 1e-7);
            empty g:     sum((1-p)*(1-g)) / (H*W + 1e-7)   (true-negative fraction).
        `fcurve` float64 [n, 255]: F_k = 1.3 P_k R_k / (0.3 P_k + R_k) (NaN -> 0) with
            q = sigmoid(logit) >= t_k, t = linspace(0, 1 - 1e-10, 255) in float32,
            P_k = sum(q*g) / (sum(q) + 1e-20), R_k = sum(q*g) / (sum(g) + 1e-20).
        `kept` bool [n]: frames with a non-empty ground truth (the only ones F uses).
        `inter`, `union` float64 [n]: foreground sum(p*g) and sum(max(p, g)) of every frame
            (no empty-frame special case), for the dataset-level IoU.

    All counts come from per-frame histograms of the threshold bucket of every pixel, split
    by ground truth and by the 0.5 prediction (`_bucket_histograms`).
    """
    name = "binary metrics"
    logits, gt, (h, w) = _as_frames(logits, gt, name)
    by_gt, predicted_by_gt, gt_sum = _bucket_histograms(logits, gt, name)
    per_gt = by_gt.sum(-1)  # [2(gt), n] pixel counts
    gt_count = per_gt[1]  # [n]
    # values in [0, 1] and sum(gt) == #(gt truncated to 1) only if all values are 0 or 1
    if gt.dtype != torch.bool and not torch.equal(gt_sum, gt_count.double()):
        low, high = torch.aminmax(gt)
        _raise_not_binary(name, low, high)
    kept = gt_count > 0  # [n]
    inter = predicted_by_gt[1].double()  # [n]
    union = (predicted_by_gt[0] + gt_count).double()  # [n]
    true_neg = (per_gt[0] - predicted_by_gt[0]).double()  # [n]
    iou = torch.where(kept, inter / (union + IOU_EPS), true_neg / (h * w + IOU_EPS))  # [n]

    # prob >= t_k  <=>  bucket > k: counts over buckets k+1..255 for k = 0..254
    at_or_above = by_gt.flip(-1).cumsum(-1).flip(-1)[..., 1:].double()  # [2, n, 255]
    tp = at_or_above[1]  # [n, 255] predicted and foreground
    predicted = at_or_above[0] + at_or_above[1]  # [n, 255]
    precision = tp / (predicted + PR_EPS)
    recall = tp / (gt_count.double().unsqueeze(1) + PR_EPS)
    fcurve = (1 + FSCORE_BETA2) * precision * recall / (FSCORE_BETA2 * precision + recall)
    fcurve = torch.nan_to_num(fcurve, nan=0.0)  # [n, 255]
    return {"iou": iou, "fcurve": fcurve, "kept": kept, "inter": inter, "union": union}


def _raise_not_binary(name: str, low: torch.Tensor, high: torch.Tensor) -> None:
    raise ValueError(
        f"{name}: the ground truth must be binary (0/1), got values in [{float(low)}, "
        f"{float(high)}] that are not all 0 or 1. Binarise the masks (mask > 0) or resize "
        "them with nearest interpolation"
    )


def _threshold_buckets(prob: torch.Tensor) -> torch.Tensor:
    """Number of official thresholds t_k <= p for every probability p in [0, 1] (int32).

    Equal to `searchsorted(thresholds, prob, right=True)` (tested on every threshold and
    its float neighbours) but much faster on a CPU. t_k is k/254 up to float32 rounding,
    so with j = floor(254 p - 1e-3) (always t_j <= p) the answer is j + 1 + (t_{j+1} <= p):
    one look-up in the threshold table.
    """
    table = _threshold_table(prob.device)  # [256]: t_1..t_254, +inf, +inf
    guess = prob.mul(NUM_THRESHOLDS - 1).sub_(1e-3).to(torch.int32)  # 0..253 (trunc)
    bucket = table.index_select(0, guess.view(-1)).view(prob.shape).le(prob).to(torch.int32)
    bucket += guess  # + (t_{j+1} <= p)
    bucket += 1
    return bucket


def _batch_fscore(fcurve: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """max_k of the mean F curve over the kept frames; 0 (float64 scalar) if none is kept."""
    kept_count = kept.sum()
    curve = (fcurve * kept.unsqueeze(1)).sum(0) / kept_count.clamp(min=1)  # [255]
    return torch.where(kept_count > 0, curve.max(), torch.zeros_like(curve[0]))


def official_batch_miou(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """Official S4/MS3 mIoU (Jaccard) of one test batch: the mean over its n frames of the
    per-frame IoU of `binary_frame_stats` (empty ground truth: true-negative fraction).

    Args:
        logits: [n, H, W] raw outputs; gt: [n, H, W] binary masks.
    """
    return binary_frame_stats(logits, gt)["iou"].mean().item()


def official_batch_fscore(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """Official S4/MS3 F-measure of one test batch (beta^2 = 0.3).

    F = max_k mean_{kept frames} F_k over the 255 thresholds (see `binary_frame_stats`);
    frames with an empty ground truth are skipped; a batch without a kept frame gives 0.
    The value depends on which frames share the batch (official: 4 clips = 20 frames).

    Args:
        logits: [n, H, W] raw outputs; gt: [n, H, W] binary masks.
    """
    stats = binary_frame_stats(logits, gt)
    return _batch_fscore(stats["fcurve"], stats["kept"]).item()


class _SumState:
    """Accumulator whose state is a dict of float64 tensors that add up across processes."""

    _shapes: dict[str, tuple[int, ...]] = {}

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget all updates."""
        device = self.device or torch.device("cpu")
        self._state = {
            k: torch.zeros(s, dtype=torch.float64, device=device) for k, s in self._shapes.items()
        }

    def _to(self, device: torch.device) -> None:
        # the state follows the inputs (first update decides when no device was given)
        if self._state[next(iter(self._state))].device != device:
            self._state = {k: v.to(device) for k, v in self._state.items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """A copy of the state: float64 tensors whose element-wise SUM over processes is the
        state of one process that saw every batch (use `all_reduce(SUM)` on each)."""
        return {k: v.clone() for k, v in self._state.items()}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the state by `state` (e.g. the all-reduced `state_tensors()`)."""
        missing = set(self._shapes) - set(state)
        extra = set(state) - set(self._shapes)
        if missing or extra:
            raise KeyError(
                f"{type(self).__name__}.load_state_tensors: missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}; pass the dict returned by state_tensors()"
            )
        device = self._state[next(iter(self._state))].device
        new = {}
        for k, shape in self._shapes.items():
            value = torch.as_tensor(state[k], dtype=torch.float64).to(device)
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_tensors: {k!r} has shape "
                    f"{tuple(value.shape)}, expected {shape}"
                )
            new[k] = value.clone()
        self._state = new

    def merge(self, other: _SumState) -> None:
        """Add the state of `other` (same class and configuration) to this one."""
        if type(other) is not type(self) or other._shapes != self._shapes:
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        device = self._state[next(iter(self._state))].device
        for k, v in other._state.items():
            self._state[k] = self._state[k] + v.to(device)


class BinaryMetrics(_SumState):
    """S4/MS3 test accumulator: `update(logits, gt)` once per TEST BATCH, then `compute()`.

    `compute()` returns (floats):
        `miou`: official mIoU, mean over batches of the batch mean of per-frame IoU.
        `fscore`: official F, mean over batches of max_k(batch-mean F curve); batches
            without a non-empty ground truth count as 0.
        `miou_per_frame`: per-frame IoU (official definition) averaged over all frames.
        `fscore_dataset_curve`: F curve averaged over all non-empty frames of the whole
            set, max over the thresholds once (0 if there is none).
        `iou_dataset`: sum(I) / sum(U) of the foreground over all frames (0 if U = 0).
        `num_batches`, `num_frames`, `num_kept_frames`: the counts behind them.
    The official values depend on the batch composition (and F on the batch size); the
    three variants do not.
    """

    _shapes = {
        "batch_miou_sum": (),  # sum over batches of the batch mIoU
        "batch_fscore_sum": (),  # sum over batches of the batch F
        "num_batches": (),
        "frame_iou_sum": (),  # sum over frames of the per-frame IoU
        "num_frames": (),
        "fcurve_sum": (NUM_THRESHOLDS,),  # sum over kept frames of F_k
        "num_kept_frames": (),
        "inter_sum": (),  # foreground intersection pixels
        "union_sum": (),  # foreground union pixels
    }

    def update(self, logits: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one test batch. logits: [n, H, W] or [n, 1, H, W]; gt: [n, H, W] in {0, 1}."""
        stats = binary_frame_stats(logits, gt)
        self._to(stats["iou"].device)
        s = self._state
        s["batch_miou_sum"] += stats["iou"].mean()
        s["batch_fscore_sum"] += _batch_fscore(stats["fcurve"], stats["kept"])
        s["num_batches"] += 1
        s["frame_iou_sum"] += stats["iou"].sum()
        s["num_frames"] += stats["iou"].numel()
        s["fcurve_sum"] += (stats["fcurve"] * stats["kept"].unsqueeze(1)).sum(0)
        s["num_kept_frames"] += stats["kept"].sum()
        s["inter_sum"] += stats["inter"].sum()
        s["union_sum"] += stats["union"].sum()

    def compute(self) -> dict[str, float]:
        """Official values and variants (see the class docstring)."""
        s = {k: v.cpu() for k, v in self._state.items()}
        num_batches = int(s["num_batches"])
        if num_batches == 0:
            raise RuntimeError("BinaryMetrics.compute() called before any update()")
        kept = int(s["num_kept_frames"])
        union = float(s["union_sum"])
        return {
            "miou": float(s["batch_miou_sum"]) / num_batches,
            "fscore": float(s["batch_fscore_sum"]) / num_batches,
            "miou_per_frame": float(s["frame_iou_sum"]) / float(s["num_frames"]),
            "fscore_dataset_curve": float((s["fcurve_sum"] / kept).max()) if kept else 0.0,
            "iou_dataset": float(s["inter_sum"]) / union if union > 0 else 0.0,
            "num_batches": num_batches,
            "num_frames": int(s["num_frames"]),
            "num_kept_frames": kept,
        }


def semantic_frame_stats(
    logits: torch.Tensor, gt: torch.Tensor, num_classes: int | None = None
) -> dict[str, torch.Tensor]:
    """Per-frame, per-class quantities of the official AVSS metrics.

    With c_hat = argmax_c softmax(logits) and, per frame f and class c,
    I = #(c_hat = c and gt = c), Pd = #(c_hat = c), G = #(gt = c), U = Pd + G - I:
        iou[f, c] = I / (U + 2.220446049250313e-16);
        fscore[f, c] = 1.3 P R / (0.3 P + R) with P = I / Pd, R = I / G (NaN -> 0);
        present[f, c] = U > 0.

    Args:
        logits: [n, K, H, W] class scores; gt: [n, H, W] integer class ids in [0, K).
    Returns float64 `iou` [n, K], `fscore` [n, K] and bool `present` [n, K].
    """
    if logits.dim() != 4 or gt.dim() != 3 or logits.shape[:1] + logits.shape[2:] != gt.shape:
        raise ValueError(
            "semantic metrics: expected logits [n, K, H, W] and ground truth [n, H, W], got "
            f"{tuple(logits.shape)} and {tuple(gt.shape)}"
        )
    n, k = logits.shape[:2]
    if num_classes is not None and k != num_classes:
        raise ValueError(
            f"semantic metrics: logits have {k} classes but the metric expects {num_classes}"
        )
    if gt.dtype.is_floating_point or gt.dtype == torch.bool:
        raise ValueError(
            f"semantic metrics: ground truth must hold integer class ids, got {gt.dtype}"
        )
    if n == 0:
        raise ValueError("semantic metrics: empty batch (0 frames)")
    if bool((gt < 0).any()) or bool((gt >= k).any()):
        raise ValueError(
            f"semantic metrics: ground-truth class ids must lie in [0, {k}); got "
            f"[{int(gt.min())}, {int(gt.max())}] (check the palette decoding of the masks)"
        )
    # argmax of the softmax, as the official code (ties resolved identically)
    pred = torch.softmax(logits.float(), dim=1).argmax(dim=1)  # [n, H, W]
    # one bincount for the per-frame confusion matrices [n, K(pred), K(gt)]
    frame_offset = torch.arange(n, device=gt.device).view(n, 1, 1) * (k * k)
    key = frame_offset + pred * k + gt.long()  # [n, H, W]
    confusion = torch.bincount(key.reshape(-1), minlength=n * k * k).view(n, k, k).double()
    inter = confusion.diagonal(dim1=1, dim2=2)  # [n, K]
    predicted = confusion.sum(2)  # [n, K]
    labelled = confusion.sum(1)  # [n, K]
    union = predicted + labelled - inter  # [n, K]
    iou = inter / (union + SEMANTIC_IOU_EPS)
    precision = inter / predicted  # 0/0 -> NaN, as the official code
    recall = inter / labelled
    fscore = (1 + FSCORE_BETA2) * precision * recall / (FSCORE_BETA2 * precision + recall)
    fscore = torch.nan_to_num(fscore, nan=0.0)
    return {"iou": iou, "fscore": fscore, "present": union > 0}


class SemanticMetrics(_SumState):
    """AVSS test accumulator, the official protocol (every frame counts, padding included).

    Sums over all frames: S_iou[c], S_F[c] and count[c] (frames with U[c] > 0), see
    `semantic_frame_stats`. `compute()` returns:
        `per_class_iou` [K] = S_iou / count (0 where count = 0), `per_class_fscore` likewise;
        `miou`, `fscore`: official, means over ALL K classes (absent classes count as 0);
        `miou_official_nobg`, `fscore_official_nobg`: the official "noBg" print, which drops
            the LAST class (70, "woman") - a legacy slip;
        `miou_no_background`, `fscore_no_background`: correct, drop class 0 (background);
        `miou_present_classes`, `fscore_present_classes`: mean over classes with count > 0;
        `class_frame_count` [K]: count[c]; `num_frames`.
    Lists are python lists (JSON-ready).
    """

    def __init__(self, num_classes: int = 71, device: torch.device | str | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"SemanticMetrics: num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self._shapes = {
            "iou_sum": (num_classes,),  # S_iou
            "fscore_sum": (num_classes,),  # S_F
            "class_count": (num_classes,),  # frames with U[c] > 0
            "num_frames": (),
        }
        super().__init__(device)

    def update(self, logits: torch.Tensor, gt: torch.Tensor) -> None:
        """Add frames. logits: [n, K, H, W]; gt: [n, H, W] int class ids in [0, K)."""
        stats = semantic_frame_stats(logits, gt, self.num_classes)
        self._to(stats["iou"].device)
        s = self._state
        s["iou_sum"] += stats["iou"].sum(0)
        s["fscore_sum"] += stats["fscore"].sum(0)
        s["class_count"] += stats["present"].sum(0)
        s["num_frames"] += stats["iou"].shape[0]

    def compute(self) -> dict[str, float | int | list[float]]:
        """Official values and variants (see the class docstring)."""
        s = {k: v.cpu() for k, v in self._state.items()}
        if int(s["num_frames"]) == 0:
            raise RuntimeError("SemanticMetrics.compute() called before any update()")
        count = s["class_count"]
        per_class_iou = torch.nan_to_num(s["iou_sum"] / count, nan=0.0)  # [K]
        per_class_fscore = torch.nan_to_num(s["fscore_sum"] / count, nan=0.0)  # [K]
        present = count > 0

        def present_mean(x: torch.Tensor) -> float:
            return float(x[present].mean()) if bool(present.any()) else 0.0

        return {
            "miou": float(per_class_iou.mean()),
            "fscore": float(per_class_fscore.mean()),
            "miou_official_nobg": float(per_class_iou[:-1].mean()),
            "fscore_official_nobg": float(per_class_fscore[:-1].mean()),
            "miou_no_background": float(per_class_iou[1:].mean()),
            "fscore_no_background": float(per_class_fscore[1:].mean()),
            "miou_present_classes": present_mean(per_class_iou),
            "fscore_present_classes": present_mean(per_class_fscore),
            "per_class_iou": per_class_iou.tolist(),
            "per_class_fscore": per_class_fscore.tolist(),
            "class_frame_count": [int(c) for c in count.tolist()],
            "num_frames": int(s["num_frames"]),
        }
