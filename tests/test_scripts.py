"""End to end: `bash train.sh` then `bash test.sh` in each avs_scripts folder, on a tiny
synthetic AVSBench made here; the metrics file agrees with an independent re-evaluation of
the checkpoint, and a two-process (torchrun, CPU) test gives the one-process numbers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.data.datasets import build_dataset
from avsbench.data.synthetic import make_toy_data
from avsbench.engine import evaluate as E
from avsbench.engine.distributed import DistInfo
from avsbench.engine.embeddings import AudioEmbedder

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"s4": "avs_s4", "ms3": "avs_ms3", "avss": "avss"}
ROOTS = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench_semantic"}
TINY = ["--synthetic", "--image_size", "64", "--decoder_channels", "16", "--num_workers", "0",
        "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("scripts_data")
    make_toy_data(base, seed=1, scale=0.05, num_categories=3)
    return base


def _bash(setting: str, script: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        ["bash", str(REPO / "avs_scripts" / FOLDERS[setting] / script), *args],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _reevaluate(result: dict, root: Path, batch_size: int) -> dict:
    from avsbench.models.avs import build_model_from_config, build_vggish

    ckpt = torch.load(result["weights"], weights_only=True)
    cfg = C.from_dict(ckpt["config"])
    model = build_model_from_config(C.override(cfg, {"model.backbone_weights": None}).model)
    model.load_state_dict(ckpt["model"])
    data = build_dataset(cfg.model.setting, root, "test", image_size=cfg.data.image_size)
    loader = E.build_eval_loader(data, batch_size, DistInfo(), num_workers=0)
    embedder = AudioEmbedder(build_vggish(cfg.model), "cpu")
    return E.evaluate(model, embedder, loader, cfg.model.setting, torch.device("cpu"),
                      num_classes=cfg.model.num_classes)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["s4", "ms3", "avss"])
def test_train_then_test(setting, toy, tmp_path):
    root = toy / ROOTS[setting]
    logs = tmp_path / "train_logs"
    _bash(setting, "train.sh", [*TINY, "--data_root", str(root), "--log_dir", str(logs),
                                "--max_epoches", "1", "--max_steps_per_epoch", "2",
                                "--train_batch_size", "2", "--session_name", "e2e"])  # fmt: skip
    (run,) = list(logs.iterdir())
    assert (run / "checkpoints" / "e2e_best.pth").is_file()
    assert (run / "checkpoints" / "last.pth").is_file()

    out = tmp_path / "metrics.json"
    proc = _bash(setting, "test.sh", [*TINY, "--data_root", str(root), "--train_log_dir",
                                      str(logs), "--log_dir", str(tmp_path / "test_logs"),
                                      "--session_name", "e2e", "--out_json", str(out),
                                      "--save_pred_mask"])  # fmt: skip
    assert "mIoU (official)" in proc.stdout
    result = json.loads(out.read_text())
    assert result["weights"] == str((run / "checkpoints" / "e2e_best.pth").resolve())
    assert result["checkpoint_kind"] == "project" and result["test_batch_size"] == 4
    metrics = _scalars(result["metrics"])
    assert {"miou", "fscore"} <= metrics.keys()
    assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
    again = _scalars(_reevaluate(result, root, batch_size=4))
    assert again == pytest.approx(metrics, abs=1e-9)
    (test_run,) = list((tmp_path / "test_logs").iterdir())
    masks = list((test_run / "pred_masks").rglob("*.png"))
    real_frames = 5 * result["num_clips"] if setting != "avss" else None  # AVSS: 5 or 10
    assert len(masks) == real_frames if real_frames else len(masks) >= 5 * result["num_clips"]


@pytest.mark.slow
def test_two_process_launch_matches_one_process(toy, tmp_path):
    """`bash train.sh --gpus 2` / `bash test.sh --gpus 2` run torchrun (gloo on the CPU);
    distributed testing gives exactly the one-process metrics."""
    root = toy / ROOTS["s4"]
    logs = tmp_path / "train_logs"
    _bash("s4", "train.sh", ["--gpus", "2", *TINY, "--data_root", str(root), "--log_dir",
                             str(logs), "--max_epoches", "1", "--max_steps_per_epoch", "1",
                             "--train_batch_size", "2", "--val_batch_size", "1"])  # fmt: skip
    (run,) = list(logs.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_process_batch"] == 1
    common = [*TINY, "--data_root", str(root), "--train_log_dir", str(logs), "--log_dir",
              str(tmp_path / "test_logs"), "--test_batch_size", "1"]  # fmt: skip
    _bash("s4", "test.sh", ["--gpus", "2", *common, "--out_json", str(tmp_path / "two.json")])
    _bash("s4", "test.sh", [*common, "--out_json", str(tmp_path / "one.json")])
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert _scalars(two["metrics"]) == pytest.approx(_scalars(one["metrics"]), abs=1e-12)
