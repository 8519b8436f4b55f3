"""Tests of avsbench.metrics_protocols (the metrics as VCT's and COMBO's own evaluators
compute them) against loops written here that follow those evaluators step by step:
`sem_seg_evaluation.py` per clip (frames x thresholds) and `sem_seg_evaluation_ss.py` per
frame with torch.histc, on random and hand-made cases; and the test command's report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avsbench.metrics import BinaryMetrics, SemanticMetrics
from avsbench.metrics_protocols import (
    PerClipBinaryMetrics,
    VctComboSemanticMetrics,
    per_clip_binary_stats,
)

# ---------------------------------------------------------------- references (loops)


def ref_clip_iou(prob: torch.Tensor, gt: torch.Tensor) -> float:
    """`mask_iou` of one clip: prob, gt [T, H, W]; p > 0.5; empty gt: true negatives / H*W."""
    total = 0.0
    for f in range(prob.shape[0]):
        p = (prob[f] > 0.5).int()
        g = gt[f].int()
        if int(g.sum()) == 0:
            inter, union = int(((1 - g) * (1 - p)).sum()), g.numel()
        else:
            inter, union = int((p * g).sum()), int(torch.max(p, g).sum())
        total += inter / (union + 1e-7)
    return total / prob.shape[0]


def ref_clip_fscore(prob: torch.Tensor, gt: torch.Tensor) -> float:
    """`Eval_Fmeasure` of one clip: the F curve of every non-empty frame from a loop over the
    255 float32 thresholds (precision and recall kept in float32 tensors), mean curve over
    those frames, its max; 0 when every frame is empty."""
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    total, used = torch.zeros(255), 0
    for f in range(prob.shape[0]):
        g = gt[f].float()
        if torch.mean(g) == 0.0:
            continue
        precision, recall = torch.zeros(255), torch.zeros(255)
        for k in range(255):
            q = (prob[f] >= thresholds[k]).float()
            tp = (q * g).sum()
            precision[k] = tp / (q.sum() + 1e-20)
            recall[k] = tp / (g.sum() + 1e-20)
        curve = 1.3 * precision * recall / (0.3 * precision + recall)
        curve[curve != curve] = 0
        total += curve
        used += 1
    return (total / used).max().item() if used else 0.0


def ref_per_clip(logits: torch.Tensor, gt: torch.Tensor, frames_per_clip: int) -> dict:
    """Clip after clip, as detectron2's test loader feeds the evaluator; then means."""
    # p = softmax over the two sem_seg channels, channel 1 (sem_seg = [0, logit] here)
    sem_seg = torch.stack([torch.zeros_like(logits), logits], dim=1)  # [n, 2, H, W]
    prob = torch.softmax(sem_seg, dim=1)[:, 1]
    ious, fscores = [], []
    for start in range(0, logits.shape[0], frames_per_clip):
        clip = slice(start, start + frames_per_clip)
        ious.append(ref_clip_iou(prob[clip], gt[clip]))
        fscores.append(ref_clip_fscore(prob[clip], gt[clip]))
    return {"miou": sum(ious) / len(ious), "fscore": sum(fscores) / len(fscores)}


def ref_avss(logits: torch.Tensor, gt: torch.Tensor) -> dict:
    """`sem_seg_evaluation_ss.py`: per frame, class ids shifted by one, torch.histc of the
    intersection, prediction and (shifted) labels over [1, K] (so 255 + 1 falls outside),
    float32 sums over frames; per class sum / frame count, NaN -> 0, mean over all K."""
    k = logits.shape[1]
    predict = (torch.argmax(torch.softmax(logits, dim=1), 1) + 1).float()
    target = gt.float() + 1
    predict = predict * (target > 0).float()
    intersection = predict * (predict == target).float()
    ious, fscores, counts = torch.zeros(k), torch.zeros(k), torch.zeros(k)
    for f in range(gt.shape[0]):
        area_inter = torch.histc(intersection[f], bins=k, min=1, max=k)
        area_pred = torch.histc(predict[f], bins=k, min=1, max=k)
        area_lab = torch.histc(target[f], bins=k, min=1, max=k)
        area_union = area_pred + area_lab - area_inter
        ious += area_inter / (2.220446049250313e-16 + area_union)
        counts[torch.nonzero(area_union).squeeze(-1)] += 1
        precision, recall = area_inter / area_pred, area_inter / area_lab
        fscore = 1.3 * precision * recall / (0.3 * precision + recall)
        fscore[torch.isnan(fscore)] = 0.0
        fscores += fscore
    per_class_iou, per_class_f = ious / counts, fscores / counts
    per_class_iou[torch.isnan(per_class_iou)] = 0
    per_class_f[torch.isnan(per_class_f)] = 0
    return {"miou": per_class_iou.mean().item(), "fscore": per_class_f.mean().item(),
            "per_class_iou": per_class_iou, "count": counts}  # fmt: skip


# ---------------------------------------------------------------- helpers


def random_binary_clips(clips: int, seed: int, size: int = 12) -> tuple[torch.Tensor, ...]:
    """logits [clips*5, size, size] and masks with empty frames and one all-empty clip."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(clips * 5, size, size, generator=g) * 2.0
    masks = (torch.rand(clips * 5, size, size, generator=g) > 0.6).long()
    masks[torch.rand(clips * 5, generator=g) < 0.25] = 0  # empty ground truths
    masks[5:10] = 0  # clip 1: every frame empty (its F is 0)
    logits += masks * 1.5  # better than chance
    return logits, masks


def all_valid(clips: int, frames: int = 5) -> torch.Tensor:
    return torch.ones(clips, frames)


def per_clip(logits, masks, clips_per_batch: int) -> dict:
    metric = PerClipBinaryMetrics()
    step = clips_per_batch * 5
    for start in range(0, logits.shape[0], step):
        part = slice(start, start + step)
        metric.update(logits[part], masks[part], all_valid(logits[part].shape[0] // 5))
    return metric.compute()


# ---------------------------------------------------------------- S4 / MS3 per clip


def test_per_clip_equals_the_evaluator_loop_on_random_clips():
    logits, masks = random_binary_clips(clips=7, seed=0)
    expected = ref_per_clip(logits, masks, 5)
    got = per_clip(logits, masks, clips_per_batch=4)
    assert got["miou_per_clip"] == pytest.approx(expected["miou"], abs=1e-9)
    assert got["fscore_per_clip"] == pytest.approx(expected["fscore"], abs=1e-6)
    assert got["num_clips"] == 7


def test_per_clip_values_do_not_depend_on_the_test_batch():
    logits, masks = random_binary_clips(clips=8, seed=1)
    at1, at4 = per_clip(logits, masks, 1), per_clip(logits, masks, 4)
    assert at4 == pytest.approx(at1, abs=1e-12)
    # the official per-batch F does (so the protocol matters), and at batch 1 is per clip
    official4, official1 = BinaryMetrics(), BinaryMetrics()
    for start in range(0, 40, 20):
        official4.update(logits[start : start + 20], masks[start : start + 20])
    for start in range(0, 40, 5):
        official1.update(logits[start : start + 5], masks[start : start + 5])
    assert abs(official4.compute()["fscore"] - at1["fscore_per_clip"]) > 1e-3
    assert official1.compute()["fscore"] == pytest.approx(at1["fscore_per_clip"], abs=1e-12)
    assert official1.compute()["miou"] == pytest.approx(at1["miou_per_clip"], abs=1e-12)


def _logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p, dtype=torch.float64)))


def test_a_hand_made_clip_with_an_empty_frame():
    """Frame 0: gt 1100, p = .9 .2 .7 .1 (prediction 1010: I 1, U 3); frame 1: gt empty,
    prediction 0001 (3 true negatives of 4). J = (1/3 + 3/4) / 2. F uses frame 0 only:
    its best threshold lies in (0.7, 0.9]: P = 1, R = 1/2, F = 0.65 / 0.8 = 0.8125.
    Clip 2: every frame empty: F = 0, J = the true-negative fractions."""
    probs = [[0.9, 0.2, 0.7, 0.1], [0.1, 0.3, 0.2, 0.8], [0.6, 0.1, 0.1, 0.1], [0.1] * 4]
    logits = torch.tensor([[[_logit(p) for p in row]] for row in probs], dtype=torch.float32)
    masks = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[0, 0, 0, 0]], [[0, 0, 0, 0]]])
    clip_iou, clip_f, has_frames = per_clip_binary_stats(logits, masks, all_valid(2, 2))
    assert clip_iou.tolist() == pytest.approx([(1 / 3 + 3 / 4) / 2, (3 / 4 + 1) / 2], abs=1e-6)
    assert clip_f.tolist() == pytest.approx([0.8125, 0.0], abs=1e-6)
    assert has_frames.tolist() == [True, True]
    metric = PerClipBinaryMetrics()
    metric.update(logits, masks, all_valid(2, 2))
    expected = ref_per_clip(logits, masks, 2)
    assert metric.compute()["miou_per_clip"] == pytest.approx(expected["miou"], abs=1e-9)
    assert metric.compute()["fscore_per_clip"] == pytest.approx(0.8125 / 2, abs=1e-6)
    # a frame marked as not real is left out of its clip
    metric = PerClipBinaryMetrics()
    metric.update(logits, masks, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert metric.compute()["miou_per_clip"] == pytest.approx((1 / 3 + 7 / 8) / 2, abs=1e-6)


def test_per_clip_states_add_up_across_processes():
    logits, masks = random_binary_clips(clips=6, seed=2)
    whole, first, second = PerClipBinaryMetrics(), PerClipBinaryMetrics(), PerClipBinaryMetrics()
    whole.update(logits, masks, all_valid(6))
    first.update(logits[:15], masks[:15], all_valid(3))
    second.update(logits[15:], masks[15:], all_valid(3))
    summed = {k: v + second.state_tensors()[k] for k, v in first.state_tensors().items()}
    first.load_state_tensors(summed)
    assert first.compute() == pytest.approx(whole.compute(), abs=1e-12)


def test_per_clip_refuses_a_frame_valid_that_does_not_cover_the_batch():
    logits, masks = random_binary_clips(clips=2, seed=3)
    with pytest.raises(ValueError, match=r"frame_valid must be \[clips, frames per clip\]"):
        PerClipBinaryMetrics().update(logits, masks, torch.ones(10))
    with pytest.raises(RuntimeError, match="before any update"):
        PerClipBinaryMetrics().compute()


# ---------------------------------------------------------------- AVSS


def random_avss(frames: int, seed: int, classes: int = 71, size: int = 10):
    """logits [frames, K, size, size] and labels with a few classes per frame and 255s."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (frames, size, size), generator=g)
    labels[torch.rand(frames, size, size, generator=g) < 0.05] = 255
    logits = torch.randn(frames, classes, size, size, generator=g)
    clean = labels.clamp(max=classes - 1)
    logits.scatter_add_(1, clean.unsqueeze(1), torch.full_like(logits[:, :1], 4.0))
    return logits, labels


def test_avss_equals_the_evaluator_loop_on_random_frames():
    logits, labels = random_avss(frames=20, seed=0)
    metric = VctComboSemanticMetrics()
    for start in range(0, 20, 10):
        metric.update(logits[start : start + 10], labels[start : start + 10], all_valid(1, 10))
    got, expected = metric.compute(), ref_avss(logits, labels)
    assert got["miou_vct_combo_avss"] == pytest.approx(expected["miou"], abs=1e-6)
    assert got["fscore_vct_combo_avss"] == pytest.approx(expected["fscore"], abs=1e-6)
    assert got["per_class_iou_vct_combo_avss"] == pytest.approx(
        expected["per_class_iou"].tolist(), abs=1e-6
    )
    assert got["class_frame_count_vct_combo_avss"] == [int(c) for c in expected["count"]]
    assert got["num_frames_vct_combo_avss"] == 20
    assert 0 < sum(c > 0 for c in got["class_frame_count_vct_combo_avss"]) < 71


def one_hot_logits(pred: list[list[int]], classes: int) -> torch.Tensor:
    """Logits [n, K, 1, W] whose argmax is `pred` [n][W]."""
    ids = torch.tensor(pred).unsqueeze(1)  # [n, 1, W]
    return torch.nn.functional.one_hot(ids, classes).permute(0, 3, 1, 2).float() * 5.0


def test_avss_hand_made_frames_255_a_class_seen_once_and_a_class_never_seen():
    """K = 4. Frame 0: gt 0 1 1 255, prediction 0 1 2 1; frame 1: gt and prediction all 0.
    Class 0: IoU 1 in both frames. Class 1 (frame 0 only): I 1, predicted 2 (the 255 pixel
    counts as predicted), labelled 2: IoU 1/3, P = R = 1/2, F 1/2. Class 2 (frame 0 only):
    I 0: IoU 0, F 0. Class 3: never seen, 0. mIoU = (1 + 1/3) / 4, F = (1 + 1/2) / 4."""
    logits = one_hot_logits([[0, 1, 2, 1], [0, 0, 0, 0]], classes=4)
    labels = torch.tensor([[[0, 1, 1, 255]], [[0, 0, 0, 0]]])
    metric = VctComboSemanticMetrics(num_classes=4)
    metric.update(logits, labels)
    got = metric.compute()
    assert got["per_class_iou_vct_combo_avss"] == pytest.approx([1, 1 / 3, 0, 0], abs=1e-12)
    assert got["per_class_fscore_vct_combo_avss"] == pytest.approx([1, 0.5, 0, 0], abs=1e-12)
    assert got["class_frame_count_vct_combo_avss"] == [2, 1, 1, 0]
    assert got["miou_vct_combo_avss"] == pytest.approx((1 + 1 / 3) / 4, abs=1e-12)
    assert got["fscore_vct_combo_avss"] == pytest.approx(1.5 / 4, abs=1e-12)
    expected = ref_avss(logits, labels)
    assert got["miou_vct_combo_avss"] == pytest.approx(expected["miou"], abs=1e-7)
    assert got["fscore_vct_combo_avss"] == pytest.approx(expected["fscore"], abs=1e-7)


def test_avss_padding_frames_are_left_out_unlike_the_official_protocol():
    """Clip of 5 real frames padded to 10 (zero logits, zero labels: background, as
    AVSBench's padding): VCT/COMBO's value equals the official metric on the real frames
    alone; the official one over all 10 frames is higher (perfect background frames)."""
    logits, labels = random_avss(frames=10, seed=4)
    labels[labels == 255] = 0
    logits[5:], labels[5:] = 0.0, 0
    frame_valid = torch.tensor([[1.0] * 5 + [0.0] * 5])
    metric = VctComboSemanticMetrics()
    metric.update(logits, labels, frame_valid)
    real, padded = SemanticMetrics(), SemanticMetrics()
    real.update(logits[:5], labels[:5])
    padded.update(logits, labels)
    got = metric.compute()
    assert got["num_frames_vct_combo_avss"] == 5
    assert got["miou_vct_combo_avss"] == pytest.approx(real.compute()["miou"], abs=1e-12)
    assert got["fscore_vct_combo_avss"] == pytest.approx(real.compute()["fscore"], abs=1e-12)
    assert padded.compute()["miou"] > got["miou_vct_combo_avss"] + 1e-3


def test_avss_refuses_class_ids_outside_the_classes_and_the_ignore_label():
    logits = torch.zeros(1, 4, 1, 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\) or be the ignore label 255"):
        VctComboSemanticMetrics(num_classes=4).update(logits, torch.tensor([[[0, 7]]]))
    with pytest.raises(ValueError, match="logits have 4 classes but the metric expects 71"):
        VctComboSemanticMetrics().update(logits, torch.tensor([[[0, 1]]]))


# ---------------------------------------------------------------- the test command


def _tiny_checkpoint(setting: str, path: Path, root: Path) -> Path:
    """A project checkpoint of a tiny random TPAVI model (resnet18, 64 px). S4: its output
    layer is rescaled so that the logits on the test frames have spread 4 and their median
    at 0.5 (a random model otherwise predicts nothing, and every protocol would read 0)."""
    from avsbench import config as C
    from avsbench.data.datasets import build_dataset
    from avsbench.engine import checkpoint as ckpt_io
    from avsbench.engine import evaluate as E
    from avsbench.engine.distributed import DistInfo
    from avsbench.engine.embeddings import AudioEmbedder
    from avsbench.models import registry
    from avsbench.models.backbones.vggish import build_vggish

    torch.manual_seed(0)
    cfg = registry.synthetic(registry.preset(setting))
    cfg = C.override(cfg, {"data.image_size": 64, "model.arch.decoder_channels": 16})
    model = registry.build_model_for(cfg).eval()
    if setting == "s4":
        data = build_dataset(setting, root, "test", image_size=64)
        loader = E.build_eval_loader(data, 4, DistInfo(), num_workers=0)
        seen: list[torch.Tensor] = []
        embedder = AudioEmbedder(build_vggish(cfg.model), "cpu")  # the command's (random)
        E.evaluate(model, embedder, loader, setting, torch.device("cpu"),
                   on_batch=lambda batch, out: seen.append(out))  # fmt: skip
        logits = torch.cat(seen)
        with torch.no_grad():
            last = model.decoder.output_conv[-1]
            scale = 4.0 / float(logits.std())
            last.weight *= scale
            last.bias.copy_((last.bias - logits.median()) * scale + 0.5)
    ckpt = ckpt_io.make_checkpoint(
        model.state_dict(), C.to_dict(cfg), epoch=0, best_miou=0.0, history=[], with_rng=False
    )
    ckpt_io.atomic_save(ckpt, path)
    return path


def _run_test(setting: str, root: Path, weights: Path, tmp: Path, *extra: str):
    from avsbench.commands import test as cmd_test

    out = tmp / f"metrics_{setting}_{len(extra)}.json"
    status = cmd_test.main(setting, ["--synthetic", "--data_root", str(root), "--weights",
                                     str(weights), "--image_size", "64", "--num_workers", "0",
                                     "--device", "cpu", "--log_dir", str(tmp / "logs"),
                                     "--out_json", str(out), *extra])  # fmt: skip
    assert status == 0
    return json.loads(out.read_text())["metrics"]


@pytest.mark.slow
def test_the_test_command_reports_every_protocol_s4(tmp_path, capsys):
    from tests.engine.engine_helpers import toy_root

    root = toy_root(tmp_path / "toy", "s4")
    weights = _tiny_checkpoint("s4", tmp_path / "S4_best.pth", root)
    metrics = _run_test("s4", root, weights, tmp_path)
    table = capsys.readouterr().out
    keys = ["miou", "fscore", "miou_test_batch_4", "fscore_test_batch_4", "miou_per_clip",
            "fscore_per_clip", "miou_per_frame", "fscore_dataset_curve"]  # fmt: skip
    for key in keys:
        assert key in metrics and f"{metrics[key]:.4f}  {key}" in table, key
    for title in ("Official AVSBench protocol", "VCT / COMBO evaluators", "Batch-independent"):
        assert title in table
    # per clip = the official protocol of a run at test batch 1 (an independent path)
    at1 = _run_test("s4", root, weights, tmp_path, "--test_batch_size", "1")
    assert metrics["miou_per_clip"] == pytest.approx(at1["miou"], abs=1e-12)
    assert metrics["fscore_per_clip"] == pytest.approx(at1["fscore"], abs=1e-12)
    assert at1["miou_per_clip"] == pytest.approx(metrics["miou_per_clip"], abs=1e-12)
    assert metrics["num_clips"] == at1["num_batches"]
    assert 0.05 < metrics["miou_per_clip"] < 0.95  # the model predicts something


@pytest.mark.slow
def test_the_test_command_reports_every_protocol_avss(tmp_path, capsys):
    from avsbench.data.datasets import AVSS_SUBSET_FRAMES, build_dataset
    from tests.engine.engine_helpers import toy_root

    root = toy_root(tmp_path / "toy", "avss")
    weights = _tiny_checkpoint("avss", tmp_path / "AVSS_best.pth", root)
    metrics = _run_test("avss", root, weights, tmp_path)
    table = capsys.readouterr().out
    for key in ("miou", "fscore", "miou_vct_combo_avss", "fscore_vct_combo_avss",
                "miou_no_background", "miou_present_classes"):  # fmt: skip
        assert key in metrics and f"{metrics[key]:.4f}  {key}" in table, key
    data = build_dataset("avss", root, "test", image_size=64)
    real_frames = sum(AVSS_SUBSET_FRAMES[label] for _, label in data.rows)
    assert metrics["num_frames_vct_combo_avss"] == real_frames < metrics["num_frames"]
    assert len(metrics["per_class_iou_vct_combo_avss"]) == 71
