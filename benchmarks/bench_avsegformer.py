"""Benchmark: AVSegFormer's multi-scale deformable attention, project vs published formulation.

The published code's pure-PyTorch reference (`ms_deform_attn_core_pytorch`, the function
its golden values used) samples each level with `grid_sample` over [N*M, D, H, W] and a
[N*M, Lq, P, 2] grid, stacks the L levels' samples into [N*M, D, Lq, L*P] and multiplies by
the weights before summing. `published_formulation` (tests/models/avsegformer/
published_deform_attn.py, the tests' reference) writes that formulation out again;
the project's `multi_scale_deformable_attention` lays the grid out [N*M, P, Lq, 2] and
accumulates each level's weighted sum instead (docs/AVSEGFORMER.md).

Shape: the encoder's self-attention at a 224 x 224 input: levels 28x28, 14x14, 7x7
(S = Lq = 1029), M = 8 heads of D = 32, P = 4 points, N = `--frames` frames (default 10:
an S4/MS3 training batch of 2 clips x 5 frames). Inputs are realistic: each query samples
around its own pixel centre, a few pixels away, some samples fall outside the maps.

Measured, in one run, for `forward` (no_grad, inference) and `train` (forward + backward):
- time: `--repeats` rounds after one warm-up, each round running both formulations in
  alternating order; medians and minima, and the ratios published / project;
- saved (train): bytes autograd keeps between forward and backward;
- peak: the rise of the process's peak resident set (CPU, VmHWM reset through
  /proc/self/clear_refs) or of `torch.cuda.max_memory_allocated` over one call, each in a
  fresh subprocess (CPU);
- agreement: max relative difference of the outputs and of the three gradients (asserted
  below 1e-5).

Usage: python benchmarks/bench_avsegformer.py [--device cuda] [--frames 10] [--repeats 5]
Results go to benchmarks/results/avsegformer_<device>.json. The whole model (train step,
inference, where the time goes): bench_avsegformer_model.py, which reuses these helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsbench.models.avsegformer.transformer import reference_points  # noqa: E402
from avsbench.models.backbones.deform_attn import multi_scale_deformable_attention  # noqa: E402
from tests.models.avsegformer.published_deform_attn import published_formulation  # noqa: E402

LEVELS = [(28, 28), (14, 14), (7, 7)]  # strides 8, 16, 32 of a 224 x 224 frame
HEADS, CHANNELS, POINTS = 8, 32, 4


FORMULATIONS: dict[str, Callable] = {
    "published": published_formulation,
    "project": multi_scale_deformable_attention,
}


def make_inputs(frames: int, device: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    s = sum(h * w for h, w in LEVELS)
    value = torch.randn(frames, s, HEADS, CHANNELS, generator=gen)
    refs = reference_points(LEVELS, torch.device("cpu"))  # [1, S, 1, 2]
    offsets = torch.randn(frames, s, HEADS, len(LEVELS), POINTS, 2, generator=gen) * 2.0
    size_wh = torch.tensor([[w, h] for h, w in LEVELS], dtype=torch.float32)
    locations = refs[:, :, None, :, None, :] + offsets / size_wh[:, None, :]
    logits = torch.randn(frames, s, HEADS, len(LEVELS) * POINTS, generator=gen)
    weights = logits.softmax(-1).reshape(frames, s, HEADS, len(LEVELS), POINTS)
    upstream = torch.randn(frames, s, HEADS * CHANNELS, generator=gen)
    tensors = {"value": value, "locations": locations, "weights": weights, "up": upstream}
    return {k: v.to(device) for k, v in tensors.items()}


def run(name: str, task: str, inputs: dict[str, torch.Tensor]):
    fn = FORMULATIONS[name]
    if task == "forward":
        with torch.no_grad():
            return fn(inputs["value"], LEVELS, inputs["locations"], inputs["weights"]), {}
    leaves = {k: inputs[k].detach().requires_grad_(True) for k in ("value", "locations", "weights")}
    out = fn(leaves["value"], LEVELS, leaves["locations"], leaves["weights"])
    torch.vdot(out.flatten(), inputs["up"].flatten()).backward()
    return out.detach(), {k: v.grad for k, v in leaves.items()}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def saved_bytes(name: str, inputs: dict[str, torch.Tensor]) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    leaves = [inputs[k].detach().requires_grad_(True) for k in ("value", "locations", "weights")]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = FORMULATIONS[name](leaves[0], LEVELS, leaves[1], leaves[2])
    del out
    return sum(storages.values())


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_child(name: str, task: str, frames: int) -> int:
    """In a fresh process: rise of the peak RSS (bytes) over one call on CPU."""
    inputs = make_inputs(frames, "cpu")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    run(name, task, inputs)
    return (_status_kb("VmHWM") - before) * 1024


def peak_bytes(name: str, task: str, frames: int, device: str) -> int | None:
    if device == "cuda":
        inputs = make_inputs(frames, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(name, task, inputs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, __file__, "--peak-child", name, task, "--frames", str(frames)]
    # a fixed mmap threshold keeps glibc from holding freed large blocks: RSS follows tensors
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"peak measurement failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return int(result.stdout.strip().splitlines()[-1])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def agreement(task: str, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    out_p, grads_p = run("published", task, inputs)
    out_q, grads_q = run("project", task, inputs)
    diffs = {"output": rel(out_q, out_p)}
    diffs.update({f"grad.{k}": rel(grads_q[k], grads_p[k]) for k in grads_p})
    worst = max(diffs.values())
    assert worst < 1e-5, f"{task}: the formulations disagree: {diffs}"
    return diffs


def measure(task: str, frames: int, device: str, repeats: int, memory: bool) -> dict:
    inputs = make_inputs(frames, device)
    result: dict = {"agreement": agreement(task, inputs)}
    names = list(FORMULATIONS)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up
        run(name, task, inputs)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run(name, task, inputs)
            sync(device)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - start_cpu)
    for name in names:
        entry = {
            "times_s": times[name],
            "median_s": statistics.median(times[name]),
            "min_s": min(times[name]),
            # process CPU time: less sensitive than wall time to other work on the machine
            "cpu_median_s": statistics.median(cpu_times[name]),
            "cpu_min_s": min(cpu_times[name]),
        }
        if task == "train":
            entry["saved_bytes"] = saved_bytes(name, inputs)
        if memory:
            entry["peak_bytes"] = peak_bytes(name, task, frames, device)
        result[name] = entry
    pub, proj = result["published"], result["project"]
    result["speedup_median"] = pub["median_s"] / proj["median_s"]
    result["speedup_min"] = pub["min_s"] / proj["min_s"]
    result["cpu_speedup_median"] = pub["cpu_median_s"] / proj["cpu_median_s"]
    if task == "train":
        result["saved_ratio"] = pub["saved_bytes"] / proj["saved_bytes"]
    if memory and pub.get("peak_bytes") and proj.get("peak_bytes"):
        result["peak_ratio"] = pub["peak_bytes"] / max(proj["peak_bytes"], 1)
    return result


def environment(device: str, load_before: tuple[float, float, float]) -> dict:
    """Where a result was measured: versions, threads, CPU, GPU and the load around it."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "load_average_before": load_before,  # other work on the machine skews the timings
        "load_average_after": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=10, help="N, frames per batch (B*T)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median, min)")
    parser.add_argument("--tasks", default="forward,train", help="forward and/or train")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak measurement")
    parser.add_argument("--out", default=None, help="JSON file (default results/avsegformer_<dev>)")
    parser.add_argument("--peak-child", nargs=2, metavar=("NAME", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        print(peak_child(args.peak_child[0], args.peak_child[1], args.frames))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    tasks = [t for t in args.tasks.split(",") if t]
    if any(t not in ("forward", "train") for t in tasks):
        parser.error(f"--tasks takes forward and/or train, got {args.tasks!r}")

    load_before = os.getloadavg()
    results: dict = {
        "what": "multi-scale deformable attention core (encoder self-attention, 224 input)",
        "device": args.device,
        "shape": {
            "frames": args.frames,
            "levels": LEVELS,
            "heads": HEADS,
            "channels_per_head": CHANNELS,
            "points": POINTS,
        },
        "repeats": args.repeats,
    }
    for task in tasks:
        results[task] = measure(task, args.frames, args.device, args.repeats, not args.no_memory)
    results["env"] = environment(args.device, load_before)

    mb = 1024**2
    print(f"deformable attention, N = {args.frames} frames, levels {LEVELS}, on {args.device}")
    for task in tasks:
        r = results[task]
        for name in FORMULATIONS:
            e = r[name]
            line = f"  {task:7s} {name:9s} median {e['median_s'] * 1e3:8.1f} ms"
            line += f"  min {e['min_s'] * 1e3:8.1f} ms"
            if "saved_bytes" in e:
                line += f"  saved {e['saved_bytes'] / mb:7.1f} MB"
            if e.get("peak_bytes") is not None:
                line += f"  peak {e['peak_bytes'] / mb:7.1f} MB"
            print(line)
        extra = f", saved {r['saved_ratio']:.2f}x" if "saved_ratio" in r else ""
        extra += f", peak {r['peak_ratio']:.2f}x" if "peak_ratio" in r else ""
        print(
            f"  {task}: published / project = {r['speedup_median']:.2f}x (median), "
            f"{r['speedup_min']:.2f}x (min), CPU time {r['cpu_speedup_median']:.2f}x (median)"
            f"{extra}; max rel diff {max(r['agreement'].values()):.1e}"
        )

    default = Path(__file__).parent / "results" / f"avsegformer_{args.device}.json"
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
