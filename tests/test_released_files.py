"""Released VCT and COMBO files through the commands a user runs: a random state dict in the
published layout (every key, shape and dtype of tests/golden/vct/state_dicts, in detectron2's
`{"model": ..., "iteration": ...}` wrapper, written compactly) is detected by its keys,
`test.sh --weights FILE` tests it on the synthetic data and reports every protocol, and
`train.sh --weights FILE` starts from it. Full-size networks, hence slow."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.data.synthetic import make_toy_data
from tests.golden_files import VCT_STATE_DICTS, require
from tests.state_dict_files import compact_state_dict

REPO = Path(__file__).resolve().parents[1]
PROTOCOL_KEYS = {
    "s4": ("miou", "fscore", "miou_test_batch_4", "fscore_test_batch_4", "miou_test_batch_2",
           "fscore_test_batch_2", "miou_per_clip", "fscore_per_clip", "miou_per_frame",
           "fscore_dataset_curve", "iou_dataset"),
    "avss": ("miou", "fscore", "miou_vct_combo_avss", "fscore_vct_combo_avss"),
}  # fmt: skip


def published_file(tag: str, path: Path, *, wrapped: bool = True) -> int:
    """Write a random state dict of the published layout `tag`; returns its tensor count."""
    rows, dtypes = [], {}
    for line in require(VCT_STATE_DICTS / f"{tag}.tsv").read_text().splitlines():
        name, shape, dtype = line.split("\t")
        rows.append((name, tuple(int(s) for s in re.findall(r"\d+", shape))))
        if dtype != "float32":
            dtypes[name] = getattr(torch, dtype)
    state = compact_state_dict(rows, 0, dtypes)
    torch.save({"model": state, "iteration": 4999} if wrapped else state, path)
    return len(rows)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("released_data")
    make_toy_data(base, seed=2, scale=0.05, num_categories=3, settings=("s4", "avss"))
    return base


def _bash(setting: str, script: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    folder = C.SETTINGS[setting].script_folder
    proc = subprocess.run(
        ["bash", str(REPO / "avs_scripts" / folder / script), *args],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


ROOTS = {"s4": "Single-source", "avss": "AVSBench_semantic"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, tag, method",
    [("s4", "combo_s4_r50", "combo"), ("avss", "combo_avss_pvt", "combo"),
     ("s4", "vct_s4_swinb", "vct")],
)  # fmt: skip
def test_a_released_file_is_tested_under_every_protocol(toy, tmp_path, setting, tag, method):
    weights = tmp_path / "model_best.pth"
    tensors = published_file(tag, weights)
    out = tmp_path / "metrics.json"
    args = ["--synthetic", "--data_root", str(toy / ROOTS[setting]), "--weights", str(weights),
            "--method", method, "--num_workers", "0", "--device", "cpu",
            "--log_dir", str(tmp_path / "logs"), "--out_json", str(out)]  # fmt: skip
    proc = _bash(setting, "test.sh", args)
    result = json.loads(out.read_text())
    assert result["checkpoint_kind"] == f"official_{method}"
    assert result["config"]["model"]["method"] == method
    for key in PROTOCOL_KEYS[setting]:
        assert 0.0 <= result["metrics"][key] <= 1.0, key
    # the unused criterion tensors are named, the rest is loaded (VGGish goes to VGGish)
    unused = 2 if tag == "vct_s4_swinb" else 1  # criterion.empty_weight (+ VCT: none unused)
    match = re.search(r"(\d+) tensors loaded, (\d+) unused dropped", proc.stdout + proc.stderr)
    assert match, proc.stdout[-2000:]
    loaded, dropped = int(match[1]), int(match[2])
    vggish = sum(1 for line in (VCT_STATE_DICTS / f"{tag}.tsv").read_text().splitlines()
                 if line.startswith("audio_backbone."))  # fmt: skip
    assert loaded + dropped + vggish == tensors or loaded + dropped == tensors
    assert dropped <= unused
