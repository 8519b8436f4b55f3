"""The dataset-level protocol (`avsbench.metrics_dataset`) against the values DDESeg's and
CAVP's published metric code gave on the same inputs (tests/golden/protocols), and the gap
between the per-frame and the dataset-level protocols on a case worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench.metrics import BinaryMetrics
from avsbench.metrics_dataset import DatasetLevelMetrics, ddeseg_scores
from tests.golden_files import GOLDEN_ROOT, require

GOLDEN_FILE = GOLDEN_ROOT / "protocols" / "dataset_level_golden.npz"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(require(GOLDEN_FILE)) as data:
        return {k: data[k] for k in data.files}


def _semantic_scores(pred: np.ndarray) -> torch.Tensor:
    """Scores [n, 71, H, W] whose argmax is `pred` (the one-hot the golden run used)."""
    ids = torch.from_numpy(pred.astype(np.int64))
    return torch.nn.functional.one_hot(ids, 71).permute(0, 3, 1, 2).float()


def _accumulate(metric: DatasetLevelMetrics, logits, gt, batches) -> dict:
    for part in batches:
        metric.update(logits[part], gt[part])
    return metric.compute()


def test_binary_matches_ddeseg_and_cavp(golden):
    logits = torch.from_numpy(golden["binary_logits"])
    gt = torch.from_numpy(golden["binary_gt"].astype(np.int64))
    # batching does not matter: 12 frames one by one vs the golden run's 3 batches of 4
    metric = DatasetLevelMetrics(2)
    result = _accumulate(metric, logits, gt, [slice(i, i + 1) for i in range(12)])
    assert "per_class_iou_dataset_ddeseg" not in result  # binary: scalars only
    ddeseg = [
        result[k] for k in ("miou_dataset_ddeseg", "f1_dataset_ddeseg", "fscore_dataset_ddeseg")
    ]
    np.testing.assert_allclose(ddeseg, golden["binary_ddeseg"], atol=1e-6, rtol=0)
    per_class = ddeseg_scores(metric.state_tensors()["confusion"])["per_class_iou_dataset_ddeseg"]
    np.testing.assert_allclose(per_class, golden["binary_ddeseg_per_class_iou"], atol=1e-6)
    cavp = [result[k] for k in ("miou_dataset_cavp", "f1_dataset_cavp", "fscore_dataset_cavp")]
    np.testing.assert_allclose(
        cavp + [result["fdr_dataset_cavp"]], golden["binary_cavp"], atol=1e-9
    )
    rounded = golden["binary_cavp_rounded"]  # mIoU, acc, FDR, F1, F_0.3 at 4 decimals
    assert [round(v, 4) for v in (cavp[0], result["fdr_dataset_cavp"], cavp[1], cavp[2])] == [
        pytest.approx(float(rounded[i]), abs=1e-12) for i in (0, 2, 3, 4)
    ]
    assert result["num_frames_dataset"] == 12


def test_semantic_matches_ddeseg_and_cavp(golden):
    scores = _semantic_scores(golden["semantic_pred"])
    gt = torch.from_numpy(golden["semantic_gt"].astype(np.int64))
    result = _accumulate(DatasetLevelMetrics(71), scores, gt, [slice(0, 3), slice(3, 10)])
    ddeseg = [
        result[k] for k in ("miou_dataset_ddeseg", "f1_dataset_ddeseg", "fscore_dataset_ddeseg")
    ]
    np.testing.assert_allclose(ddeseg, golden["semantic_ddeseg"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        result["per_class_iou_dataset_ddeseg"], golden["semantic_ddeseg_per_class_iou"], atol=1e-6
    )
    cavp = [result[k] for k in ("miou_dataset_cavp", "f1_dataset_cavp", "fscore_dataset_cavp")]
    np.testing.assert_allclose(
        cavp + [result["fdr_dataset_cavp"]], golden["semantic_cavp"], atol=1e-9
    )
    # the two published codes differ on AVSS: CAVP averages mIoU over all 71 classes
    assert result["miou_dataset_cavp"] < result["miou_dataset_ddeseg"] / 5


def test_cavp_ignores_label_255(golden):
    scores = _semantic_scores(golden["semantic_pred"])
    gt = torch.from_numpy(golden["semantic_gt_ignore"].astype(np.int64))
    result = _accumulate(DatasetLevelMetrics(71), scores, gt, [slice(0, 10)])
    cavp = [result[k] for k in ("miou_dataset_cavp", "f1_dataset_cavp", "fscore_dataset_cavp")]
    np.testing.assert_allclose(
        cavp + [result["fdr_dataset_cavp"]], golden["semantic_ignore_cavp"], atol=1e-9
    )


def test_padding_frames_are_left_out(golden):
    scores = _semantic_scores(golden["semantic_pred"])
    gt = torch.from_numpy(golden["semantic_gt"].astype(np.int64))
    pad_scores, pad_gt = torch.zeros(5, 71, 16, 16), torch.zeros(5, 16, 16, dtype=torch.long)
    # 2 clips of 10 frames: 5 real then 5 padding frames each
    padded_scores = torch.cat([scores[:5], pad_scores, scores[5:], pad_scores])
    padded_gt = torch.cat([gt[:5], pad_gt, gt[5:], pad_gt])
    valid = torch.tensor([[1.0] * 5 + [0.0] * 5] * 2)  # [2 clips, 10]
    metric = DatasetLevelMetrics(71)
    metric.update(padded_scores, padded_gt, valid)
    result = metric.compute()
    assert result["num_frames_dataset"] == 10
    assert result["miou_dataset_ddeseg"] == pytest.approx(
        float(golden["semantic_ddeseg"][0]), abs=1e-6
    )


def test_state_sums_like_one_process(golden):
    logits = torch.from_numpy(golden["binary_logits"])
    gt = torch.from_numpy(golden["binary_gt"].astype(np.int64))
    first, second, whole = DatasetLevelMetrics(2), DatasetLevelMetrics(2), DatasetLevelMetrics(2)
    first.update(logits[:5], gt[:5])
    second.update(logits[5:], gt[5:])
    whole.update(logits, gt)
    summed = {k: v + second.state_tensors()[k] for k, v in first.state_tensors().items()}
    first.load_state_tensors(summed)
    assert first.compute() == whole.compute()


def test_published_gap_between_protocols():
    """Frame A: a 1-pixel object missed; frame B: a 50-pixel object found exactly (10 x 10).
    Per frame (AVSBench): IoU 0 and 1, mIoU 0.5. Dataset level: foreground 50 / 51,
    background 149 / 150, J = (50/51 + 149/150) / 2 = 0.98693...: the same masks score
    0.49 higher, the kind of gap between CAVP's 78.78 (per frame) and ~90 (J) on S4."""
    gt = torch.zeros(2, 10, 10, dtype=torch.long)
    gt[0, 0, 0] = 1
    gt[1, :5] = 1
    logits = torch.full((2, 1, 10, 10), -10.0)
    logits[1, 0, :5] = 10.0
    per_frame = BinaryMetrics()
    per_frame.update(logits, gt.float())
    dataset = DatasetLevelMetrics(2)
    dataset.update(logits, gt)
    official = per_frame.compute()["miou"]
    level = dataset.compute()
    assert official == pytest.approx(0.5, abs=1e-6)
    expected = (50 / 51 + 149 / 150) / 2
    assert level["miou_dataset_ddeseg"] == pytest.approx(expected, abs=1e-9)
    assert level["miou_dataset_cavp"] == pytest.approx(expected, abs=1e-9)
    assert level["miou_dataset_ddeseg"] - official > 0.48


def test_bad_ground_truth_is_refused():
    metric = DatasetLevelMetrics(2)
    with pytest.raises(ValueError, match=r"ground-truth ids must lie in \[0, 2\)"):
        metric.update(torch.zeros(1, 1, 4, 4), torch.full((1, 4, 4), 3))
