"""Does a synthetic run learn to listen? Train one setting on the synthetic data with the
flags given, recording per epoch the loss parts, the validation mIoU and the mean |weight|
of each TPAVI block's W_z BatchNorm (the gate of the audio branch: it starts at zero), then
test the best checkpoint with its own and with swapped audio.

    PYTHONPATH=$PWD python benchmarks/learning_diagnosis.py --setting ms3 \
        --data_root avsbench_data/Multi-sources --out diag.json -- --max_epoches 30 ...

Writes one JSON (history + both test results); see README, "Results on the synthetic
AVSBench", for what the figures showed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.engine import train as T
from avsbench.engine.step import unwrap
from avsbench.models.tpavi.block import TPAVI


def gate_weights(model: torch.nn.Module) -> list[float]:
    """Mean |gamma| of the W_z BatchNorm of every TPAVI block, in module order."""
    return [
        float(m.W_z[1].weight.detach().abs().mean())
        for m in unwrap(model).modules()
        if isinstance(m, TPAVI)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setting", required=True, choices=("s4", "ms3", "avss"))
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log_dir", default="/tmp/learning_diag_runs")
    parser.add_argument("train_flags", nargs="*")
    args = parser.parse_args()

    original = T.Trainer.run_epoch

    def run_epoch(self, epoch):
        record = original(self, epoch)
        record["tpavi_wz_bn"] = gate_weights(self.model)
        print(f"epoch {epoch + 1}: W_z BN |gamma| {record['tpavi_wz_bn']}", flush=True)
        return record

    T.Trainer.run_epoch = run_epoch
    session = f"diag_{args.setting}_{int(time.time())}"
    common = ["--synthetic", "--data_root", args.data_root, "--session_name", session]
    start = time.perf_counter()
    result = {}
    captured = {}
    original_fit = T.Trainer.fit

    def fit(self):
        out = original_fit(self)
        captured["run_dir"] = self.run_dir.root
        return out

    T.Trainer.fit = fit
    status = cmd_train.main(args.setting, [*common, "--log_dir", args.log_dir, *args.train_flags])
    result["train_seconds"] = time.perf_counter() - start
    assert status == 0, status
    best = Path(captured["run_dir"]) / "checkpoints" / f"{session}_best.pth"
    history = torch.load(best, weights_only=True)["history"]
    last = torch.load(Path(captured["run_dir"]) / "checkpoints" / "last.pth", weights_only=True)
    result["history"] = last["history"]
    result["best_epoch"] = len(history) - 1
    for name, extra in (("own", []), ("swapped", ["--swap_audio"])):
        out = Path(args.out).with_suffix(f".{name}.json")
        cmd_test.main(
            args.setting,
            [*common, "--weights", str(best), "--log_dir", args.log_dir + "_test",
             "--out_json", str(out), *extra],
        )  # fmt: skip
        metrics = json.loads(out.read_text())["metrics"]
        result[name] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if "subsets" in metrics:
            result[name]["subsets"] = {
                s: {k: v[k] for k in ("miou", "fscore", "miou_present_classes")}
                for s, v in metrics["subsets"].items()
            }
    result["seconds"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(result, indent=1))
    keys = ("miou", "fscore", "miou_present_classes")
    for name in ("own", "swapped"):
        print(name, {k: round(result[name][k], 4) for k in keys if k in result[name]})


if __name__ == "__main__":
    main()
