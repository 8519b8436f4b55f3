"""VCT through the engine (`--method vct`) on the synthetic data: train (the prototype loss
reads the batch's categories, VGGish's conv map reaches the model, maskiges are read) and
test on 224-px masks from a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.models import registry
from tests.engine.engine_helpers import toy_root


@pytest.mark.slow
def test_train_and_test_with_method_vct(tmp_path):
    root = toy_root(tmp_path / "data", "s4")
    logs = tmp_path / "train"
    common = ["--synthetic", "--data_root", str(root), "--num_workers", "0", "--device", "cpu"]
    train_flags = [
        *common,
        "--method",
        "vct",
        "--log_dir",
        str(logs),
        "--train_batch_size",
        "1",
        "--val_batch_size",
        "1",
        "--max_epoches",
        "1",
        "--max_steps_per_epoch",
        "2",
    ]
    assert cmd_train.main("s4", train_flags) == 0
    (run,) = [p for p in logs.iterdir() if p.is_dir()]
    (last,) = (run / "checkpoints").glob("*last*.pth")
    saved = torch.load(last, weights_only=True)
    cfg = registry.config_from_dict(saved["config"])
    assert cfg.model.method == "vct" and cfg.data.image_size == 64  # the small config
    assert cfg.data.eval_mask_size == 224
    assert "logit_scale" in saved["model"]
    history = saved["history"][0]["train"]
    assert "loss_proto" in history and history["loss_proto"] > 0

    out_json = tmp_path / "metrics.json"
    test_flags = [
        *common,
        "--train_log_dir",
        str(logs),
        "--log_dir",
        str(tmp_path / "test"),
        "--out_json",
        str(out_json),
    ]
    assert cmd_test.main("s4", test_flags) == 0
    result = json.loads(out_json.read_text())
    assert registry.config_from_dict(result["config"]).model.method == "vct"
    assert 0.0 <= result["metrics"]["miou"] <= 1.0
