"""`--data_source semantic`: S4 and MS3 train and test on the v1s / v1m clips of a
synthetic AVSBench-semantic (the generator's AVSS layout)."""

from __future__ import annotations

import json

import pytest
import torch

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.data.datasets import build_dataset
from tests.engine.engine_helpers import tiny_flags


@pytest.mark.slow
@pytest.mark.parametrize("setting, subset", [("s4", "v1s"), ("ms3", "v1m")])
def test_train_and_test_on_the_semantic_release(setting, subset, avss_toy, tmp_path):
    logs = tmp_path / "train_logs"
    flags = tiny_flags(avss_toy, logs, data_source="semantic", max_steps_per_epoch=1,
                       train_batch_size=1, val_batch_size=1)  # fmt: skip
    assert cmd_train.main(setting, flags) == 0
    (run,) = list(logs.iterdir())
    best = next((run / "checkpoints").glob("*_best.pth"))
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["config"]["data"]["source"] == "semantic"

    out = tmp_path / "metrics.json"
    test_flags = ["--synthetic", "--data_root", str(avss_toy), "--weights", str(best),
                  "--log_dir", str(tmp_path / "test_logs"), "--out_json", str(out),
                  "--num_workers", "0", "--device", "cpu"]  # fmt: skip
    assert cmd_test.main(setting, test_flags) == 0  # the source comes from the checkpoint
    result = json.loads(out.read_text())
    expected = len(build_dataset(setting, avss_toy, "test", source="semantic"))
    assert result["num_clips"] == expected
    truth = json.loads((avss_toy / "toy_truth.json").read_text())["clips"]
    assert expected == sum(c["split"] == "test" and c["category"] == subset for c in truth.values())
    assert 0.0 <= result["metrics"]["miou"] <= 1.0
    assert result["metrics"]["num_frames"] == 5 * expected

    # the object layout is not silently read instead
    wrong = tiny_flags(avss_toy, tmp_path / "wrong", max_steps_per_epoch=1)
    assert cmd_train.main(setting, wrong) == 2
