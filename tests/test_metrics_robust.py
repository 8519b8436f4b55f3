"""AVSBench-Robust metrics (avsbench.metrics_robust) on hand cases and against independent
loops written from `calculate_FPR` of jiali-home/AVSBench-Robust (scripts/s4/test.py)."""

from __future__ import annotations

import json

import pytest
import torch

from avsbench import metrics_robust as R


def _their_fpr(pred: torch.Tensor) -> float:
    """calculate_FPR(pred [N, H, W]), written out pixel by pixel."""
    n, h, w = pred.shape
    total = 0.0
    for i in range(n):
        on = sum(1 for y in range(h) for x in range(w) if 1 / (1 + torch.exp(-pred[i, y, x])) > 0.5)
        total += on / (h * w + 1e-7)
    return total / n


def test_foreground_fraction_by_hand():
    logits = torch.full((3, 1, 2, 4), -5.0)
    logits[1, 0, 0, :] = 5.0  # 4 of 8 pixels
    logits[2] = 5.0  # all
    logits[0, 0, 1, 1] = 0.0  # sigmoid(0) = 0.5 is not > 0.5
    expected = torch.tensor([0.0, 4 / (8 + 1e-7), 8 / (8 + 1e-7)], dtype=torch.float64)
    assert torch.equal(R.foreground_fraction(logits), expected)
    assert torch.equal(R.foreground_fraction(logits[:, 0]), expected)  # [n, H, W]
    semantic = torch.zeros(2, 3, 2, 2)
    semantic[0, 2, 0, 0] = 1.0  # one pixel of class 2
    semantic[1, 0] = 1.0  # all background
    assert R.foreground_fraction(semantic).tolist() == [1 / (4 + 1e-7), 0.0]
    with pytest.raises(ValueError, match=r"\[n, H, W\] or \[n, K, H, W\]"):
        R.foreground_fraction(torch.zeros(4))


def test_fpr_is_their_batch_mean_averaged_over_batches():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 1, 5, 6, generator=g) + shift for n, shift in ((4, 0.5), (4, -1.0),
                                                                            (2, 2.0))]  # fmt: skip
    fpr = R.FalsePositiveRate()
    for logits in batches:
        fpr.update(logits)
    theirs = [_their_fpr(b[:, 0]) for b in batches]
    frames = torch.cat([R.foreground_fraction(b) for b in batches])
    out = fpr.compute()
    assert out["fpr"] == pytest.approx(sum(theirs) / 3, abs=1e-12)
    assert out["fpr_per_frame"] == pytest.approx(float(frames.mean()), abs=1e-12)
    assert out["fpr"] != pytest.approx(out["fpr_per_frame"])  # the last batch is smaller


def test_padding_frames_are_left_out_and_states_add_up():
    logits = torch.full((4, 1, 2, 2), 5.0)  # every pixel foreground
    fpr = R.FalsePositiveRate()
    fpr.update(logits, torch.tensor([[1.0, 1.0], [1.0, 0.0]]))  # [B, T]: 3 real frames
    assert fpr.state_tensors()["num_frames"] == 3
    other = R.FalsePositiveRate()
    other.update(torch.full((2, 1, 2, 2), -5.0))
    summed = {k: v + other.state_tensors()[k] for k, v in fpr.state_tensors().items()}
    merged = R.FalsePositiveRate()
    merged.load_state_tensors(summed)
    one = 4 / (4 + 1e-7)
    assert merged.compute() == pytest.approx({"fpr": one / 2, "fpr_per_frame": 3 * one / 5})
    assert R.FalsePositiveRate().compute() == {"fpr": 0.0, "fpr_per_frame": 0.0}


def test_global_scores_are_harmonic_means_with_one_minus_the_mean_fpr():
    g = R.global_scores(0.8, 0.9, {"silence": 0.5, "noise": 0.7, "offscreen": 0.9})
    assert g["g_fpr"] == pytest.approx(0.7)
    assert g["g_miou"] == pytest.approx(2 * 0.8 * 0.3 / 1.1)
    assert g["g_fscore"] == pytest.approx(2 * 0.9 * 0.3 / 1.2)
    perfect = R.global_scores(1.0, 1.0, {"silence": 0.0})
    assert perfect == {"g_fpr": 0.0, "g_miou": 1.0, "g_fscore": 1.0}
    assert R.global_scores(0.0, 0.0, {"noise": 1.0})["g_miou"] == 0.0
    with pytest.raises(ValueError, match="at least one negative"):
        R.global_scores(0.5, 0.5, {})


def test_mean_over_negative_runs_equals_the_fpr_pooled_over_their_frames():
    """docs/METRICS.md: with every negative run over the same split and batch size (test.sh),
    G-FPR (mean of the runs' fpr) is the FPR of one accumulator fed all negative batches."""
    g = torch.Generator().manual_seed(1)
    sizes = (4, 4, 3)  # the same batches in every run, the last one short
    runs = {kind: [torch.randn(n, 1, 4, 5, generator=g) + shift for n in sizes]
            for kind, shift in (("silence", -1.0), ("noise", 0.0), ("offscreen", 1.5))}  # fmt: skip
    pooled = R.FalsePositiveRate()
    per_run = {}
    for kind, batches in runs.items():
        acc = R.FalsePositiveRate()
        for logits in batches:
            acc.update(logits)
            pooled.update(logits)
        per_run[kind] = acc.compute()
    g_fpr = R.global_scores(0.5, 0.5, {k: v["fpr"] for k, v in per_run.items()})["g_fpr"]
    assert g_fpr == pytest.approx(pooled.compute()["fpr"], abs=1e-12)
    mean_per_frame = sum(v["fpr_per_frame"] for v in per_run.values()) / 3
    assert mean_per_frame == pytest.approx(pooled.compute()["fpr_per_frame"], abs=1e-12)
    assert len({round(v["fpr"], 6) for v in per_run.values()}) == 3  # the runs do differ


def _run(mode: str, miou: float, fpr: float) -> dict:
    return {"audio": mode, "metrics": {"miou": miou, "fscore": miou + 0.05,
            "miou_per_frame": miou, "fpr": fpr, "fpr_per_frame": fpr}}  # fmt: skip


def test_the_table_has_one_row_per_mode_and_the_global_scores(tmp_path, capsys):
    cases = (("own", 0.8, 0.3), ("swap", 0.4, 0.3), ("silence", 0.1, 0.2), ("noise", 0.1, 0.4))
    runs = {m: _run(m, v, f) for m, v, f in cases}
    table = R.robustness_table(runs)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "audio" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["own", "swap", "silence", "noise"]
    assert "| silence | 0.100 | 0.150 | 0.100 | 0.200 | 0.200 |" in table
    g = R.global_scores(0.8, 0.85, {"silence": 0.2, "noise": 0.4})
    assert f"G-mIoU {g['g_miou']:.3f}, G-F {g['g_fscore']:.3f}" in table
    assert table.splitlines()[-1] == R.UNVERIFIED_NOTE  # the rule is labelled as assumed
    assert "not checked against the paper" in R.UNVERIFIED_NOTE
    own_only = R.robustness_table({"own": runs["own"], "swap": runs["swap"]})
    assert "G-mIoU" not in own_only and R.UNVERIFIED_NOTE not in own_only
    paths = []
    for mode, data in runs.items():
        paths.append(tmp_path / f"{mode}.json")
        paths[-1].write_text(json.dumps(data))
    assert R.main([str(p) for p in paths]) == 0
    assert capsys.readouterr().out.strip() == table
    (tmp_path / "bad.json").write_text("{}")
    assert R.main([str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not a test.sh metrics.json" in capsys.readouterr().err
