"""`avsbench evaluate` on the masks `test.sh --save_pred_mask` writes gives test.sh's numbers
(tiny random models on the synthetic AVSBench), and bad prediction folders are refused with
one line naming the file and the rule, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import cli
from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.engine import checkpoint as ckpt_io
from avsbench.models import registry
from avsbench.models.registry import build_model_for

TINY = ["--image_size", "64", "--num_workers", "0", "--device", "cpu"]
# numbers that depend on the thresholded (S4/MS3) or argmax (AVSS) masks only, which are
# what the saved PNGs hold; max-F over 255 thresholds needs the probabilities (docs/EVALUATE.md)
BINARY_EXACT = ["miou", "miou_test_batch_2", "miou_test_batch_4", "miou_per_frame",
                "iou_dataset", "miou_per_clip", "miou_dataset_ddeseg", "f1_dataset_ddeseg",
                "fscore_dataset_ddeseg", "miou_dataset_cavp", "f1_dataset_cavp",
                "fscore_dataset_cavp", "fdr_dataset_cavp"]  # fmt: skip
# AVSS: the protocols over the real frames (the saved files hold no padding frame)
SEMANTIC_EXACT = ["miou_vct_combo_avss", "fscore_vct_combo_avss", "miou_dataset_ddeseg",
                  "f1_dataset_ddeseg", "fscore_dataset_ddeseg", "miou_dataset_cavp",
                  "f1_dataset_cavp", "fscore_dataset_cavp", "fdr_dataset_cavp"]  # fmt: skip


def _checkpoint(folder: Path, setting: str) -> Path:
    torch.manual_seed(0)
    cfg = registry.synthetic(registry.preset(setting))
    cfg = C.override(cfg, {"data.image_size": 64, "model.arch.decoder_channels": 16})
    ckpt = ckpt_io.make_checkpoint(
        build_model_for(cfg).state_dict(), C.to_dict(cfg), epoch=0, best_miou=0.0, history=[],
        with_rng=False,
    )  # fmt: skip
    path = folder / f"{setting}_best.pth"
    ckpt_io.atomic_save(ckpt, path)
    return path


def _test_sh(setting: str, root: Path, folder: Path) -> tuple[dict, Path]:
    weights = _checkpoint(folder, setting)
    status = cmd_test.main(setting, ["--synthetic", "--data_root", str(root), "--weights",
                                     str(weights), *TINY, "--log_dir", str(folder / "logs"),
                                     "--save_pred_mask", "--test_batch_size", "4"])  # fmt: skip
    assert status == 0
    (run,) = (folder / "logs").iterdir()
    return json.loads((run / "metrics.json").read_text())["metrics"], run / "pred_masks"


def _evaluate(setting: str, root: Path, preds: Path, out: Path, *extra: str) -> int:
    return cli.main(["evaluate", str(preds), "--setting", setting, "--data_root", str(root),
                     "--image_size", "64", "--out", str(out), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def s4_run(tmp_path_factory, s4_toy):
    return _test_sh("s4", s4_toy, tmp_path_factory.mktemp("s4_run"))


def test_evaluate_gives_test_sh_numbers_s4(s4_run, s4_toy, tmp_path, capsys):
    metrics, preds = s4_run
    assert _evaluate("s4", s4_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key in BINARY_EXACT:
        assert scored[key] == pytest.approx(metrics[key], abs=1e-9), key
    assert scored["miou_test_batch_1"] == pytest.approx(scored["miou_per_clip"], abs=1e-9)
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert f"| {100 * scored['miou_dataset_ddeseg']:.2f} |" in table
    assert "miou_dataset_cavp" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_gives_test_sh_numbers_avss(avss_toy, tmp_path):
    metrics, preds = _test_sh("avss", avss_toy, tmp_path / "run")
    assert _evaluate("avss", avss_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key in SEMANTIC_EXACT:
        assert scored[key] == pytest.approx(metrics[key], abs=1e-9), key
