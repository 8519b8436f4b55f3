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
from avsbench.models import registry

REPO = Path(__file__).resolve().parents[1]
TINY = ["--synthetic", "--image_size", "64", "--decoder_channels", "16", "--num_workers", "0",
        "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("scripts_data")
    make_toy_data(base, seed=1, scale=0.05, num_categories=3)
    return base


def _bash(
    setting: str, script: str, args: list[str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    folder = C.SETTINGS[setting].script_folder
    proc = subprocess.run(
        ["bash", str(REPO / "avs_scripts" / folder / script), *args],
        capture_output=True, text=True, env=env, timeout=900, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _reevaluate(result: dict, root: Path, batch_size: int) -> dict:
    from avsbench.models.backbones.vggish import build_vggish
    from avsbench.models.registry import build_model_for

    ckpt = torch.load(result["weights"], weights_only=True)
    cfg = registry.config_from_dict(ckpt["config"])
    model = build_model_for(C.override(cfg, {"model.backbone_weights": None}))
    model.load_state_dict(ckpt["model"])
    data = build_dataset(cfg.model.setting, root, "test", image_size=cfg.data.image_size)
    loader = E.build_eval_loader(data, batch_size, DistInfo(), num_workers=0)
    embedder = AudioEmbedder(build_vggish(cfg.model), "cpu")
    return E.evaluate(model, embedder, loader, cfg.model.setting, torch.device("cpu"),
                      num_classes=cfg.model.num_classes)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["s4", "ms3", "avss"])
def test_train_then_test(setting, toy, tmp_path):
    root = toy / C.SETTINGS[setting].dataset_folder
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
    assert again == pytest.approx({k: metrics[k] for k in again}, abs=1e-9)
    if setting != "avss":  # official metrics at AVSBench's batch 4 and AVSegFormer's 2
        assert metrics["miou_test_batch_4"] == pytest.approx(metrics["miou"], abs=1e-9)
        assert {"miou_test_batch_2", "fscore_test_batch_2"} <= metrics.keys()
    if setting == "avss":  # the official mIoU and F of each subset, in the JSON and table
        subsets = result["metrics"]["subsets"]
        assert set(subsets) == {"v1s", "v1m", "v2"}
        for name, values in subsets.items():
            row = next(line for line in proc.stdout.splitlines() if line.startswith(name + " "))
            assert row.split()[3:5] == [f"{values['miou']:.4f}", f"{values['fscore']:.4f}"]
    (test_run,) = list((tmp_path / "test_logs").iterdir())
    masks = list((test_run / "pred_masks").rglob("*.png"))
    real_frames = 5 * result["num_clips"] if setting != "avss" else None  # AVSS: 5 or 10
    assert len(masks) == real_frames if real_frames else len(masks) >= 5 * result["num_clips"]


# AVSegFormer's width must be a multiple of 32 (its GroupNorms)
TINY_AVSEGFORMER = ["--synthetic", "--image_size", "64", "--decoder_channels", "32",
                    "--num_workers", "0", "--device", "cpu"]  # fmt: skip
METHOD_ARGS = {"tpavi": TINY, "avsegformer": TINY_AVSEGFORMER}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tpavi", "avsegformer"])
def test_two_process_launch_matches_one_process(method, toy, tmp_path):
    """`bash train.sh --gpus 2` / `bash test.sh --gpus 2` run torchrun (gloo on the CPU),
    for both methods; distributed testing gives exactly the one-process metrics."""
    root = toy / C.SETTINGS["s4"].dataset_folder
    logs = tmp_path / "train_logs"
    tiny = METHOD_ARGS[method]
    _bash("s4", "train.sh", ["--gpus", "2", *tiny, "--method", method, "--data_root", str(root),
                             "--log_dir", str(logs), "--max_epoches", "1",
                             "--max_steps_per_epoch", "1", "--train_batch_size", "2",
                             "--val_batch_size", "1"])  # fmt: skip
    (run,) = list(logs.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_process_batch"] == 1
    assert config["model"]["method"] == method
    common = [*tiny, "--data_root", str(root), "--train_log_dir", str(logs), "--log_dir",
              str(tmp_path / "test_logs"), "--test_batch_size", "1"]  # fmt: skip
    _bash("s4", "test.sh", ["--gpus", "2", *common, "--out_json", str(tmp_path / "two.json")])
    _bash("s4", "test.sh", [*common, "--out_json", str(tmp_path / "one.json")])
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["config"]["model"]["method"] == one["config"]["model"]["method"] == method
    assert _scalars(two["metrics"]) == pytest.approx(_scalars(one["metrics"]), abs=1e-12)


@pytest.mark.slow
def test_relative_paths_are_where_the_command_is_typed(toy, tmp_path):
    """From another folder, `bash <repo>/avs_scripts/avs_s4/test.sh --weights mybest.pth`
    finds ./mybest.pth: every relative path flag joins the folder the command is typed in
    (the script itself runs in its own folder)."""
    from avsbench.engine.checkpoint import atomic_save, make_checkpoint
    from avsbench.models.registry import build_model_for

    cfg = C.override(
        registry.synthetic(registry.preset("s4")),
        {"data.image_size": 64, "model.arch.decoder_channels": 16},
    )
    torch.manual_seed(0)
    model = build_model_for(cfg)
    ckpt = make_checkpoint(model.state_dict(), C.to_dict(cfg), epoch=0, best_miou=0.0,
                           history=[], with_rng=False)  # fmt: skip
    atomic_save(ckpt, tmp_path / "mybest.pth")
    (tmp_path / "data").symlink_to(toy)
    script = os.path.relpath(REPO / "avs_scripts" / "avs_s4" / "test.sh", tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        ["bash", script, *TINY, "--weights", "mybest.pth", "--data_root", "data/Single-source",
         "--log_dir", "logs", "--out_json", "out/metrics.json"],
        capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=900,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    here = tmp_path.resolve()
    assert result["weights"] == str(here / "mybest.pth")
    assert result["config"]["data"]["root"] == str(here / "data" / "Single-source")
    assert result["checkpoint_kind"] == "project" and result["num_clips"] > 0
    (run,) = list((tmp_path / "logs").iterdir())
    assert (run / "log" / "test.log").is_file()


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, folder, session",
    [
        ((), "avs_s4", "S4_synthetic"),
        (("--setting", "ms3"), "avs_ms3", "MS3_synthetic"),
        (("--setting=avss",), "avss", "AVSS_synthetic"),
    ],
)
def test_demo_runs_the_setting_it_is_given(args, folder, session):
    """`scripts/demo.sh [--setting s]` (dry run): setup, the setting's synthetic data, then
    train, test with pictures, with swapped audio and with each AVSBench-Robust negative in
    that setting's folder, then the table of them all."""
    setting = folder.removeprefix("avs_")
    proc = _demo(*args, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    commands = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert commands[0] == "bash scripts/setup.sh"
    assert commands[1].startswith(
        f"avsbench make-toy-data --out avsbench_data --settings {setting} "
    )
    assert commands[2] == f"cd avs_scripts/{folder}"
    assert commands[3] == f"bash train.sh --synthetic --session_name {session}"
    assert commands[4].startswith(f"bash test.sh --synthetic --session_name {session} --save_pred")
    assert "--report" in commands[4] and "--swap_audio" not in commands[4]
    assert commands[5].endswith(
        f"--swap_audio --out_json test_logs/{session}_swapped_audio_metrics.json"
    )
    for i, negative in enumerate(("silence", "noise", "offscreen"), start=6):
        assert commands[i] == (
            f"bash test.sh --synthetic --session_name {session} --audio {negative} "
            f"--out_json test_logs/{session}_{negative}_audio_metrics.json"
        )
    table = commands[9]
    assert table.startswith("env PYTHONPATH=") and " -m avsbench.metrics_robust " in table
    assert table.endswith(f"test_logs/{session}_offscreen_audio_metrics.json")
    assert len(commands) == 10
    assert f"avs_scripts/{folder}/test_logs/{session}_metrics.json" in proc.stdout


def test_demo_refuses_unknown_arguments():
    proc = _demo("--setting", "ms4", "--dry-run")
    assert proc.returncode == 2 and "unknown setting 'ms4'; valid: s4, ms3, avss" in proc.stderr
    proc = _demo("--fast")
    assert proc.returncode == 2 and "unknown argument '--fast'" in proc.stderr
    proc = _demo("--setting")
    assert proc.returncode == 2 and "usage:" in proc.stderr
    skip = _demo("--skip-setup", "--dry-run")
    assert skip.returncode == 0 and "setup.sh" not in skip.stdout
