"""Top operators (self CPU time) of the project's exact S4 step, for BENCHMARKS.md.

Profiles, with torch.profiler on CPU, one training step (ResNet-50, 224 px, `--clips`
clips, the `exact` variant of bench_model.py: forward, S4 loss, backward, Adam) and one
test batch (forward + official metrics, 4 clips), after one untimed warm-up step each.

    .venv/bin/python benchmarks/profile_step.py [--threads 1] [--modes train,infer]

Writes benchmarks/results/profile_exact_cpu.json (per mode: the top operators with their
self CPU time and share of the total, the 1-min load before and after).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from bench_model import infer_step, make_bench, train_step
from torch.profiler import ProfilerActivity, profile


def top_operators(mode: str, clips: int, args: argparse.Namespace) -> dict:
    bench = make_bench(mode, args.backbone, clips, args, "exact")
    step = train_step if mode == "train" else infer_step
    step(bench)  # warm-up (Adam state, allocator)
    load_before = os.getloadavg()[0]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(bench)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    return {
        "mode": mode,
        "backbone": args.backbone,
        "clips": clips,
        "size": args.size,
        "metrics": mode == "infer",
        "self_cpu_total_s": total / 1e6,
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],
        "top": [
            {
                "op": e.key,
                "self_cpu_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--train-clips", type=int, default=1)
    parser.add_argument("--infer-clips", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.device, args.metrics = "cpu", True
    torch.set_num_threads(args.threads)
    results = []
    for mode in args.modes.split(","):
        clips = args.train_clips if mode == "train" else args.infer_clips
        result = top_operators(mode, clips, args)
        results.append(result)
        print(f"{mode} ({clips} clips): {result['self_cpu_total_s']:.2f} s self CPU")
        for row in result["top"]:
            print(f"  {row['op']:40s} {row['self_cpu_s']:7.2f} s {100 * row['share']:5.1f}%")
    out = Path(args.out) if args.out else Path(__file__).parent / "results/profile_exact_cpu.json"
    out.write_text(json.dumps({"threads": args.threads, "runs": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
