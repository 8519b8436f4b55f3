"""Does the small configuration of a Mask2Former-family method (VCT, COMBO) learn the
synthetic S4 set on this CPU? Train it exactly as `bash train.sh --synthetic --method M`
does (extra train flags after `--`), then test the best checkpoint with each clip's own
audio and with another clip's (`--audio swap`), and write one JSON with the wall time, the
CPU time (user + sys, this process and its data workers), the machine's load average
(sampled every 15 s: the machine may be shared), the epochs, the validation history and
both tests' official mIoU and F. On a shared machine, run it with one intra-op thread
(`OMP_NUM_THREADS=1`): at a load of 12-16 on 2 cores two threads spent 10x the CPU per step.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD nice -n 5 python benchmarks/learning_mask2former.py \\
        --method vct \\
        --data_root avsbench_data/Single-source \\
        --out benchmarks/results/learning_synthetic_vct.json [-- --max_epoches 6 ...]

Results and what they show: docs/VCT.md and docs/COMBO.md, "Learning on the synthetic data".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import threading
import time
from pathlib import Path

import torch

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.engine import train as T
from avsbench.models import registry

SETTING = "s4"
LOAD_SAMPLE_SECONDS = 15.0


class LoadSampler:
    """os.getloadavg()[0] every `every` seconds in a daemon thread, until stop()."""

    def __init__(self, every: float = LOAD_SAMPLE_SECONDS) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": sum(s) / len(s), "min": min(s), "max": max(s), "samples": len(s)}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(step) -> tuple[object, dict[str, float]]:
    """Run `step()`; return its result and {wall_s, cpu_s, load average mean/min/max}."""
    sampler = LoadSampler().start()
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = step()
    figures = {"wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}
    figures.update({f"load_{k}": v for k, v in sampler.stop().items() if k != "samples"})
    return out, figures


def test_metrics(path: Path) -> dict[str, float]:
    metrics = json.loads(path.read_text())["metrics"]
    keys = ("miou", "fscore", "miou_per_frame")
    return {k: metrics[k] for k in keys if isinstance(metrics.get(k), (int, float))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True, choices=("vct", "combo"))
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log_dir", default="/tmp/learning_mask2former_runs")
    parser.add_argument("train_flags", nargs="*")
    args = parser.parse_args()

    captured: dict[str, Path] = {}
    original_fit = T.Trainer.fit

    def fit(self):
        out = original_fit(self)
        captured["run_dir"] = Path(self.run_dir.root)
        return out

    T.Trainer.fit = fit
    session = f"learn_{args.method}_{int(time.time())}"
    common = ["--synthetic", "--data_root", args.data_root, "--session_name", session]
    train_flags = [*common, "--method", args.method, "--log_dir", args.log_dir, *args.train_flags]
    status, train = measured(lambda: cmd_train.main(SETTING, train_flags))
    assert status == 0, f"training exited with {status}"
    checkpoints = captured["run_dir"] / "checkpoints"
    best = checkpoints / f"{session}_best.pth"
    last = torch.load(checkpoints / "last.pth", weights_only=True)
    cfg = registry.config_from_dict(last["config"])
    history = last["history"]
    best_history = torch.load(best, weights_only=True)["history"]
    result: dict[str, object] = {
        "method": args.method,
        "setting": SETTING,
        "command": f"cd avs_scripts/avs_s4 && bash train.sh --synthetic --method {args.method}"
        + "".join(f" {f}" for f in args.train_flags),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "processor": platform.processor() or platform.machine(),
            "note": "shared machine: wall time inflated by other jobs, see load_* and cpu_s",
        },
        "config": {
            "image_size": cfg.data.image_size,
            "eval_mask_size": cfg.data.eval_mask_size,
            "arch": {k: v for k, v in vars(cfg.model.arch).items()},
            "lr": cfg.train.lr,
            "optimizer": cfg.train.optimizer,
            "schedule": cfg.train.schedule,
            "backbone_lr_mult": cfg.train.backbone_lr_mult,
            "grad_clip_norm": cfg.train.grad_clip_norm,
            "train_batch_size": cfg.train.train_batch_size,
            "max_epoches": cfg.train.max_epoches,
        },
        "train": {**train, "epochs": len(history), "best_epoch": len(best_history)},
        "val_miou": [e.get("val", {}).get("miou") for e in history],
        "train_loss": [e.get("train", {}).get("loss") for e in history],
    }
    for name, extra in (("own", []), ("swap", ["--audio", "swap"])):
        out_json = Path(args.out).with_suffix(f".{name}.json")
        test_flags = [*common, "--weights", str(best), "--log_dir", args.log_dir + "_test",
                      "--out_json", str(out_json), *extra]  # fmt: skip
        status, figures = measured(lambda flags=test_flags: cmd_test.main(SETTING, flags))
        assert status == 0, f"test ({name}) exited with {status}"
        result[f"test_{name}"] = {**test_metrics(out_json), **figures}
        out_json.unlink()
    own, swap = result["test_own"]["miou"], result["test_swap"]["miou"]
    result["miou_drop_with_swapped_audio"] = own - swap
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("train", "test_own", "test_swap")}, indent=1))


if __name__ == "__main__":
    main()
