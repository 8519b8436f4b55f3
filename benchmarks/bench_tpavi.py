"""Benchmark: published dense TPAVI vs the exact low-rank form, at the stage-0 shape.

One TPAVI block (C = 256, C' = 128, dot mode, audio-visual) on x [1, 256, 5, 56, 56] (a 224
input, one 5-frame window: N = 15680 positions) and audio [1, 5, 128]; forward + backward.

Measured, in one run:
- time: median wall time of forward+backward over `--repeats` runs (3x as many for the
  cheap low-rank form), after one warm-up; the machine's load average is recorded;
- saved: bytes autograd keeps between forward and backward (unique storages seen by
  `torch.autograd.graph.saved_tensors_hooks`): the memory a training step must hold;
- peak: CPU: the rise of the process's peak resident set (VmHWM, reset through
  /proc/self/clear_refs) during one forward+backward, each form in a fresh subprocess;
  CUDA: the rise of `torch.cuda.max_memory_allocated`.
- agreement: max relative difference of the outputs and of the gradients (x, audio, params;
  gradients that are zero up to rounding in both forms, such as W_z's conv bias under
  train-mode BatchNorm, are listed instead).

Usage: python benchmarks/bench_tpavi.py [--device cuda] [--repeats 3] [--out FILE]
Results go to benchmarks/results/tpavi_<device>.json.
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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsbench.models.tpavi.block import TPAVI  # noqa: E402

SHAPE = (1, 256, 5, 56, 56)  # [B', C, T', H, W]: stage 0 of a 224 input, one window


def make(dense: bool, device: str) -> tuple[TPAVI, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    block = TPAVI(256, mode="dot", dense=dense)
    with torch.no_grad():  # non-zero W_z: the attention reaches the output and the gradients
        block.W_z[1].weight.normal_(1.0, 0.2)
    block = block.to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(SHAPE, generator=gen).to(device)
    audio = torch.randn(SHAPE[0], SHAPE[2], 128, generator=gen).to(device)
    # loss weights: a fixed random direction (a plain mean of z^2 is constant after LayerNorm)
    weight = torch.randn(SHAPE, generator=gen).to(device) / SHAPE[1]
    return block, x, audio, weight


def step(block: TPAVI, x: torch.Tensor, audio: torch.Tensor, weight: torch.Tensor):
    block.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    audio = audio.detach().requires_grad_(True)
    z, _ = block(x, audio)
    torch.vdot(z.flatten(), weight.flatten()).backward()  # no map-sized temporary
    grads = {"x": x.grad, "audio": audio.grad}
    grads.update({n: p.grad for n, p in block.named_parameters() if p.grad is not None})
    return z.detach(), grads


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_runs(dense: bool, device: str, repeats: int) -> list[float]:
    block, x, audio, weight = make(dense, device)
    step(block, x, audio, weight)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step(block, x, audio, weight)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def saved_bytes(dense: bool, device: str) -> int:
    block, x, audio, _ = make(dense, device)
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z, _ = block(x.requires_grad_(True), audio.requires_grad_(True))
    del z
    return sum(storages.values())


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_child(dense: bool) -> int:
    """In a fresh process: rise of peak RSS (bytes) over one forward+backward on CPU."""
    block, x, audio, weight = make(dense, "cpu")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    step(block, x, audio, weight)
    return (_status_kb("VmHWM") - before) * 1024


def peak_bytes(dense: bool, device: str) -> int | None:
    if device == "cuda":
        block, x, audio, weight = make(dense, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(block, x, audio, weight)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, __file__, "--peak-child", "dense" if dense else "lowrank"]
    # A fixed mmap threshold stops glibc from keeping freed large blocks in its heap, so the
    # resident set follows the live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"peak measurement failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return int(result.stdout.strip().splitlines()[-1])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per form (median)")
    parser.add_argument("--out", default=None, help="JSON file (default results/tpavi_<dev>.json)")
    parser.add_argument("--peak-child", choices=["dense", "lowrank"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        print(peak_child(args.peak_child == "dense"))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    device = args.device

    z_d, g_d = step(*make(True, device))
    z_l, g_l = step(*make(False, device))
    agreement = {"output": rel(z_l, z_d)}
    largest = max(float(g.abs().max()) for g in g_d.values())
    zero_grads = []  # zero up to rounding in both forms (W_z's conv bias under train-mode BN)
    for k in g_d:
        if float(g_d[k].abs().max()) < 1e-4 * largest:
            assert float(g_l[k].abs().max()) < 1e-4 * largest, k
            zero_grads.append(k)
        else:
            agreement[f"grad.{k}"] = rel(g_l[k], g_d[k])
    del z_d, g_d, z_l, g_l

    results: dict = {"device": device, "shape": list(SHAPE), "repeats": args.repeats}
    for name, dense in (("dense", True), ("lowrank", False)):
        times = time_runs(dense, device, args.repeats if dense else 3 * args.repeats)
        results[name] = {
            "times_s": times,
            "median_s": statistics.median(times),
            "saved_bytes": saved_bytes(dense, device),
            "peak_bytes": peak_bytes(dense, device),
        }
        if device == "cuda":
            torch.cuda.empty_cache()
    dense_r, low_r = results["dense"], results["lowrank"]
    results["speedup"] = dense_r["median_s"] / low_r["median_s"]
    results["saved_ratio"] = dense_r["saved_bytes"] / low_r["saved_bytes"]
    if dense_r["peak_bytes"] and low_r["peak_bytes"]:
        results["peak_ratio"] = dense_r["peak_bytes"] / max(low_r["peak_bytes"], 1)
    results["max_rel_diff"] = max(agreement.values())
    results["agreement"] = agreement
    results["zero_gradients"] = zero_grads
    results["env"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "load_average": os.getloadavg(),  # other work on the machine skews the timings
    }

    mb = 1024**2
    print(f"TPAVI dot, x {list(SHAPE)}, forward+backward on {device}")
    for name in ("dense", "lowrank"):
        r = results[name]
        peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / mb:9.1f} MB"
        print(
            f"  {name:8s} median {r['median_s'] * 1e3:9.1f} ms"
            f"   saved {r['saved_bytes'] / mb:9.1f} MB   peak {peak}"
        )
    print(
        f"  speedup {results['speedup']:.1f}x, saved-memory ratio {results['saved_ratio']:.1f}x"
        + (f", peak-memory ratio {results['peak_ratio']:.1f}x" if "peak_ratio" in results else "")
    )
    print(f"  max relative difference (output and all gradients): {results['max_rel_diff']:.2e}")

    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"tpavi_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
