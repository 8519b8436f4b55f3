"""Tests of avsbench.metrics: golden values of the published code, and every value against
a plain loop implementation written here (frames x thresholds, frames x classes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench.metrics import (
    BinaryMetrics,
    SemanticMetrics,
    _threshold_buckets,
    binary_frame_stats,
    fscore_thresholds,
    official_batch_fscore,
    official_batch_miou,
)
from tests.golden_files import GOLDEN, require

# ---------------------------------------------------------------- plain references


def ref_binary_frames(logits: torch.Tensor, gt: torch.Tensor):
    """Per-frame IoU, F curve (or None for an empty gt), I and U with loops (float64)."""
    prob = torch.sigmoid(logits.float()).numpy()  # float32, as the published code
    gt = gt.numpy().astype(np.float64)
    thresholds = torch.linspace(0, 1 - 1e-10, 255).numpy()  # the published float32 call
    ious, curves, inters, unions = [], [], [], []
    for f in range(prob.shape[0]):
        p = (prob[f] > 0.5).astype(np.float64)
        g = gt[f]
        inters.append((p * g).sum())
        unions.append(np.maximum(p, g).sum())
        if g.sum() == 0:
            ious.append(((1 - p) * (1 - g)).sum() / (g.size + 1e-7))
            curves.append(None)
            continue
        ious.append((p * g).sum() / (np.maximum(p, g).sum() + 1e-7))
        curve = np.zeros(255)
        for k, t in enumerate(thresholds):
            q = (prob[f] >= t).astype(np.float64)
            tp = (q * g).sum()
            precision = tp / (q.sum() + 1e-20)
            recall = tp / (g.sum() + 1e-20)
            with np.errstate(invalid="ignore"):
                value = 1.3 * precision * recall / (0.3 * precision + recall)
            curve[k] = 0.0 if np.isnan(value) else value
        curves.append(curve)
    return ious, curves, inters, unions


def ref_binary_batch(logits, gt) -> tuple[float, float]:
    ious, curves, _, _ = ref_binary_frames(logits, gt)
    kept = [c for c in curves if c is not None]
    return float(np.mean(ious)), float(np.mean(kept, axis=0).max()) if kept else 0.0


def ref_semantic(batches, num_classes):
    """Official AVSS sums with loops over frames and classes."""
    s_iou, s_f, count = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    for logits, gt in batches:
        pred = torch.softmax(logits.float(), dim=1).argmax(1).numpy()
        gt = gt.numpy()
        for f in range(pred.shape[0]):
            for c in range(num_classes):
                inter = np.sum((pred[f] == c) & (gt[f] == c))
                predicted = np.sum(pred[f] == c)
                labelled = np.sum(gt[f] == c)
                union = predicted + labelled - inter
                s_iou[c] += inter / (union + 2.220446049250313e-16)
                if union > 0:
                    count[c] += 1
                if predicted == 0 or labelled == 0 or inter == 0:
                    continue  # P or R is 0/0 (NaN), or P = R = 0: F = 0
                precision, recall = inter / predicted, inter / labelled
                s_f[c] += 1.3 * precision * recall / (0.3 * precision + recall)
    with np.errstate(invalid="ignore"):
        iou_pc = np.nan_to_num(s_iou / count, nan=0.0)
        f_pc = np.nan_to_num(s_f / count, nan=0.0)
    return iou_pc, f_pc, count


# ---------------------------------------------------------------- random cases


def random_binary_batch(gen, n, size=16, empty=(), logit_scale=3.0):
    logits = torch.randn(n, size, size, generator=gen) * logit_scale
    gt = (torch.rand(n, size, size, generator=gen) < 0.3).float()
    for f in empty:
        gt[f] = 0
    return logits, gt


def binary_cases():
    gen = torch.Generator().manual_seed(1)
    cases = [random_binary_batch(gen, 6, empty=(1, 4)) for _ in range(3)]
    cases.append(random_binary_batch(gen, 5, empty=range(5)))  # all-empty batch
    cases.append(random_binary_batch(gen, 1))  # a batch of one frame
    logits, gt = random_binary_batch(gen, 4, logit_scale=40.0)  # saturated: p exactly 0 or 1
    cases.append((logits, gt))
    logits = torch.zeros(3, 8, 8)  # p = 0.5 exactly: not > 0.5 for J, >= t_127 = 0.5 for F
    gt = torch.zeros(3, 8, 8)
    gt[0, :4] = 1
    gt[2] = 1  # full mask
    cases.append((logits, gt))
    logits, gt = random_binary_batch(gen, 3)
    gt[0] = 1
    cases.append((logits, gt))
    # around p = 0.5 (0.5 itself and its float neighbours on both sides): the Jaccard's
    # p > 0.5 and the F thresholds t_127 = 0.5, t_128 split these pixels differently
    logits = torch.linspace(-1e-6, 1e-6, 3 * 64).view(3, 8, 8)
    logits = logits[:, torch.randperm(8, generator=gen)]
    gt = (torch.rand(3, 8, 8, generator=gen) < 0.5).float()
    cases.append((logits, gt))
    return cases


# ---------------------------------------------------------------- golden values


def test_binary_golden_per_batch():
    golden = np.load(require(GOLDEN / "metrics_binary.npz"))
    metrics = BinaryMetrics()
    for b in range(8):
        logits = torch.from_numpy(golden[f"logits_{b}"])
        gt = torch.from_numpy(golden[f"gt_{b}"])
        assert official_batch_miou(logits, gt) == pytest.approx(golden[f"miou_{b}"], abs=1e-6)
        assert official_batch_fscore(logits, gt) == pytest.approx(golden[f"fscore_{b}"], abs=1e-5)
        metrics.update(logits, gt)
    result = metrics.compute()
    expected_miou = np.mean([golden[f"miou_{b}"] for b in range(8)])
    expected_f = np.mean([golden[f"fscore_{b}"] for b in range(8)])
    assert result["miou"] == pytest.approx(expected_miou, abs=1e-6)
    assert result["fscore"] == pytest.approx(expected_f, abs=1e-5)
    assert result["num_batches"] == 8


def test_semantic_golden():
    golden = np.load(require(GOLDEN / "metrics_semantic.npz"))
    metrics = SemanticMetrics(num_classes=71)
    for b in range(3):
        metrics.update(torch.from_numpy(golden[f"logits_{b}"]), torch.from_numpy(golden[f"gt_{b}"]))
    result = metrics.compute()
    assert result["miou"] == pytest.approx(float(golden["miou"]), abs=1e-6)
    assert result["fscore"] == pytest.approx(float(golden["fscore"]), abs=1e-6)
    np.testing.assert_allclose(result["per_class_iou"], golden["per_class_iou"], atol=1e-6)
    np.testing.assert_allclose(result["per_class_fscore"], golden["per_class_fscore"], atol=1e-6)
    assert result["num_frames"] == 30


# ---------------------------------------------------------------- binary metrics


def test_threshold_buckets_equal_searchsorted_at_every_threshold():
    thresholds = fscore_thresholds()
    assert thresholds[-1].item() == 1.0 and thresholds[127].item() == 0.5  # float32 rounding
    up, down = (
        torch.nextafter(thresholds, torch.tensor(2.0)),
        torch.nextafter(thresholds, torch.tensor(-1.0)),
    )
    values = torch.cat(
        [thresholds, up, down, torch.rand(20000, generator=torch.Generator().manual_seed(0))]
    )
    values = values.clamp(0, 1)
    expected = torch.searchsorted(thresholds, values, right=True)
    buckets = _threshold_buckets(values)
    assert buckets.dtype == torch.int32 and torch.equal(buckets.long(), expected)


@pytest.mark.parametrize("case", range(9))
def test_binary_batch_values_equal_loops(case):
    logits, gt = binary_cases()[case]
    ref_miou, ref_f = ref_binary_batch(logits, gt)
    assert official_batch_miou(logits, gt) == pytest.approx(ref_miou, abs=1e-12)
    assert official_batch_fscore(logits, gt) == pytest.approx(ref_f, abs=1e-12)
    # [n, 1, H, W] logits and bool / uint8 masks give the same values
    assert official_batch_fscore(logits[:, None], gt.bool()) == pytest.approx(ref_f, abs=1e-12)
    assert official_batch_miou(logits, gt.to(torch.uint8)) == pytest.approx(ref_miou, abs=1e-12)


def test_binary_known_values():
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2] = 5.0  # predicts the top half of frame 0
    gt = torch.zeros(2, 4, 4)
    gt[0, :, :2] = 1  # left half
    # frame 0: I = 4, U = 12 -> 1/3; frame 1 (empty gt, empty prediction): TN = 16/16 = 1
    assert official_batch_miou(logits, gt) == pytest.approx((1 / 3 + 1) / 2, abs=1e-6)
    # frame 1 is skipped for F; frame 0: thresholds up to p = sigmoid(-5) predict all 16
    # pixels (P = 1/2, R = 1 -> F = 0.565), the next ones the top half (P = R = 1/2 -> 0.5)
    f_all = 1.3 * 0.5 * 1.0 / (0.3 * 0.5 + 1.0)
    assert official_batch_fscore(logits, gt) == pytest.approx(f_all, abs=1e-6)
    assert official_batch_fscore(logits[1:], gt[1:]) == 0.0  # no kept frame


def test_binary_accumulator_variants_equal_loops():
    cases = binary_cases()
    metrics = BinaryMetrics()
    batch_mious, batch_fs, frame_ious, curves, inter, union = [], [], [], [], 0.0, 0.0
    for logits, gt in cases:
        metrics.update(logits, gt)
        ious, frame_curves, inters, unions = ref_binary_frames(logits, gt)
        m, f = ref_binary_batch(logits, gt)
        batch_mious.append(m)
        batch_fs.append(f)
        frame_ious += ious
        curves += [c for c in frame_curves if c is not None]
        inter += sum(inters)
        union += sum(unions)
    result = metrics.compute()
    assert result["miou"] == pytest.approx(np.mean(batch_mious), abs=1e-12)
    assert result["fscore"] == pytest.approx(np.mean(batch_fs), abs=1e-12)
    assert result["miou_per_frame"] == pytest.approx(np.mean(frame_ious), abs=1e-12)
    assert result["fscore_dataset_curve"] == pytest.approx(np.mean(curves, axis=0).max(), abs=1e-12)
    assert result["iou_dataset"] == pytest.approx(inter / union, abs=1e-12)
    assert result["num_frames"] == len(frame_ious)
    assert result["num_kept_frames"] == len(curves)
    # the official values depend on the batching; the per-frame variant does not
    assert result["miou"] != pytest.approx(result["miou_per_frame"], abs=1e-6)


def test_binary_fscore_depends_on_batch_size_but_variants_do_not():
    gen = torch.Generator().manual_seed(5)
    logits, gt = random_binary_batch(gen, 8, empty=(2,))
    whole, split = BinaryMetrics(), BinaryMetrics()
    whole.update(logits, gt)
    for i in range(0, 8, 2):
        split.update(logits[i : i + 2], gt[i : i + 2])
    a, b = whole.compute(), split.compute()
    assert a["fscore"] != pytest.approx(b["fscore"], abs=1e-4)
    for key in ("miou_per_frame", "fscore_dataset_curve", "iou_dataset"):
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_binary_merged_states_equal_one_accumulator():
    cases = binary_cases()
    one, first, second = BinaryMetrics(), BinaryMetrics(), BinaryMetrics()
    for i, (logits, gt) in enumerate(cases):
        one.update(logits, gt)
        (first if i % 2 else second).update(logits, gt)
    # what an all-reduce(SUM) does: add the state tensors and load the sum
    summed = {k: v + second.state_tensors()[k] for k, v in first.state_tensors().items()}
    reduced = BinaryMetrics()
    reduced.load_state_tensors(summed)
    expected = one.compute()
    for key, value in reduced.compute().items():
        assert value == pytest.approx(expected[key], abs=1e-12), key
    first.merge(second)
    assert first.compute() == pytest.approx(expected, abs=1e-12)


def test_binary_reset_and_errors():
    metrics = BinaryMetrics()
    with pytest.raises(RuntimeError, match="before any update"):
        metrics.compute()
    logits, gt = random_binary_batch(torch.Generator().manual_seed(0), 2)
    metrics.update(logits, gt)
    metrics.reset()
    with pytest.raises(RuntimeError):
        metrics.compute()
    with pytest.raises(ValueError, match="binary"):
        official_batch_miou(logits, gt * 0.5)
    with pytest.raises(ValueError, match="binary"):
        official_batch_miou(logits, gt * 255)
    with pytest.raises(ValueError, match="same shape"):
        official_batch_miou(logits, gt[:, :8])
    with pytest.raises(ValueError, match="NaN"):
        official_batch_fscore(logits * float("nan"), gt)
    with pytest.raises(KeyError, match="missing"):
        metrics.load_state_tensors({"num_batches": torch.tensor(1.0)})


def test_binary_frame_stats_fields():
    logits, gt = binary_cases()[0]
    stats = binary_frame_stats(logits, gt)
    ious, curves, inters, unions = ref_binary_frames(logits, gt)
    np.testing.assert_allclose(stats["iou"].numpy(), ious, atol=1e-12)
    assert stats["kept"].tolist() == [c is not None for c in curves]
    np.testing.assert_array_equal(stats["inter"].numpy(), inters)
    np.testing.assert_array_equal(stats["union"].numpy(), unions)
    np.testing.assert_allclose(stats["fcurve"][0].numpy(), curves[0], atol=1e-12)
    assert torch.all(stats["fcurve"][1] == 0)  # empty frame: R = 0/1e-20 = 0 -> F = 0


# ---------------------------------------------------------------- semantic metrics


def semantic_cases(num_classes, gen, frames=6, size=12, pad=2, used=(0, 2, 3)):
    """Batches whose gt uses only `used` classes (others absent); the last `pad` frames of
    each batch are padding: zero logits (argmax -> 0) and zero labels."""
    batches = []
    for _ in range(3):
        logits = torch.randn(frames, num_classes, size, size, generator=gen)
        logits[:, list(used)] += 6.0  # predictions among the used classes only
        pick = torch.randint(0, len(used), (frames, size, size), generator=gen)
        gt = torch.tensor(used)[pick]
        logits[frames - pad :] = 0
        gt[frames - pad :] = 0
        batches.append((logits, gt))
    return batches


@pytest.mark.parametrize("num_classes, used", [(5, (0, 2, 3)), (71, (0, 1, 7, 70)), (6, (1, 2))])
def test_semantic_values_equal_loops(num_classes, used):
    batches = semantic_cases(num_classes, torch.Generator().manual_seed(num_classes), used=used)
    metrics = SemanticMetrics(num_classes=num_classes)
    for logits, gt in batches:
        metrics.update(logits, gt)
    result = metrics.compute()
    iou_pc, f_pc, count = ref_semantic(batches, num_classes)
    np.testing.assert_allclose(result["per_class_iou"], iou_pc, atol=1e-12)
    np.testing.assert_allclose(result["per_class_fscore"], f_pc, atol=1e-12)
    assert result["class_frame_count"] == count.astype(int).tolist()
    assert result["miou"] == pytest.approx(iou_pc.mean(), abs=1e-12)
    assert result["fscore"] == pytest.approx(f_pc.mean(), abs=1e-12)
    assert result["miou_official_nobg"] == pytest.approx(iou_pc[:-1].mean(), abs=1e-12)
    assert result["fscore_official_nobg"] == pytest.approx(f_pc[:-1].mean(), abs=1e-12)
    assert result["miou_no_background"] == pytest.approx(iou_pc[1:].mean(), abs=1e-12)
    assert result["fscore_no_background"] == pytest.approx(f_pc[1:].mean(), abs=1e-12)
    present = count > 0
    assert not present.all()  # some classes never occur: the official mean counts them as 0
    assert result["miou_present_classes"] == pytest.approx(iou_pc[present].mean(), abs=1e-12)
    assert result["fscore_present_classes"] == pytest.approx(f_pc[present].mean(), abs=1e-12)
    assert result["num_frames"] == sum(len(gt) for _, gt in batches)


def test_semantic_padding_counts_as_perfect_background():
    logits = torch.zeros(2, 4, 3, 3)  # padded frames: argmax 0, labels 0
    gt = torch.zeros(2, 3, 3, dtype=torch.int64)
    metrics = SemanticMetrics(num_classes=4)
    metrics.update(logits, gt)
    result = metrics.compute()
    assert result["per_class_iou"] == [1.0, 0.0, 0.0, 0.0]
    assert result["miou"] == pytest.approx(0.25)
    assert result["miou_present_classes"] == pytest.approx(1.0)
    assert result["miou_no_background"] == 0.0 and result["miou_official_nobg"] == pytest.approx(
        1 / 3
    )


def test_semantic_merged_states_equal_one_accumulator():
    batches = semantic_cases(7, torch.Generator().manual_seed(3), used=(0, 1, 5))
    one, first, second = SemanticMetrics(7), SemanticMetrics(7), SemanticMetrics(7)
    for i, (logits, gt) in enumerate(batches):
        one.update(logits, gt)
        (first if i == 0 else second).update(logits, gt)
    summed = {k: v + second.state_tensors()[k] for k, v in first.state_tensors().items()}
    reduced = SemanticMetrics(7)
    reduced.load_state_tensors(summed)
    expected = one.compute()
    got = reduced.compute()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-12, err_msg=key)
    with pytest.raises(ValueError, match="shape"):
        SemanticMetrics(8).load_state_tensors(summed)


def test_semantic_errors():
    metrics = SemanticMetrics(num_classes=4)
    logits = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metrics.update(logits, torch.full((1, 3, 3), 4))
    with pytest.raises(ValueError, match="integer"):
        metrics.update(logits, torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="classes"):
        metrics.update(torch.zeros(1, 5, 3, 3), torch.zeros(1, 3, 3, dtype=torch.int64))
    with pytest.raises(RuntimeError):
        metrics.compute()
