"""Benchmark: VCT, COMBO and AVSegFormer training step and inference, the project's exact
savings vs the published formulation.

One model per method, built once from a seed; both variants run on it, with the same
inputs, in one process:

    published  the published module structure and deformable attention: every frame decoded
               (target_frames None) and the deformable-attention core of the published
               code's PyTorch reference (`ms_deform_attn_core_pytorch`: one grid_sample per
               level, stack, weight, sum; `published_formulation` of
               tests/models/avsegformer/published_deform_attn.py)
    project    what the engine runs: the project's deformable attention and the method's
               `target_frames` (the frames the S4 losses read: VCT computes only those, COMBO
               its last decoder layer and final prediction only for those, AVSegFormer its
               head only for those; VCT's training logits carry no graph)

Tasks: train (engine.step.forward, the method's spec loss, backward; no optimizer step, so
the weights stay equal) and infer (eval, no_grad; the variants differ only in the core).

Sizes (`--size`): `bench` (default) is S4, 2 clips of 5 frames, the published head widths
(queries, layers, FFNs), random weights: AVSegFormer and COMBO on ResNet-18 at 224 x 224,
VCT at 384 x 384 on a reduced Swin (width 64, depths 1-1-3-1, no stochastic depth) and 1
clip (its 384 px steps are the slowest); `tiny` the methods' `--synthetic` models (wiring
checks, the GPU dry run).

Measured per (method, task):
- agreement: a float64 copy on the first clip (VCT, AVSegFormer: its first 2 frames),
  dropout off, VCT's Gumbel noise the same for every frame, the loss's points reseeded:
  loss and every parameter gradient, max relative difference (asserted below 1e-5);
- time: one warm-up per variant, then `--repeats` rounds running both in alternating order;
  medians and minima of wall and process CPU time; ratios project / published;
- peak memory: CPU, the rise of the peak RSS over one step in a fresh subprocess; CUDA,
  torch.cuda.max_memory_allocated over one step;
- breakdown: forward time of the parts by forward hooks (median over extra rounds): the
  backbones, pixel decoder / encoder, the deformable-attention core inside it, the decoder,
  the rest of the forward, the loss, and the backward as a whole.

Usage: nice -n 5 python benchmarks/bench_mask2former.py [--methods vct,combo,avsegformer]
       [--tasks train,infer] [--size bench|tiny] [--repeats 3] [--device cuda] [--no-memory]
Results: benchmarks/results/mask2former_<device>.json (a run replaces the methods it
measured, keeps the others).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from avsbench.engine.step import forward  # noqa: E402
from avsbench.models import registry  # noqa: E402
from benchmarks.bench_avsegformer import environment  # noqa: E402
from benchmarks.two_variants import (  # noqa: E402
    CORES,
    child_peak_bytes,
    core,
    cuda_peak_bytes,
    interleaved,
    part_hooks,
    peak_rise_of,
    print_variants,
    sync,
)

VARIANTS = tuple(CORES)  # baseline first
METHODS = ("vct", "combo", "avsegformer")
TASKS = ("train", "infer")
FRAMES_PER_CLIP = 5
TOLERANCE = 1e-5
CATEGORIES = ("helicopter", "race_car")  # VCT's S4 prototype targets
ORIGINAL_EXPONENTIAL = torch.Tensor.exponential_

# parts of the forward timed by hooks (submodule names; disjoint within a method)
PARTS = {
    "vct": {
        "backbones": ["visual"],
        "pixel_decoder": ["sem_seg_head.pixel_decoder"],
        "audio": ["sem_seg_head.audio_transformation"],
        "query_block": ["sem_seg_head.predictor.visual_query_block"],
        "decoder": ["sem_seg_head.predictor"],
    },
    "combo": {
        "backbones": ["visual"],
        "pixel_decoder": ["sem_seg_head.pixel_decoder"],
        "fusion_audio": ["sem_seg_head.fusion_module", "sem_seg_head.audio_transformation"],
        "decoder": ["sem_seg_head.predictor"],
    },
    "avsegformer": {
        "backbone": ["visual"],
        "encoder": ["head.encoder"],
        "decoder": ["head.query_generator", "head.decoder"],
    },
}


def config(method: str, size: str):
    """(Config, clips) of a method at `size`."""
    cfg = registry.preset("s4", method)
    if size == "tiny":
        return registry.synthetic(cfg), 2 if method != "vct" else 1
    if size != "bench":
        raise ValueError(f"unknown --size {size!r}; valid: bench, tiny")
    if method == "vct":
        arch = dataclasses.replace(
            cfg.model.arch, swin_embed_dim=64, swin_depths=(1, 1, 3, 1),
            swin_num_heads=(2, 4, 8, 16), drop_path_rate=0.0,
        )  # fmt: skip
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch)), 1
    model = dataclasses.replace(cfg.model, backbone="resnet18")
    cfg = dataclasses.replace(cfg, model=model, data=dataclasses.replace(cfg.data, image_size=224))
    return cfg, 2


def build(method: str, size: str, device: str):
    """(cfg, model (seed 0), inputs (seed 1)) of a method."""
    cfg, clips = config(method, size)
    spec = registry.method_spec(method)
    torch.manual_seed(0)
    model = spec.build_from_config(cfg.model).to(device)
    gen = torch.Generator().manual_seed(1)
    n, s = clips * FRAMES_PER_CLIP, cfg.data.image_size
    audio_dim = 512 * 6 * 4 if spec.audio_input == "conv_map" else 128
    gt_valid = torch.zeros(clips, FRAMES_PER_CLIP)
    gt_valid[:, 0] = 1.0  # S4 training clips: the first frame is annotated
    masks = torch.zeros(n, s, s)
    masks[:, s // 4 : s // 2, s // 8 : s * 3 // 4] = 1.0
    inputs = {
        "frames": torch.randn(n, 3, s, s, generator=gen),
        "audio": torch.randn(n, audio_dim, generator=gen),
        "masks": masks,
        "gt_valid": gt_valid.reshape(n),
    }
    if spec.extra_inputs:  # COMBO, VCT: the maskiges
        inputs["maskige"] = torch.randn(n, 3, s, s, generator=gen)
    return cfg, model, {k: v.to(device) for k, v in inputs.items()}


def step(cfg, model: nn.Module, variant: str, task: str, inputs: dict, timer=None) -> dict:
    """One train step (grads left in the parameters) or inference with `variant`."""
    spec = registry.method_spec(cfg.model.method)
    extra = {"maskige": inputs["maskige"]} if "maskige" in inputs else {}
    device = inputs["frames"].device.type
    with core(variant, timer):
        if task == "infer":
            model.eval()
            with torch.no_grad():
                out = forward(model, inputs["frames"], inputs["audio"], **extra)
            return {"logits": out.logits}
        model.train()
        model.zero_grad(set_to_none=True)
        target = spec.target_frames(cfg, inputs["gt_valid"]) if variant == "project" else None
        if timer is not None:  # agreement: the same dropout masks where every frame runs
            torch.manual_seed(2)  # (COMBO's fusion; those of parts that run on fewer frames
        start = time.perf_counter()  # are off: `same_randomness`)
        out = forward(model, inputs["frames"], inputs["audio"], target_frames=target, **extra)
        sync(device)
        mid = time.perf_counter()
        if timer is not None:
            torch.manual_seed(3)  # agreement: the same points for the loss of both variants
        clips = max(1, inputs["frames"].shape[0] // FRAMES_PER_CLIP)  # agreement: 1 clip
        keys = {"category": list(CATEGORIES[:clips])}
        reads = {k: keys[k] for k in spec.loss_batch_keys}
        loss, _ = spec.loss("s4", out, inputs["masks"], inputs["gt_valid"], cfg.train.loss, **reads)
        sync(device)
        after_loss = time.perf_counter()
        loss.backward()
        sync(device)
        if timer is not None:
            timer["forward_total"][-1] += mid - start
            timer["loss"][-1] += after_loss - mid
            timer["backward_total"][-1] += time.perf_counter() - after_loss
        return {"loss": loss.detach()}


@contextlib.contextmanager
def same_randomness(model: nn.Module) -> Iterator[None]:
    """Dropout off (nn.Dropout and attention dropout) and VCT's Gumbel noise one fixed draw
    per frame (`Tensor.exponential_`): what is left of the two variants' difference is the
    computation. Restored afterwards."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            saved.append((m, "p", m.p))
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            saved.append((m, "dropout", m.dropout))
            m.dropout = 0.0

    def fill(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        gen = torch.Generator().manual_seed(7)
        one = ORIGINAL_EXPONENTIAL(torch.empty(self.shape[1:], dtype=self.dtype), generator=gen)
        return self.copy_(one.to(self.device).expand_as(self))

    torch.Tensor.exponential_ = fill
    try:
        yield
    finally:
        torch.Tensor.exponential_ = ORIGINAL_EXPONENTIAL
        for m, name, value in saved:
            setattr(m, name, value)


def agreement(cfg, model: nn.Module, task: str, inputs: dict) -> dict:
    """Published vs project on the first clip (VCT, AVSegFormer: its first 2 frames) in
    float64: max relative difference of the loss / logits and of every gradient."""
    frames = FRAMES_PER_CLIP if cfg.model.method == "combo" else 2  # COMBO: cosine groups of 5
    small = {k: v[:frames].double() for k, v in inputs.items()}
    model64 = copy.deepcopy(model).double()
    results = {}
    with same_randomness(model64):
        for variant in VARIANTS:
            timer = defaultdict(lambda: [0.0])
            res = step(cfg, model64, variant, task, small, timer if task == "train" else None)
            if task == "train":
                res.update({f"grad.{k}": p.grad.clone() for k, p in model64.named_parameters()
                            if p.grad is not None})  # fmt: skip
            results[variant] = res
    pub, proj = results["published"], results["project"]
    assert pub.keys() == proj.keys(), "the variants produced different gradients"
    # a gradient that is zero in exact arithmetic (e.g. VCT's assignment q_proj bias: a
    # constant over the queries, which the softmax over queries cancels) is rounding noise:
    # differences are relative to max(its own largest entry, 1e-6 x the largest gradient)
    floor = 1e-6 * max((pub[k].abs().max().item() for k in pub if k.startswith("grad.")),
                       default=0.0)  # fmt: skip
    diffs = {
        k: float((proj[k] - pub[k]).abs().max() / max(pub[k].abs().max().item(), floor, 1e-30))
        for k in pub
    }
    summary = {k: v for k, v in diffs.items() if not k.startswith("grad.")}
    grads = {k: v for k, v in diffs.items() if k.startswith("grad.")}
    if grads:
        worst = max(grads, key=grads.get)
        summary.update(grad_max=grads[worst], grad_max_at=worst[5:], grads_compared=len(grads))
    worst_all = max(v for v in summary.values() if isinstance(v, float))
    assert worst_all < TOLERANCE, f"{task}: the variants disagree in float64: {summary}"
    return {"frames": frames, "float64": summary}


def breakdown(cfg, model, variant: str, task: str, inputs: dict, rounds: int) -> dict:
    """Median time of each part over `rounds` extra steps."""
    method, device = cfg.model.method, inputs["frames"].device.type
    labels = [*PARTS[method], "deform_attn_core", "forward_total", "loss", "backward_total"]
    timer: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for label in labels:
            timer[label].append(0.0)
        with part_hooks(model, PARTS[method], device, timer):
            start = time.perf_counter()
            step(cfg, model, variant, task, inputs, timer)
            sync(device)
            if task == "infer":
                timer["forward_total"][-1] = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    med = {k: statistics.median(v) for k, v in timer.items() if any(v)}
    med["rest_of_forward"] = med["forward_total"] - sum(med.get(p, 0.0) for p in PARTS[method])
    return med


def peak_child(method: str, size: str, variant: str, task: str) -> int:
    """In a fresh process: the rise of the peak RSS (bytes) over one step on the CPU."""
    cfg, model, inputs = build(method, size, "cpu")
    return peak_rise_of(lambda: step(cfg, model, variant, task, inputs))


def peak_bytes(cfg, model, inputs, size: str, variant: str, task: str, device: str):
    if device == "cuda":
        return cuda_peak_bytes(model, lambda: step(cfg, model, variant, task, inputs))
    return child_peak_bytes(__file__, [cfg.model.method, size, variant, task])


def measure(method: str, task: str, size: str, device: str, repeats: int, memory: bool) -> dict:
    cfg, model, inputs = build(method, size, device)
    result: dict = {"agreement": agreement(cfg, model, task, inputs)}
    run = lambda variant: step(cfg, model, variant, task, inputs)  # noqa: E731
    result |= interleaved(VARIANTS, run, repeats, device)
    model.zero_grad(set_to_none=True)
    for variant in VARIANTS:
        breakdown_s = breakdown(cfg, model, variant, task, inputs, max(1, repeats // 2))
        result[variant]["breakdown_s"] = breakdown_s
        if memory:
            peak = peak_bytes(cfg, model, inputs, size, variant, task, device)
            result[variant]["peak_bytes"] = peak
    pub, proj = result["published"], result["project"]
    result["time_ratio_median"] = proj["median_s"] / pub["median_s"]  # project / published
    result["time_ratio_min"] = proj["min_s"] / pub["min_s"]
    result["cpu_ratio_median"] = proj["cpu_median_s"] / pub["cpu_median_s"]
    if memory and pub.get("peak_bytes") and proj.get("peak_bytes"):
        result["peak_ratio"] = proj["peak_bytes"] / pub["peak_bytes"]
    return result


def report(method: str, task: str, r: dict) -> None:
    print_variants(method, task, VARIANTS, r)
    extra = f", peak {r['peak_ratio']:.2f}x" if "peak_ratio" in r else ""
    worst = max(v for v in r["agreement"]["float64"].values() if isinstance(v, float))
    print(f"  {method} {task}: project / published = {r['time_ratio_median']:.3f}x (median), "
          f"{r['time_ratio_min']:.3f}x (min){extra}; float64 max rel diff {worst:.1e}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tasks", default="train,infer")
    parser.add_argument("--size", default="bench", choices=["bench", "tiny"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak measurement")
    parser.add_argument("--out", default=None)
    parser.add_argument("--peak-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        print(peak_child(*args.peak_child))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available: --device cuda skipped, nothing measured or written")
        return 0
    methods = [m for m in args.methods.split(",") if m]
    tasks = [t for t in args.tasks.split(",") if t]
    if any(m not in METHODS for m in methods):
        parser.error(f"--methods takes {', '.join(METHODS)}; got {args.methods!r}")
    if any(t not in TASKS for t in tasks):
        parser.error(f"--tasks takes train and/or infer, got {args.tasks!r}")
    suffix = "" if args.size == "bench" else f"_{args.size}"
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"mask2former_{args.device}{suffix}.json"
    )  # fmt: skip
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("methods", {})
    results["what"] = (
        "VCT, COMBO, AVSegFormer S4: project (exact savings) vs published (every frame "
        "decoded, per-level grid_sample deformable attention)"
    )
    results["device"] = args.device
    load_before = os.getloadavg()
    for method in methods:
        cfg, clips = config(method, args.size)
        entry = {"backbone": cfg.model.backbone, "arch": repr(cfg.model.arch),
                 "image_size": cfg.data.image_size, "clips": clips, "frames": FRAMES_PER_CLIP,
                 "repeats": args.repeats, "load_average_before": os.getloadavg()}  # fmt: skip
        for task in tasks:
            entry[task] = measure(method, task, args.size, args.device, args.repeats,
                                  not args.no_memory)  # fmt: skip
            report(method, task, entry[task])
        entry["load_average_after"] = os.getloadavg()
        results["methods"][method] = entry
    results["env"] = environment(args.device, load_before)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
