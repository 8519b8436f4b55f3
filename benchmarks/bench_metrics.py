"""Official S4/MS3 metric evaluation time: avsbench.metrics versus a straightforward loop.

The loop is the published way of computing the F-measure (one pass over the pixels per
frame and per threshold, 255 thresholds) and the Jaccard; it is written here, not
imported. Both run in this process on the same synthetic test batches (S4-like: batches
of 20 frames = 4 clips of 5 at 224 x 224) and must give the same values.

    .venv/bin/python benchmarks/bench_metrics.py [--batches 40] [--loop-batches 4] [--threads 1]

Writes benchmarks/results/metrics_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from avsbench.metrics import BinaryMetrics, fscore_thresholds


def loop_batch_miou_fscore(logits: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    """Official batch mIoU and F written plainly: loops over frames and thresholds."""
    prob = torch.sigmoid(logits)
    n, h, w = logits.shape
    ious = []
    for f in range(n):
        pred = (prob[f] > 0.5).float()
        if gt[f].sum() == 0:
            ious.append(((1 - pred) * (1 - gt[f])).sum() / (h * w + 1e-7))
        else:
            ious.append((pred * gt[f]).sum() / (torch.max(pred, gt[f]).sum() + 1e-7))
    miou = float(sum(ious) / n)

    curve_sum, kept = torch.zeros(255), 0
    for f in range(n):
        if gt[f].sum() == 0:
            continue
        prec, rec = torch.zeros(255), torch.zeros(255)
        for k, t in enumerate(fscore_thresholds()):
            q = (prob[f] >= t).float()
            tp = (q * gt[f]).sum()
            prec[k], rec[k] = tp / (q.sum() + 1e-20), tp / (gt[f].sum() + 1e-20)
        fk = 1.3 * prec * rec / (0.3 * prec + rec)
        curve_sum += torch.nan_to_num(fk, nan=0.0)
        kept += 1
    fscore = float((curve_sum / kept).max()) if kept else 0.0
    return miou, fscore


def make_batches(count: int, frames: int, size: int, seed: int = 0) -> list[tuple]:
    """Smooth blob-like logits (some saturated), masks near them; every 5th frame empty."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        low = torch.randn(frames, 1, size // 16, size // 16, generator=gen) * 6
        logits = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")[:, 0]
        noise = torch.randn(frames, size, size, generator=gen)
        gt = ((logits + 2 * noise) > 2).float()
        gt[::5] = 0  # frames with an empty ground truth
        logits[frames // 2 :] *= 4  # a sharper (saturating) model on half of the frames
        batches.append((logits.contiguous(), gt))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--frames", type=int, default=20, help="frames per test batch")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--loop-batches", type=int, default=4, help="batches timed with the loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable on shared machines)"
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default results/metrics_<dev>.json)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = make_batches(args.batches, args.frames, args.size)
    batches = [(lg.to(device), g.to(device)) for lg, g in batches]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    metrics = BinaryMetrics()
    metrics.update(*batches[0])  # warm-up
    sync()
    full_times = []
    for _ in range(args.repeats):
        metrics.reset()
        start = time.perf_counter()
        for logits, gt in batches:
            metrics.update(logits, gt)
        result = metrics.compute()
        sync()
        full_times.append(time.perf_counter() - start)

    # per-batch comparison on the same batches, interleaved so that machine load hits both
    loop_times, fast_times, max_diff = [], [], 0.0
    for logits, gt in batches[: args.loop_batches]:
        start = time.perf_counter()
        loop_miou, loop_f = loop_batch_miou_fscore(logits.cpu(), gt.cpu())
        loop_times.append(time.perf_counter() - start)
        best = float("inf")
        for _ in range(args.repeats):
            single = BinaryMetrics()
            start = time.perf_counter()
            single.update(logits, gt)
            values = single.compute()
            sync()
            best = min(best, time.perf_counter() - start)
        fast_times.append(best)
        max_diff = max(max_diff, abs(values["miou"] - loop_miou), abs(values["fscore"] - loop_f))

    loop_per_batch = sum(loop_times) / len(loop_times)
    fast_per_batch = sum(fast_times) / len(fast_times)
    report = {
        "benchmark": "official S4/MS3 metrics (mIoU + F-measure, 255 thresholds)",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],  # other processes share the CPUs
        "batches": args.batches,
        "frames_per_batch": args.frames,
        "size": args.size,
        "vectorised_total_s": min(full_times),
        "vectorised_per_batch_s": fast_per_batch,
        "loop_per_batch_s": loop_per_batch,
        "loop_total_s_extrapolated": loop_per_batch * args.batches,
        "speedup": loop_per_batch / fast_per_batch,
        "max_abs_diff_vs_loop": max_diff,
        "miou": result["miou"],
        "fscore": result["fscore"],
    }
    print(
        f"{args.batches} batches x {args.frames} frames {args.size}x{args.size} on {device}: "
        f"vectorised {min(full_times):.3f} s ({fast_per_batch * 1e3:.1f} ms/batch), loop "
        f"{loop_per_batch * 1e3:.0f} ms/batch -> {report['speedup']:.0f}x faster "
        f"(max |diff| {max_diff:.1e})"
    )
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).parent / "results" / (f"metrics_{device.type}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
