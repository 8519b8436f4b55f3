"""Whole-model benchmarks: the published dense TPAVI formulation versus the project defaults.

Two subcommands, both on the official S4 network (setting "s4", 224 x 224, 5-frame clips,
TPAVI on the four stages, random weights: speed and memory do not depend on the values):

    train   one training step: forward, the S4 loss (BCE on the annotated first frame of each
            clip, the TPAVI spec's loss), backward and an Adam step (lr 1e-4).
    infer   inference: eval mode, `torch.no_grad()`, reported as clips per second.
            With --metrics, each batch is also scored (official mIoU and F-measure, 255
            thresholds): testing a split. The dense (published) variant scores with the
            published per-frame, per-threshold loop (`bench_metrics.py`), the others with
            `avsbench.metrics.BinaryMetrics`.

Variants (`--variants`, baseline first):

    dense            the published formulation: N x N TPAVI affinity, the decoder on every
                     frame, full dilated 3x3 convs, float32, NCHW
    lowrank          the exact low-rank TPAVI only (the project before the exact savings)
    exact            + the exact savings (docs/ARCHITECTURE.md): decode only the frames the
                     loss reads (train), skip the dilated taps that read only padding;
                     the project default on CPU
    exact_cl         + channels_last                     (TrainConfig.channels_last)
    exact_bf16       + bfloat16 autocast                 (TrainConfig.amp = "bf16")
    exact_bf16_cl    + both: the project's recommended GPU setting
    lowrank_cl, lowrank_bf16, lowrank_bf16_cl: the same flags without the exact savings

Method, in one process per run:
- time: all variants of a configuration are built in this process from the same weights;
  after `--warmup` steps each, `--repeats` rounds run every variant once, alternating the
  order from round to round (so slow drifts of the machine's load hit every variant
  alike). Reported per variant: the median and the minimum wall time (the minimum is the
  least-disturbed run on a shared machine) and the median CPU time of the process (all
  threads; less sensitive to other processes than wall time), with the ratios to the
  baseline for each.
- memory: every (configuration, variant) is measured in its own fresh subprocess launched
  by this run. On CPU the child creates Adam's state with a zero-gradient step (weights
  unchanged; a full warm-up step would cost minutes), then reports its peak resident set
  (VmHWM: everything the process ever held, weights and Adam state included) and the rise
  of the peak resident set (VmHWM, reset through /proc/self/clear_refs) over one step: the
  memory the step itself needs. glibc is told to return freed large blocks to the system
  (MALLOC_MMAP_THRESHOLD_) so that the resident set follows the live tensors. On CUDA the
  child reports, after a real warm-up step, `torch.cuda.max_memory_allocated` over one
  step (absolute: weights, gradients and optimizer state included) and its rise over the
  allocation before the step.
- agreement: the baseline and each variant start from the same weights (TPAVI's W_z
  BatchNorm weight drawn from N(1, 0.2) instead of the published zero initialisation, so
  that the attention reaches the output) and inputs, and the first step of each runs from
  the same RNG state (dropout, drop-path); the relative difference of that step's loss
  (train) or of the logits (infer) to the baseline's is recorded.

Usage (see benchmarks/README.md):

    python benchmarks/bench_model.py train [--device cuda] [--configs resnet50:1,pvt_v2_b5:4]
    python benchmarks/bench_model.py infer [--device cuda] [--configs resnet50:4]

Results go to benchmarks/results/{train_step,inference}_<device>.json; a run with a subset
of `--configs` replaces those configurations' entries and keeps the others.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import loop_batch_miou_fscore  # noqa: E402

from avsbench.config import LossConfig  # noqa: E402
from avsbench.metrics import BinaryMetrics  # noqa: E402
from avsbench.models import (
    build_model,  # noqa: E402
    registry,
)
from avsbench.models.tpavi.losses import tpavi_loss  # noqa: E402
from avsbench.models.tpavi.target_frames import loss_target_frames  # noqa: E402

S4 = registry.preset("s4")
RESULTS = Path(__file__).resolve().parent / "results"
OUT_NAMES = {"train": "train_step", "infer": "inference"}
ALL_CONFIGS = "resnet50:1,resnet50:4,pvt_v2_b5:1,pvt_v2_b5:4"
DEFAULT_CONFIGS = {"train": ALL_CONFIGS, "infer": "resnet50:4,pvt_v2_b5:4"}


@dataclass(frozen=True)
class Variant:
    """How one variant runs: TPAVI formulation, autocast dtype, memory format."""

    dense: bool
    amp: str  # "off" | "bf16"
    channels_last: bool
    exact: bool = False  # target frames (train) and dilated-tap skipping


VARIANTS: dict[str, Variant] = {
    "dense": Variant(dense=True, amp="off", channels_last=False),
    "lowrank": Variant(dense=False, amp="off", channels_last=False),
    "lowrank_cl": Variant(dense=False, amp="off", channels_last=True),
    "lowrank_bf16": Variant(dense=False, amp="bf16", channels_last=False),
    "lowrank_bf16_cl": Variant(dense=False, amp="bf16", channels_last=True),
    "exact": Variant(dense=False, amp="off", channels_last=False, exact=True),
    "exact_cl": Variant(dense=False, amp="off", channels_last=True, exact=True),
    "exact_bf16": Variant(dense=False, amp="bf16", channels_last=False, exact=True),
    "exact_bf16_cl": Variant(dense=False, amp="bf16", channels_last=True, exact=True),
}
BASELINE = "dense"
# The project's default per device (what the engine is recommended to run with there).
PROJECT_DEFAULT = {"cpu": "exact", "cuda": "exact_bf16_cl"}
DEFAULT_VARIANTS = {"cpu": "dense,exact,exact_bf16", "cuda": "dense,exact,exact_bf16_cl"}


# -- the model and one step ------------------------------------------------------------------
@dataclass
class Bench:
    """One variant ready to run: model, optimizer (train only) and its inputs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    frames: torch.Tensor  # [B*T, 3, S, S]
    audio_emb: torch.Tensor  # [B*T, 128]
    frame_valid: torch.Tensor  # [B*T]
    masks: torch.Tensor  # [B*T, S, S] in {0, 1}
    gt_valid: torch.Tensor  # [B*T], S4 train: 1 on the first frame of each clip
    variant: Variant
    device: torch.device
    metrics: bool = False  # infer: also score the batch (official mIoU and F-measure)


def make_inputs(
    clips: int, frames: int, size: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Deterministic S4-like batch: frames, VGGish embeddings, frame_valid, masks, gt_valid."""
    gen = torch.Generator().manual_seed(1)
    bt = clips * frames
    images = torch.randn(bt, 3, size, size, generator=gen)  # [B*T, 3, S, S]
    audio_emb = torch.randn(bt, 128, generator=gen)  # [B*T, 128]: VGGish is frozen, cached
    frame_valid = torch.ones(bt)  # [B*T]
    masks = (torch.rand(bt, size, size, generator=gen) > 0.7).float()  # [B*T, S, S]
    gt_valid = torch.zeros(clips, frames)
    gt_valid[:, 0] = 1  # S4 train: only the first frame of a clip is annotated
    gt_valid = gt_valid.reshape(bt)  # [B*T]
    return tuple(t.to(device) for t in (images, audio_emb, frame_valid, masks, gt_valid))


def make_model(backbone: str, variant: Variant, device: torch.device, state=None) -> nn.Module:
    """The S4 model of `backbone` in `variant`'s TPAVI form; weights from seed 0 or `state`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("s4", backbone, tpavi_dense=variant.dense)
        for projection in model.projections:  # full 3x3 convs as published, or not
            projection.skip_outside_taps = variant.exact
        with torch.no_grad():  # TPAVI starts as the identity (zero BN weight in W_z): make
            for block in model.tpavi_blocks.values():  # it count, or the agreement check
                block.W_z[1].weight.normal_(1.0, 0.2)  # below would compare LayerNorm(x) only
    if state is not None:
        model.load_state_dict(state)
    model = model.to(device)
    if variant.channels_last:
        # Not `model.to(memory_format=torch.channels_last)`: it rejects TPAVI's 5-D Conv3d
        # weights. Only the 4-D (Conv2d) weights take the channels_last layout.
        for param in model.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return model


def make_bench(
    mode: str, backbone: str, clips: int, args: argparse.Namespace, name: str, state=None
) -> Bench:
    device = torch.device(args.device)
    variant = VARIANTS[name]
    model = make_model(backbone, variant, device, state)
    images, audio_emb, frame_valid, masks, gt_valid = make_inputs(
        clips, args.frames, args.size, device
    )
    if variant.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = None
    if mode == "train":
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)  # engine.build_optimizer
    else:
        model.eval()
    return Bench(
        model, optimizer, images, audio_emb, frame_valid, masks, gt_valid, variant, device,
        metrics=getattr(args, "metrics", False),
    )  # fmt: skip


def autocast(bench: Bench) -> contextlib.AbstractContextManager:
    if bench.variant.amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=bench.device.type, dtype=torch.bfloat16)


def train_step(bench: Bench) -> float:
    """One optimisation step as engine.train.train_one_epoch does it; returns the loss."""
    assert bench.optimizer is not None
    bench.optimizer.zero_grad(set_to_none=True)
    # exact: the frames the S4 loss reads, as engine.train passes them
    target = loss_target_frames(S4, bench.gt_valid) if bench.variant.exact else None
    with autocast(bench):
        output = bench.model(bench.frames, bench.audio_emb, bench.frame_valid, target)
    output.logits = output.logits.float()  # the loss runs in float32 (engine: as_float32)
    loss, _ = tpavi_loss("s4", output, bench.masks, bench.gt_valid, LossConfig())
    loss.backward()
    bench.optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def infer_step(bench: Bench) -> torch.Tensor:
    """One batch through the model in eval mode; returns the float32 logits [B*T, 1, S, S].
    With `bench.metrics`, the batch's official metrics are computed too (testing a split)."""
    with autocast(bench):
        output = bench.model(bench.frames, bench.audio_emb, bench.frame_valid)
    logits = output.logits.float()
    if bench.metrics:
        if bench.variant.dense:
            loop_batch_miou_fscore(logits[:, 0].cpu(), bench.masks.cpu())
        else:
            scores = BinaryMetrics()
            scores.update(logits[:, 0], bench.masks)
            scores.compute()
    return logits


def run_step(mode: str, bench: Bench):
    return train_step(bench) if mode == "train" else infer_step(bench)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(mode: str, bench: Bench) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one step."""
    sync(bench.device)
    start, start_cpu = time.perf_counter(), time.process_time()
    run_step(mode, bench)
    sync(bench.device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def rel_diff(a, b) -> float:
    """max |a - b| / max |b| (floats or tensors)."""
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# -- memory, in a fresh child process --------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(mode: str, backbone: str, clips: int, name: str, args) -> dict:
    """Run in the child: one warm-up step, then the peak memory of one measured step."""
    bench = make_bench(mode, backbone, clips, args, name)
    if bench.device.type == "cuda":
        run_step(mode, bench)  # warm-up: Adam's state, cuDNN plans, the caching allocator
    elif bench.optimizer is not None:
        # A full warm-up step costs minutes on a small CPU. Adam's state (2 buffers per
        # parameter), the only lasting allocation of a first step, is created here with an
        # all-zero gradient instead, which leaves the weights unchanged.
        for param in bench.model.parameters():
            param.grad = torch.zeros_like(param)
        bench.optimizer.step()
        bench.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if bench.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run_step(mode, bench)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {
            "peak_bytes": peak,
            "step_rise_bytes": peak - before,
            "reserved_bytes": torch.cuda.max_memory_reserved(),
        }
    # VmHWM is this process's own peak. ru_maxrss is not used: Linux carries the peak of the
    # pre-exec address space (a copy of the parent's) into the child's ru_maxrss.
    peak_setup = _status_kb("VmHWM")  # imports, model, optimizer state, inputs
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status_kb("VmRSS")
    run_step(mode, bench)
    peak_step = _status_kb("VmHWM")
    return {
        "peak_bytes": max(peak_setup, peak_step) * 1024,
        "step_rise_bytes": (peak_step - before) * 1024,
        "resident_before_step_bytes": before * 1024,
    }


def measure_memory(mode: str, backbone: str, clips: int, name: str, args) -> dict | None:
    """Launch a fresh process for one (configuration, variant); None if it failed."""
    if args.device == "cpu" and not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [
        sys.executable,
        __file__,
        mode,
        "--device",
        args.device,
        "--size",
        str(args.size),
        "--frames",
        str(args.frames),
        "--memory-child",
        f"{backbone}:{clips}:{name}",
    ] + (["--metrics"] if args.metrics else [])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"    memory child {name} failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    memory = json.loads(result.stdout.strip().splitlines()[-1])
    memory["child_seconds"] = round(time.perf_counter() - start, 1)
    return memory


# -- one configuration -----------------------------------------------------------------------
def alternating(names: list[str], rounds: int) -> Iterator[str]:
    """Each round runs every variant once; odd rounds in reverse order."""
    for r in range(rounds):
        yield from (names if r % 2 == 0 else names[::-1])


def bench_config(mode: str, backbone: str, clips: int, names: list[str], args) -> dict:
    """Time the variants interleaved in this process, then their memory in child processes."""
    print(
        f"[{mode}] {backbone}, {clips} clip(s) of {args.frames} frames, {args.size}px, "
        f"{args.device}: {', '.join(names)}",
        flush=True,
    )
    load_start = os.getloadavg()
    benches: dict[str, Bench] = {}
    state = None
    for name in names:
        benches[name] = make_bench(mode, backbone, clips, args, name, state)
        if state is None:  # every variant starts from the baseline's weights
            state = {
                k: v.detach().cpu().clone() for k, v in benches[name].model.state_dict().items()
            }
    del state

    first: dict[str, object] = {}
    warm_times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.warmup):
        for name in names:
            if i == 0:  # the same dropout / drop-path draws for every variant's first step
                torch.manual_seed(0)
            start = time.perf_counter()
            out = run_step(mode, benches[name])
            sync(benches[name].device)
            warm_times[name].append(time.perf_counter() - start)
            if i == 0:
                first[name] = out
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}
    for name in alternating(names, args.repeats):
        wall, cpu = timed(mode, benches[name])
        times[name].append(wall)
        cpu_times[name].append(cpu)
        print(f"    {name:16s} {wall:8.3f} s   (CPU {cpu:8.3f} s)", flush=True)

    result: dict = {"backbone": backbone, "clips": clips, "frames": clips * args.frames}
    variants: dict[str, dict] = {}
    for name in names:
        median = statistics.median(times[name])
        variants[name] = {
            **VARIANTS[name].__dict__,
            "warmup_times_s": [round(t, 4) for t in warm_times[name]],
            "times_s": [round(t, 4) for t in times[name]],
            "median_s": median,
            "min_s": min(times[name]),
            "clips_per_s": clips / median,
            "clips_per_s_best": clips / min(times[name]),
            "cpu_times_s": [round(t, 4) for t in cpu_times[name]],
            "cpu_median_s": statistics.median(cpu_times[name]),
        }
        if first:
            if mode == "train":
                variants[name]["first_loss"] = first[name]
            if name != names[0]:
                variants[name]["rel_diff_vs_" + names[0]] = rel_diff(first[name], first[names[0]])
    load_after_timing = os.getloadavg()
    del benches, first
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()

    if args.memory:
        for name in names:
            variants[name]["memory"] = measure_memory(mode, backbone, clips, name, args)

    result["variants"] = variants
    result["ratios"] = ratios(variants, names[0])
    result["load_average"] = {
        "start": load_start,
        "after_timing": load_after_timing,
        "end": os.getloadavg(),
    }
    result["date"] = dt.datetime.now().isoformat(timespec="seconds")
    result["run"] = {
        "command": "python benchmarks/bench_model.py " + " ".join(sys.argv[1:]),
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    report(result, names)
    return result


def ratios(variants: dict[str, dict], base: str) -> dict[str, dict]:
    """Per variant: time and memory as fractions of the baseline, and the speed-up."""
    b = variants[base]
    out = {}
    for name, v in variants.items():
        if name == base:
            continue
        r = {
            "time_ratio": v["median_s"] / b["median_s"],  # of the medians (wall)
            "speedup": b["median_s"] / v["median_s"],
            "time_ratio_min": v["min_s"] / b["min_s"],  # of the fastest runs (least disturbed)
            "cpu_time_ratio": v["cpu_median_s"] / b["cpu_median_s"],  # process CPU time
        }
        mb, mv = b.get("memory"), v.get("memory")
        if mb and mv:
            r["peak_memory_ratio"] = mv["peak_bytes"] / mb["peak_bytes"]
            r["step_memory_ratio"] = mv["step_rise_bytes"] / max(mb["step_rise_bytes"], 1)
        out[name] = r
    return out


def report(result: dict, names: list[str]) -> None:
    mb = 1024**2
    for name in names:
        v = result["variants"][name]
        text = f"  {name:16s} median {v['median_s']:8.3f} s  {v['clips_per_s']:7.3f} clips/s"
        mem = v.get("memory")
        if mem:
            text += f"  peak {mem['peak_bytes'] / mb:8.0f} MB"
            text += f"  step {mem['step_rise_bytes'] / mb:8.0f} MB"
        print(text)
    for name, r in result["ratios"].items():
        text = f"  {name} / {names[0]}: time {r['time_ratio']:.3f}x"
        text += f" (speed-up {r['speedup']:.2f}x; fastest runs {r['time_ratio_min']:.3f}x,"
        text += f" CPU time {r['cpu_time_ratio']:.3f}x)"
        if "peak_memory_ratio" in r:
            text += f", peak memory {r['peak_memory_ratio']:.3f}x"
            text += f", step memory {r['step_memory_ratio']:.3f}x"
        print(text, flush=True)


# -- the run ---------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
    }


def parse_configs(text: str) -> list[tuple[str, int]]:
    configs = []
    for item in text.split(","):
        backbone, _, clips = item.strip().partition(":")
        if not backbone or not clips.isdigit() or int(clips) < 1:
            raise SystemExit(
                f"--configs: expected BACKBONE:CLIPS items (e.g. resnet50:4), got {item!r}"
            )
        configs.append((backbone, int(clips)))
    return configs


def parse_variants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {list(VARIANTS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train", "infer"], help="training step or inference")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--configs",
        default=None,
        help=f"BACKBONE:CLIPS list (train default {ALL_CONFIGS}; "
        f"infer default {DEFAULT_CONFIGS['infer']})",
    )
    defaults = f"default cpu: {DEFAULT_VARIANTS['cpu']}; cuda: {DEFAULT_VARIANTS['cuda']}"
    parser.add_argument(
        "--variants",
        default=None,
        help=f"baseline first; valid: {', '.join(VARIANTS)} ({defaults})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--size", type=int, default=224, help="frame size (published: 224)")
    parser.add_argument("--frames", type=int, default=5, help="frames per clip (S4: 5)")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the per-variant memory subprocesses",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="infer: also compute each batch's official metrics (testing a split)",
    )
    parser.add_argument("--out", default=None, help="JSON file (default results/<name>_<dev>.json)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 1
    if args.memory_child:
        backbone, clips, name = args.memory_child.split(":")
        print(json.dumps(child_memory(args.mode, backbone, int(clips), name, args)))
        return 0
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # what a training run would use
    configs = parse_configs(args.configs or DEFAULT_CONFIGS[args.mode])
    names = parse_variants(args.variants or DEFAULT_VARIANTS[args.device])
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit("--repeats must be >= 1 and --warmup >= 0")

    out = Path(args.out) if args.out else RESULTS / f"{OUT_NAMES[args.mode]}_{args.device}.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    start = time.perf_counter()
    results = [bench_config(args.mode, b, c, names, args) for b, c in configs]
    done = {(r["backbone"], r["clips"]) for r in results}
    kept = [r for r in previous.get("results", []) if (r["backbone"], r["clips"]) not in done]

    what = (
        "training step: forward + S4 loss (BCE, first frame) + backward + Adam"
        if args.mode == "train"
        else "inference: eval mode, no_grad" + (" + official metrics" if args.metrics else "")
    )
    document = {
        "benchmark": f"whole S4 model, {what}",
        "command": "python benchmarks/bench_model.py " + " ".join(sys.argv[1:]),
        "device": args.device,
        "env": environment(args.device),
        "size": args.size,
        "frames_per_clip": args.frames,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "baseline": names[0],
        "project_default": PROJECT_DEFAULT[args.device],
        "last_run_seconds": round(time.perf_counter() - start, 1),
        "results": kept + results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"written to {out} ({document['last_run_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
