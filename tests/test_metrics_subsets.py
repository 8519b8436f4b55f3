"""Tests of the AVSS per-subset metrics (`SubsetSemanticMetrics`, `subset_rows`): each
subset's numbers equal the official accumulation (a plain loop written here) run on that
subset's frames alone, and the whole-set numbers equal one `SemanticMetrics` over all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench.metrics import SemanticMetrics
from avsbench.metrics_subsets import SubsetSemanticMetrics, subset_rows

T = 10  # AVSS clips are padded to 10 frames


def official_loop(frames, num_classes):
    """The official AVSS accumulation over (logits [K, H, W], gt [H, W]) frames, as loops:
    per-class sums of IoU and F over frames, divided by the frames where the class is in
    the union; mean over all classes."""
    s_iou, s_f, count = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    for logits, gt in frames:
        pred = torch.softmax(logits.float(), dim=0).argmax(0).numpy()
        gt = gt.numpy()
        for c in range(num_classes):
            inter = np.sum((pred == c) & (gt == c))
            predicted, labelled = np.sum(pred == c), np.sum(gt == c)
            union = predicted + labelled - inter
            s_iou[c] += inter / (union + 2.220446049250313e-16)
            count[c] += union > 0
            if inter > 0:
                p, r = inter / predicted, inter / labelled
                s_f[c] += 1.3 * p * r / (0.3 * p + r)
    with np.errstate(invalid="ignore"):
        iou = np.nan_to_num(s_iou / count, nan=0.0)
        f = np.nan_to_num(s_f / count, nan=0.0)
    return iou.mean(), f.mean(), iou[count > 0].mean()


def clip_batches(num_classes, gen, labels, size=8):
    """Batches of clips [B*T, K, S, S] / [B*T, S, S]; v1 clips have 5 real frames, then
    padding (zero logits, zero labels), v2 clips 10. Returns [(logits, gt, labels)]."""
    batches = []
    for batch_labels in labels:
        b = len(batch_labels)
        logits = torch.randn(b * T, num_classes, size, size, generator=gen) * 2
        gt = torch.randint(0, num_classes, (b * T, size, size), generator=gen)
        for i, label in enumerate(batch_labels):
            real = 10 if label == "v2" else 5
            logits[i * T + real : (i + 1) * T] = 0
            gt[i * T + real : (i + 1) * T] = 0
        batches.append((logits, gt, list(batch_labels)))
    return batches


LABELS = [("v1s", "v2", "v1m"), ("v1m", "v1m"), ("v2", "v1s", "v1s", "v1m")]


def test_each_subset_equals_the_official_loop_on_its_frames_alone():
    k = 6
    batches = clip_batches(k, torch.Generator().manual_seed(0), LABELS)
    metric = SubsetSemanticMetrics(num_classes=k)
    whole = SemanticMetrics(num_classes=k)
    for logits, gt, labels in batches:
        metric.update(logits, gt, labels)
        whole.update(logits, gt)
    result = metric.compute()
    for subset in ("v1s", "v1m", "v2"):
        frames = [
            (logits[i * T + f], gt[i * T + f])
            for logits, gt, labels in batches
            for i, label in enumerate(labels)
            if label == subset
            for f in range(T)
        ]
        miou, fscore, present = official_loop(frames, k)
        got = result["subsets"][subset]
        assert got["miou"] == pytest.approx(miou, abs=1e-12)
        assert got["fscore"] == pytest.approx(fscore, abs=1e-12)
        assert got["miou_present_classes"] == pytest.approx(present, abs=1e-12)
        assert got["num_frames"] == len(frames)
        assert got["num_clips"] == sum(labels.count(subset) for _, _, labels in batches)
    expected = whole.compute()
    for key, value in expected.items():
        np.testing.assert_allclose(result[key], value, atol=1e-12, err_msg=key)
    # the subsets really differ: a subset's number is not the whole-set number
    assert result["subsets"]["v2"]["miou"] != pytest.approx(result["miou"], abs=1e-6)


def test_rows_list_the_subsets_then_all():
    k = 5
    batches = clip_batches(k, torch.Generator().manual_seed(1), [("v2", "v1s"), ("v1s",)])
    metric = SubsetSemanticMetrics(num_classes=k)
    for logits, gt, labels in batches:
        metric.update(logits, gt, labels)
    result = metric.compute()
    rows = subset_rows(result)
    assert [r["subset"] for r in rows] == ["v1s", "v2", "all"]  # v1m has no clip: no row
    assert [r["num_clips"] for r in rows] == [2, 1, 3]
    assert [r["num_frames"] for r in rows] == [20, 10, 30]
    assert rows[0]["miou"] == result["subsets"]["v1s"]["miou"]
    assert rows[-1]["fscore"] == result["fscore"]
    assert set(rows[0]) == {"subset", "num_clips", "num_frames", "miou", "fscore",
                            "miou_present_classes", "fscore_present_classes"}  # fmt: skip


def test_summed_states_equal_one_accumulator():
    k = 4
    batches = clip_batches(k, torch.Generator().manual_seed(2), LABELS)
    one, first, second = (SubsetSemanticMetrics(k) for _ in range(3))
    for i, (logits, gt, labels) in enumerate(batches):
        one.update(logits, gt, labels)
        (first if i % 2 == 0 else second).update(logits, gt, labels)
    summed = {key: v + second.state_tensors()[key] for key, v in first.state_tensors().items()}
    reduced = SubsetSemanticMetrics(k)
    reduced.load_state_tensors(summed)
    expected, got = one.compute(), reduced.compute()
    assert got["subsets"].keys() == expected["subsets"].keys()
    for subset in expected["subsets"]:
        for key, value in expected["subsets"][subset].items():
            np.testing.assert_allclose(got["subsets"][subset][key], value, atol=1e-12)
    assert got["miou"] == pytest.approx(expected["miou"], abs=1e-12)


def test_bad_subsets_are_refused():
    metric = SubsetSemanticMetrics(num_classes=3)
    logits, gt = torch.zeros(20, 3, 2, 2), torch.zeros(20, 2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="unknown subset"):
        metric.update(logits, gt, ["v1s", "v3"])
    with pytest.raises(ValueError, match="cannot be split"):
        metric.update(logits, gt, ["v1s", "v1m", "v2"])
    with pytest.raises(RuntimeError):
        metric.compute()
    with pytest.raises(ValueError, match="distinct"):
        SubsetSemanticMetrics(3, subsets=("a", "a"))
