"""What the benchmarks of a model in two formulations share (`bench_avsegformer_model.py`,
`bench_mask2former.py`): the deformable-attention core of each variant, interleaved timing
of the variants on one model, forward hooks timing its parts, the peak memory of one call
(CUDA: allocator peak; CPU: peak RSS rise in a fresh process) and the report lines.
benchmarks/README.md describes the method."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from avsbench.models.backbones import deform_attn  # noqa: E402
from tests.models.avsegformer.published_deform_attn import published_formulation  # noqa: E402

PROJECT_CORE = deform_attn.multi_scale_deformable_attention
# the deformable-attention core of each variant, the baseline first
CORES = {"published": published_formulation, "project": PROJECT_CORE}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def core(variant: str, timer: dict[str, list[float]] | None = None) -> Iterator[None]:
    """The models' deformable-attention core of `variant` (optionally timed into
    timer["deform_attn_core"][-1])."""
    fn = CORES[variant]
    if timer is not None:
        inner = fn

        def fn(*args):  # noqa: F811
            start = time.perf_counter()
            out = inner(*args)
            sync(out.device.type)
            timer["deform_attn_core"][-1] += time.perf_counter() - start
            return out

    deform_attn.multi_scale_deformable_attention = fn
    try:
        yield
    finally:
        deform_attn.multi_scale_deformable_attention = PROJECT_CORE


@contextlib.contextmanager
def part_hooks(
    model: nn.Module, parts: Mapping[str, Sequence[str]], device: str, timer
) -> Iterator[None]:
    """Accumulate the forward wall time of each part (label -> submodule names) into
    timer[label][-1]."""
    modules = dict(model.named_modules())
    handles, starts = [], {}

    def add(label: str, module: nn.Module) -> None:
        def pre(_m, _args):
            sync(device)
            starts[label] = time.perf_counter()

        def post(_m, _args, _out):
            sync(device)
            timer[label][-1] += time.perf_counter() - starts[label]

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    for label, names in parts.items():
        for name in names:
            add(label, modules[name])
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def interleaved(
    names: Sequence[str], run: Callable[[str], object], repeats: int, device: str
) -> dict[str, dict]:
    """One warm-up call of every variant, then `repeats` rounds calling each once, the order
    reversed every other round so that drifts of the machine's load hit all of them.
    Returns per variant its wall times, their median and minimum, and the median and
    minimum of the process CPU time (all threads)."""
    for name in names:
        run(name)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run(name)
            sync(device)
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(time.process_time() - start_cpu)
    return {
        n: {
            "times_s": walls[n],
            "median_s": statistics.median(walls[n]),
            "min_s": min(walls[n]),
            "cpu_median_s": statistics.median(cpus[n]),
            "cpu_min_s": min(cpus[n]),
        }
        for n in names
    }


def cuda_peak_bytes(model: nn.Module, run: Callable[[], object]) -> int:
    """The allocator's peak over one call above what was allocated before it."""
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated() - base


def child_peak_bytes(script: str, child_args: Sequence[str]) -> int | None:
    """Run `script --peak-child ARGS` in a fresh process, whose last output line is the
    rise of its peak RSS in bytes (None where /proc cannot reset the peak, or on failure)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, script, "--peak-child", *child_args]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")  # RSS follows the tensors
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"peak measurement failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return int(result.stdout.strip().splitlines()[-1])


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rise_of(call: Callable[[], object]) -> int:
    """The rise of this process's peak RSS (bytes) over one call (a --peak-child's answer)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kb("VmRSS")
    call()
    return (status_kb("VmHWM") - before) * 1024


def print_variants(label: str, task: str, names: Sequence[str], result: dict) -> None:
    """Per variant: median and minimum time, peak rise, and the breakdown of its parts."""
    for name in names:
        e = result[name]
        line = f"  {label:11s} {task:5s} {name:9s} median {e['median_s']:7.3f} s"
        line += f"  min {e['min_s']:7.3f} s"
        if e.get("peak_bytes") is not None:
            line += f"  peak +{e['peak_bytes'] / 1024**2:7.1f} MB"
        print(line)
        parts = ", ".join(f"{k} {v:.3f}" for k, v in e["breakdown_s"].items())
        print(f"      breakdown (s): {parts}")
