"""The Python parts of `benchmarks/gpu_check.sh` (the GPU path, checked in one run).

    steps   one training step and one test step of every setting (S4, MS3, AVSS) and
            method (TPAVI, AVSegFormer) in every precision and layout the engine offers:
            fp32, bf16, fp16 with the gradient scaler, each NCHW and channels_last. Every
            variant starts from the same weights and batch; it must give a finite loss,
            finite gradients, changed weights, a loss within tolerance of fp32's, and
            finite official metrics on its test step. Writes a JSON report; exits 1 if a
            check fails.
    video   a short test video (a moving square over a tone, with sound) for
            `avsbench predict`.

    python benchmarks/gpu_check.py steps --device cuda --out benchmarks/results/gpu_steps_cuda.json
    python benchmarks/gpu_check.py steps --device cpu --tiny --out /tmp/steps.json   # dry run
    python benchmarks/gpu_check.py video clip.mp4

How the engine runs a step is `avsbench.engine.step` and `engine/train.py`
(docs/ARCHITECTURE.md, "A batch from loader to metric"); this script calls those parts.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from avsbench import config as C  # noqa: E402
from avsbench.engine import step  # noqa: E402
from avsbench.engine.train import make_scaler  # noqa: E402
from avsbench.metrics import BinaryMetrics, SemanticMetrics  # noqa: E402
from avsbench.models import registry  # noqa: E402
from avsbench.models.registry import build_model  # noqa: E402

SETTINGS = ("s4", "ms3", "avss")
METHODS = ("tpavi", "avsegformer")
# (amp, channels_last): every precision in NCHW, and each again channels-last.
PRECISIONS = [(amp, cl) for cl in (False, True) for amp in ("off", "bf16", "fp16")]
# Loss agreement with fp32 on the same weights and batch (the first step).
LOSS_TOLERANCE = {"off": 1e-3, "bf16": 0.05, "fp16": 0.02}
TINY_AVSEGFORMER = dict(
    embed_dim=32, num_heads=4, num_queries=8, encoder_layers=1, decoder_layers=1,
    generator_layers=1, ffn_dim=64, generator_ffn_dim=64, mlp_dim=64,
)  # fmt: skip


def training_loss(method, setting, output, masks, gt_valid, loss_cfg):
    """The engine's loss of `method` (its spec's)."""
    return registry.method_spec(method).loss(setting, output, masks, gt_valid, loss_cfg)


def make_model(setting: str, method: str, tiny: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = "resnet18" if tiny else "resnet50"
    if method == "tpavi":
        return build_model(setting, backbone, decoder_channels=16 if tiny else 256)
    kwargs = TINY_AVSEGFORMER if tiny else {}
    return build_model(setting, backbone, method="avsegformer", **kwargs)


def make_batch(setting: str, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """One clip as the loader gives it, flattened: frames [T, 3, S, S], audio_emb [T, 128],
    frame_valid, gt_valid [T], masks [T, S, S] (float 0/1, or int64 class ids for AVSS)."""
    gen = torch.Generator().manual_seed(1)
    info = C.setting_info(setting)
    t = 10 if setting == "avss" else 5
    frames = torch.randn(t, 3, size, size, generator=gen)
    if info.num_classes > 1:
        masks = torch.randint(0, 4, (t, size, size), generator=gen)
    else:
        masks = (torch.rand(t, size, size, generator=gen) > 0.7).float()
    gt_valid = torch.ones(t)
    if setting == "s4":
        gt_valid[1:] = 0  # S4 train: only the first frame is annotated
    frame_valid = torch.ones(t)
    if setting == "avss":
        frame_valid[7:] = 0  # a 7-second clip padded to 10 frames
        gt_valid = frame_valid.clone()
    batch = dict(
        frames=frames, audio_emb=torch.randn(t, 128, generator=gen), masks=masks,
        frame_valid=frame_valid, gt_valid=gt_valid,
    )  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model, state, cfg, method, batch, amp, channels_last, device) -> dict:
    """One optimisation step from `state`, as engine.train.train_one_epoch runs it."""
    model.load_state_dict(state)
    model.train()
    torch.manual_seed(2)  # the same dropout draws in every variant (AVSegFormer's head)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = make_scaler(device, amp)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    setting = cfg.model.setting
    target = registry.method_spec(method).target_frames(cfg, batch["gt_valid"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    output = step.forward(
        model, batch["frames"], batch["audio_emb"], batch["frame_valid"], amp=amp,
        channels_last=channels_last, target_frames=target,
    )  # fmt: skip
    loss, _ = training_loss(method, setting, output, batch["masks"], batch["gt_valid"],
                            cfg.train.loss)  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)
    scaler.update()
    sync(device)
    seconds = time.perf_counter() - start
    finite = all(bool(torch.isfinite(g).all()) for g in grads)
    changed = sum(
        not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()
    )  # fmt: skip
    return {
        "loss": float(loss.detach()),
        "grads_finite": finite,
        "params_with_grad": len(grads),
        "params_changed": int(changed),
        "grad_scale": scale,
        "seconds": seconds,
        "peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }


@torch.no_grad()
def test_step(model, state, setting, batch, amp, channels_last) -> dict:
    """Eval-mode forward, the one threshold and the official metrics of the batch."""
    model.load_state_dict(state)
    model.eval()
    output = step.forward(
        model, batch["frames"], batch["audio_emb"], batch["frame_valid"], amp=amp,
        channels_last=channels_last,
    )  # fmt: skip
    semantic = C.setting_info(setting).num_classes > 1
    masks = step.predicted_masks(output.logits, semantic=semantic)
    metrics = SemanticMetrics(output.logits.shape[1]) if semantic else BinaryMetrics()
    valid = batch["frame_valid"] > 0
    if semantic:
        metrics.update(output.logits[valid], batch["masks"][valid])
    else:
        metrics.update(output.logits[:, 0], batch["masks"])
    values = metrics.compute()
    return {
        "miou": float(values["miou"]),
        "fscore": float(values["fscore"]),
        "mask_pixels": int(masks.astype(bool).sum()),
    }


def check_one(setting: str, method: str, args, device: torch.device) -> list[dict]:
    cfg = registry.preset(setting)
    model = make_model(setting, method, args.tiny).to(device)
    state = copy.deepcopy(model.state_dict())
    batch = make_batch(setting, args.size, device)
    rows, reference = [], None
    for amp, channels_last in PRECISIONS:
        if channels_last:
            step.to_channels_last(model)
        row = {"setting": setting, "method": method, "amp": amp, "channels_last": channels_last}
        try:
            row["train"] = train_step(model, state, cfg, method, batch, amp, channels_last, device)
            row["test"] = test_step(model, state, setting, batch, amp, channels_last)
        except Exception as err:  # report every failing variant, not only the first
            row["error"] = f"{type(err).__name__}: {err}"
        if reference is None and "train" in row:
            reference = row["train"]["loss"]
        row["failures"] = failures(row, reference)
        rows.append(row)
        status = "ok" if not row["failures"] else "FAILED: " + "; ".join(row["failures"])
        extra = ""
        if "train" in row:
            extra = f"loss {row['train']['loss']:.5f} ({row['train']['seconds']:.2f} s)"
        print(f"  {setting:4s} {method:11s} {amp:4s} cl={channels_last!s:5s} {extra}  {status}")
    return rows


def failures(row: dict, reference: float | None) -> list[str]:
    if "error" in row:
        return [row["error"]]
    train, test, out = row["train"], row["test"], []
    if not math.isfinite(train["loss"]):
        out.append(f"loss {train['loss']}")
    if not train["grads_finite"]:
        out.append("non-finite gradients")
    if train["params_changed"] == 0:
        out.append("no parameter changed")
    if reference is not None and math.isfinite(train["loss"]):
        rel = abs(train["loss"] - reference) / max(abs(reference), 1e-12)
        row["loss_rel_diff_vs_fp32"] = rel
        if rel > LOSS_TOLERANCE[row["amp"]]:
            out.append(f"loss {rel:.2e} from fp32's (tolerance {LOSS_TOLERANCE[row['amp']]})")
    if not (math.isfinite(test["miou"]) and math.isfinite(test["fscore"])):
        out.append(f"test metrics {test}")
    return out


def cmd_steps(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    rows = []
    for setting in SETTINGS:
        for method in METHODS:
            rows += check_one(setting, method, args, device)
    failed = [r for r in rows if r["failures"]]
    report = {
        "check": "train and test steps: settings x methods x (fp32, bf16, fp16+scaler) x layout",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "size": args.size,
        "tiny": args.tiny,
        "seconds": round(time.perf_counter() - start, 1),
        "passed": len(rows) - len(failed),
        "failed": len(failed),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['passed']}/{len(rows)} variants passed ({report['seconds']} s): {out}")
    return 1 if failed else 0


def cmd_video(args) -> int:
    """A 224 x 160, 10 fps video with a mono 16 kHz tone: a square moves left to right."""
    import av

    out = Path(args.path)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new path (nothing is overwritten)")
    width, height, fps, rate = 224, 160, 10, 16000
    with av.open(str(out), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(int(args.seconds * fps)):
            img = np.full((height, width, 3), 40, np.uint8)
            x = int((width - 48) * i / max(args.seconds * fps - 1, 1))
            img[56:104, x : x + 48] = (230, 40, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            container.mux(video.encode(frame))
        samples = np.arange(int(args.seconds * rate)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440.0 * samples)).astype(np.float32)
        chunk = 1024
        for k in range(0, len(tone), chunk):
            frame = av.AudioFrame.from_ndarray(
                tone[None, k : k + chunk], format="flt", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = k
            frame.time_base = Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    steps = sub.add_parser("steps", help="train + test steps in every precision and layout")
    steps.add_argument("--device", default="cuda")
    steps.add_argument("--tiny", action="store_true", help="ResNet-18, small widths (dry run)")
    steps.add_argument("--size", type=int, default=None, help="frame size (224; tiny: 64)")
    steps.add_argument("--out", required=True, help="JSON report")
    video = sub.add_parser("video", help="write a short test video with sound")
    video.add_argument("path")
    video.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "video":
        return cmd_video(args)
    if args.size is None:
        args.size = 64 if args.tiny else 224
    return cmd_steps(args)


if __name__ == "__main__":
    raise SystemExit(main())
