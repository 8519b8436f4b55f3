"""Evaluation: the forward pass shared with training, `evaluate` (metrics over a loader), and
the `test.py` entry point (checkpoint lookup, official checkpoints, masks, reports, JSON).

Metrics follow spec/METRICS.md through `avsbench.metrics`: S4/MS3 accumulate one update per
TEST BATCH (the official mIoU and F average batch values, so the batch size is part of the
protocol and is reported); AVSS accumulates frame by frame over the whole split, padding
frames included. In a multi-process run each process evaluates whole batches
(`ShardedBatchSampler`) and the accumulators' states are summed, which gives exactly the
one-process numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avsbench import config as C
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import options as O
from avsbench.engine import runs
from avsbench.engine.distributed import (
    DistInfo,
    ShardedBatchSampler,
    all_reduce_state,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
)
from avsbench.engine.embeddings import AudioEmbedder, clip_keys

logger = logging.getLogger(runs.LOGGER_NAME)

AVSS_SAVE_SIZE = (360, 240)  # (w, h) of the published AVSS predicted masks
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------
# The forward pass (training and evaluation)
# ---------------------------------------------------------------------------------------
def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for `amp` in {off, bf16, fp16} on the device's type."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of off, bf16, fp16; got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Channels-last weights for the 2-D convolutions (the 3-D TPAVI convolutions and the
    linear layers keep their layout; `Module.to(memory_format=...)` would reject them)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model


def as_float32(output: Any) -> Any:
    """AVSOutput with every tensor in float32 (losses and metrics run outside autocast)."""

    def f(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.float()

    return dataclasses.replace(
        output,
        logits=output.logits.float(),
        visual_maps=[f(v) for v in output.visual_maps],
        audio_maps=[f(a) for a in output.audio_maps],
    )


def forward_batch(
    model: nn.Module,
    embedder: AudioEmbedder,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp: str = "off",
    channels_last: bool = False,
    cache_namespace: str = "",
) -> Any:
    """One collated batch through VGGish (frozen) and the model.

    batch: frames [B, T, 3, S, S], audio [B, T, 1, 96, 64], frame_valid [B, T], ids.
    Returns AVSOutput in float32 with logits [B*T, K, S, S].
    """
    frames = batch["frames"].to(device, non_blocking=True)  # [B, T, 3, S, S]
    b, t = frames.shape[:2]
    frames = frames.reshape(b * t, *frames.shape[2:])  # [B*T, 3, S, S]
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    keys = clip_keys(cache_namespace, batch) if embedder.memory is not None else None
    audio_emb = embedder(batch["audio"], keys)  # [B*T, 128]
    frame_valid = batch["frame_valid"].to(device, non_blocking=True).reshape(b * t)  # [B*T]
    with autocast_context(device, amp):
        output = model(frames, audio_emb, frame_valid)
    return as_float32(output)


def flat_targets(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """masks [B, T, S, S] -> [B*T, S, S]; gt_valid [B, T] -> [B*T]."""
    masks = batch["masks"].to(device, non_blocking=True)
    masks = masks.reshape(-1, *masks.shape[2:])  # [B*T, S, S]
    gt_valid = batch["gt_valid"].to(device, non_blocking=True).reshape(-1)  # [B*T]
    return masks, gt_valid


def make_metric(setting: str, num_classes: int = 71) -> Any:
    """The accumulator of `setting`: BinaryMetrics (S4, MS3) or SemanticMetrics (AVSS)."""
    from avsbench.metrics import BinaryMetrics, SemanticMetrics

    if setting == "avss":
        return SemanticMetrics(num_classes=num_classes)
    if setting in ("s4", "ms3"):
        return BinaryMetrics()
    raise ValueError(f"unknown setting {setting!r}; valid: avss, ms3, s4")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    embedder: AudioEmbedder,
    loader: DataLoader,
    setting: str,
    device: torch.device,
    *,
    amp: str = "off",
    channels_last: bool = False,
    info: DistInfo | None = None,
    cache_namespace: str = "",
    num_classes: int = 71,
    on_batch: Callable[[dict[str, Any], torch.Tensor], None] | None = None,
    desc: str = "eval",
) -> dict[str, Any]:
    """Official metrics and variants of `model` over `loader` (one update per batch).

    In a multi-process run, `loader` holds this process's share of whole batches and the
    accumulator states are summed over processes before `compute()`.
    on_batch(batch, logits [B*T, K, S, S]) is called for every batch (masks, reports).
    Returns the dict of `BinaryMetrics.compute()` / `SemanticMetrics.compute()`.
    """
    info = info or DistInfo(device=device)
    model = unwrap(model)
    was_training = model.training
    model.eval()
    metric = make_metric(setting, num_classes)
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not info.is_main):
            output = forward_batch(
                model, embedder, batch, device, amp=amp, channels_last=channels_last,
                cache_namespace=cache_namespace,
            )  # fmt: skip
            masks, _ = flat_targets(batch, device)
            metric.update(output.logits, masks)
            if on_batch is not None:
                on_batch(batch, output.logits)
    finally:
        model.train(was_training)
    metric.load_state_tensors(all_reduce_state(metric.state_tensors(), info))
    return metric.compute()


def build_eval_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, num_workers: int
) -> DataLoader:
    """Whole batches of `batch_size` in dataset order, this process's share."""
    sampler = ShardedBatchSampler(len(dataset), batch_size, info.rank, info.world_size)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        persistent_workers=False,
    )


# ---------------------------------------------------------------------------------------
# Swapped audio: does the model listen?
# ---------------------------------------------------------------------------------------
class SwappedAudio(Dataset):
    """`dataset` with the audio of clip i replaced by that of clip (i + n // 2) mod n.

    Everything else (frames, masks, validity) is clip i's. A model that uses sound loses
    accuracy; one that ignores it keeps the same metrics. Samples gain `audio_id` and
    `audio_category` (the donor's) so that cached embeddings stay correct."""

    def __init__(self, dataset: Dataset) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if n < 2:
            raise ValueError("--swap_audio needs at least 2 clips in the split")
        self.dataset = dataset
        self.n = n

    def donor(self, index: int) -> int:
        return (index + self.n // 2) % self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        other = self.dataset[self.donor(index)]
        sample["audio"] = other["audio"]
        sample["audio_id"] = other["video_id"]
        sample["audio_category"] = other["category"]
        return sample


# ---------------------------------------------------------------------------------------
# Predicted masks and visual report
# ---------------------------------------------------------------------------------------
def predicted_masks(setting: str, logits: torch.Tensor) -> np.ndarray:
    """logits [N, K, H, W] -> binary uint8 [N, H, W] (sigmoid > 0.5) or class ids (argmax)."""
    if setting == "avss":
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
    return (torch.sigmoid(logits[:, 0]) > 0.5).to(torch.uint8).cpu().numpy()


class PredictionWriter:
    """`on_batch` hook writing masks (--save_pred_mask) and report grids (--report).

    S4/MS3 masks: `<mask_dir>/<category>/<video_id>/<video_id>_<i>.png` (i = 1..5, 0/255
    PNG; MS3 has no category level), as the published test scripts. AVSS: palette PNGs
    `<mask_dir>/<uid>/<k>.png` (k = 0-based frame, real frames only) at 360 x 240.
    Overlays mirror the mask tree under `<overlay_dir>`. Report: `<report_dir>/<video_id>.png`
    (frames / truth / prediction / overlay), the first `max_videos` clips of each process.
    """

    def __init__(
        self,
        setting: str,
        *,
        mask_dir: Path | None = None,
        overlay_dir: Path | None = None,
        report_dir: Path | None = None,
        max_videos: int = 16,
    ) -> None:
        self.setting = setting
        self.mask_dir = mask_dir
        self.overlay_dir = overlay_dir
        self.report_dir = report_dir
        self.max_videos = max_videos
        self.reported = 0

    def _mask_path(self, root: Path, category: str, video_id: str, k: int) -> Path:
        if self.setting == "avss":
            return root / video_id / f"{k}.png"
        return root / category / video_id / f"{video_id}_{k + 1}.png"

    def __call__(self, batch: dict[str, Any], logits: torch.Tensor) -> None:
        from avsbench import visualize as V

        semantic = self.setting == "avss"
        b, t = batch["frames"].shape[:2]
        pred = predicted_masks(self.setting, logits).reshape(b, t, *logits.shape[-2:])
        gts = batch["masks"].numpy()  # [B, T, S, S]
        for i in range(b):
            video_id, category = batch["video_id"][i], batch["category"][i]
            valid = batch["frame_valid"][i].numpy() > 0
            n = int(valid.sum())  # real frames come first
            want_report = self.report_dir is not None and self.reported < self.max_videos
            images = None
            if self.overlay_dir is not None or want_report:
                images = V.denormalize(batch["frames"][i, :n])  # [n, S, S, 3]
            for k in range(n):
                if self.mask_dir is not None:
                    path = self._mask_path(self.mask_dir, category, video_id, k)
                    if semantic:
                        V.save_palette_mask(pred[i, k], path, size=AVSS_SAVE_SIZE)
                    else:
                        V.save_binary_mask(pred[i, k], path)
                if self.overlay_dir is not None and images is not None:
                    path = self._mask_path(self.overlay_dir, category, video_id, k)
                    V.save_image(V.overlay(images[k], pred[i, k], semantic=semantic), path)
            if want_report and images is not None:
                title = f"{category}/{video_id}" if category else video_id
                grid = V.clip_grid(images, gts[i, :n], pred[i, :n], semantic=semantic, title=title)
                V.save_image(grid, self.report_dir / f"{video_id}.png")
                self.reported += 1


# ---------------------------------------------------------------------------------------
# Loading the model to test
# ---------------------------------------------------------------------------------------
ARCH_FLAGS = {  # flag -> config field that a project checkpoint fixes
    "visual_backbone": "model.backbone",
    "tpavi_stages": "model.tpavi_stages",
    "tpavi_vv_flag": "model.tpavi_vv",
    "tpavi_va_flag": "model.tpavi_va",
    "tpavi_mode": "model.tpavi_mode",
    "decoder_channels": "model.decoder_channels",
}


def official_architecture(state: dict[str, Any]) -> dict[str, Any]:
    """Config changes read off an official flat state dict: backbone (`resnet.*` ->
    resnet50, `encoder_backbone.*` -> pvt_v2_b5), decoder width (conv1 outputs), TPAVI
    stages (`tpavi_b{s+1}.*`), align_channel bias and the number of classes."""
    keys = [k.removeprefix("module.") for k in state]
    tensors = {k.removeprefix("module."): v for k, v in state.items()}
    changes: dict[str, Any] = {}
    if any(k.startswith("resnet.") for k in keys):
        changes["model.backbone"] = "resnet50"
    elif any(k.startswith("encoder_backbone.") for k in keys):
        changes["model.backbone"] = "pvt_v2_b5"
    if "conv1.conv2d_list.0.weight" in tensors:
        changes["model.decoder_channels"] = int(tensors["conv1.conv2d_list.0.weight"].shape[0])
    stages = sorted({int(k[len("tpavi_b")]) - 1 for k in keys if k.startswith("tpavi_b")})
    changes["model.tpavi_stages"] = tuple(stages)
    if stages:
        changes["model.align_bias"] = any(".align_channel.bias" in k for k in keys)
    if "output_conv.4.weight" in tensors:
        changes["model.num_classes"] = int(tensors["output_conv.4.weight"].shape[0])
    return changes


def _test_config(
    setting: str, obj: Any, args: argparse.Namespace, user: O.UserConfig, weights: Path
) -> tuple[C.Config, str]:
    """The config to rebuild the model: stored (project checkpoint) or preset + flags
    (official state dict). Returns (config, "project" | "official")."""
    from avsbench.models.checkpoints import looks_official

    base = user.get_config(args.synthetic)
    if ckpt_io.is_project_checkpoint(obj):
        stored = C.from_dict(obj["config"])
        if stored.model.setting != setting:
            raise O.SetupError(
                f"{weights} is a {stored.model.setting.upper()} model; test it with "
                f"avs_scripts/{O.SCRIPT_FOLDERS[stored.model.setting]}/test.sh"
            )
        wanted = O.apply(stored, O.model_overrides(args, user, stored))
        changed = {k: v for k, v in O.config_diff(stored, wanted).items() if k.startswith("model.")}
        fixed = set(ARCH_FLAGS.values()) | {"model.backbone_weights"}
        clash = {k: v for k, v in changed.items() if k in fixed}
        if clash:
            lines = [f"{k}: checkpoint {a!r}, flag {b!r}" for k, (a, b) in clash.items()]
            raise O.SetupError(
                f"{weights} was trained with another architecture than the flags ask for:\n  "
                + "\n  ".join(lines)
                + "\nLeave those flags out: the model is rebuilt from the checkpoint's config"
            )
        cfg = wanted
        if args.data_root is None:
            cfg = O.apply(cfg, {"data.root": base.data.root})
        # VGGish is not in the checkpoint: the one it was trained with, if still there,
        # else config.py's (when the stored one had weights)
        vggish = cfg.model.vggish_weights
        if vggish and not Path(vggish).is_file() and base.model.vggish_weights:
            cfg = O.apply(
                cfg,
                {"model.vggish_weights": base.model.vggish_weights,
                 "model.vggish_pca": base.model.vggish_pca},
            )  # fmt: skip
        return O.apply(cfg, {"model.backbone_weights": None}), "project"
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if isinstance(state, dict) and looks_official(state):
        cfg = O.apply(base, official_architecture(state))
        cfg = O.apply(cfg, O.model_overrides(args, user, cfg))  # explicit flags win
        return O.apply(cfg, {"model.backbone_weights": None}), "official"
    raise O.SetupError(
        f"{weights} is neither an avsbench checkpoint nor an official AVSBench state dict "
        "(keys resnet.* / encoder_backbone.*, conv1..4, output_conv.*)"
    )


def load_test_model(
    setting: str, weights: Path, args: argparse.Namespace, user: O.UserConfig
) -> tuple[nn.Module, C.Config, str]:
    """Build the model for `weights` and load them. Returns (model, config, kind)."""
    from avsbench.models.avs import build_model_from_config
    from avsbench.models.checkpoints import load_official_state_dict

    obj = ckpt_io.load_file(weights, "weights")
    cfg, kind = _test_config(setting, obj, args, user, weights)
    O.check_config(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=C.LossConfig()))
    )
    model = build_model_from_config(cfg.model)
    if kind == "project":
        model.load_state_dict(obj["model"], strict=True)
    else:
        state = obj.get("state_dict", obj)
        try:
            report = load_official_state_dict(model, state)
        except ValueError as err:
            raise O.SetupError(
                f"{weights}: {err}\n(the model was built from the preset and the flags: "
                f"--visual_backbone {cfg.model.backbone}, --tpavi_stages "
                f"{' '.join(map(str, cfg.model.tpavi_stages))})"
            ) from err
        logger.info(
            "official checkpoint: %d tensors loaded, %d unused dropped",
            report.loaded,
            len(report.dropped),
        )
    return model, cfg, kind


# ---------------------------------------------------------------------------------------
# Console table
# ---------------------------------------------------------------------------------------
TABLE_ROWS = {
    "miou": "mIoU (official)",
    "fscore": "F-score (official, beta^2 = 0.3)",
    "miou_per_frame": "mIoU, mean over frames",
    "fscore_dataset_curve": "F-score, one curve over the split",
    "iou_dataset": "IoU, sum(I) / sum(U) over the split",
    "miou_official_nobg": "mIoU official 'noBg' (drops class 70)",
    "fscore_official_nobg": "F-score official 'noBg' (drops class 70)",
    "miou_no_background": "mIoU without background (class 0)",
    "fscore_no_background": "F-score without background (class 0)",
    "miou_present_classes": "mIoU over classes present",
    "fscore_present_classes": "F-score over classes present",
}


def format_table(metrics: dict[str, Any], header: str) -> str:
    """A small text table of the scalar metrics."""
    rows = [(label, metrics[k]) for k, label in TABLE_ROWS.items() if k in metrics]
    width = max(len(label) for label, _ in rows)
    lines = [header, "-" * (width + 10)]
    lines += [f"{label:<{width}}  {value:.4f}" for label, value in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# test.py
# ---------------------------------------------------------------------------------------
def _find_weights(args: argparse.Namespace, base: C.Config, user: O.UserConfig) -> Path:
    if args.weights:
        path = Path(args.weights)
        if not path.is_file():
            raise O.SetupError(f"--weights {path}: file not found")
        return path
    session = args.session_name or base.train.session_name
    train_log_dir = args.train_log_dir or base.train.log_dir
    found = runs.find_best_checkpoint(train_log_dir, session)
    if found is None:
        raise O.SetupError(
            f"no trained model to test: no {session}_best.pth under "
            f"{Path(train_log_dir).resolve()}/{session}_*/checkpoints/.\n"
            f"Train first (bash train.sh{' --synthetic' if args.synthetic else ''}"
            f"{' --session_name ' + session if args.session_name else ''}), or pass "
            "--weights PATH (a project checkpoint or an official .pth)"
        )
    return found


def run_test(setting: str, args: argparse.Namespace, user: O.UserConfig) -> dict[str, Any]:
    """test.py: load, evaluate, write metrics.json (and masks / report). Returns the JSON."""
    from avsbench.data.datasets import build_dataset
    from avsbench.data.layouts import AVSDataError
    from avsbench.models.avs import build_vggish

    info = init_distributed(args.device)
    runs.setup_logging(None, is_main=info.is_main)
    base = user.get_config(args.synthetic)
    weights = _find_weights(args, base, user)
    model, cfg, kind = load_test_model(setting, weights, args, user)
    O.check_files(cfg, user, need_backbone=False)
    batch_size = args.test_batch_size or cfg.eval.test_batch_size
    try:
        dataset: Dataset = build_dataset(
            setting, cfg.data.root, args.split,
            image_size=cfg.data.image_size, frames_per_clip=cfg.data.frames_per_clip,
            source=cfg.data.source,
        )  # fmt: skip
    except AVSDataError as err:
        raise O.explain_data_error(err, cfg, user) from err
    if args.swap_audio:
        dataset = SwappedAudio(dataset)

    session = args.session_name or cfg.train.session_name
    log_dir = args.log_dir or user.log_dir("test", "./test_logs")
    run_dir = None
    if info.is_main:
        run_dir = runs.create_run_dir(log_dir, session, subdirs=("log",))
    run_dir = broadcast_object(run_dir, info)
    assert isinstance(run_dir, runs.RunDir)
    runs.setup_logging(run_dir.log / "test.log", is_main=info.is_main)
    logger.info("testing %s (%s checkpoint) on %s/%s", weights, kind, cfg.data.root, args.split)

    device = info.device
    model = model.to(device)
    if cfg.train.channels_last:
        model = to_channels_last(model)
    embedder = AudioEmbedder(build_vggish(cfg.model), device, cfg.data.embedding_cache)
    loader = build_eval_loader(dataset, batch_size, info, cfg.data.num_workers)
    writer = None
    if args.save_pred_mask or args.report:
        writer = PredictionWriter(
            setting,
            mask_dir=run_dir.root / "pred_masks" if args.save_pred_mask else None,
            overlay_dir=run_dir.root / "overlays" if args.save_pred_mask else None,
            report_dir=run_dir.root / "report" if args.report else None,
            max_videos=args.report_max_videos,
        )
    start = time.perf_counter()
    metrics = evaluate(
        model, embedder, loader, setting, device, amp=cfg.train.amp,
        channels_last=cfg.train.channels_last, info=info,
        cache_namespace=f"{setting}/{args.split}", num_classes=cfg.model.num_classes,
        on_batch=writer, desc=args.split,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    result = {
        "setting": setting,
        "split": args.split,
        "weights": str(Path(weights).resolve()),
        "checkpoint_kind": kind,
        "test_batch_size": batch_size,
        "num_clips": len(dataset),
        "world_size": info.world_size,
        "swap_audio": bool(args.swap_audio),
        "amp": cfg.train.amp,
        "seconds": round(seconds, 3),
        "metrics": metrics,
        "config": C.to_dict(cfg),
    }
    if info.is_main:
        out_json = Path(args.out_json) if args.out_json else run_dir.root / "metrics.json"
        runs.write_json(result, out_json)
        if args.report and setting == "avss":
            from avsbench import visualize as V
            from avsbench.data.palette import CLASS_NAMES

            V.per_class_iou_chart(
                metrics["per_class_iou"],
                CLASS_NAMES,
                run_dir.root / "report" / "per_class_iou.png",
                present=[c > 0 for c in metrics["class_frame_count"]],
            )
        header = f"AVSBench {setting.upper()} {args.split}: {len(dataset)} clips, " + (
            "all frames accumulated"
            if setting == "avss"
            else f"test batch size {batch_size} (the official mIoU and F depend on it)"
        )
        if args.swap_audio:
            header += ", AUDIO SWAPPED between clips"
        print(format_table(metrics, header))
        print(f"metrics: {out_json}")
        if writer is not None:
            print(f"pictures: {run_dir.root}")
    return result


def main(setting: str, argv: list[str] | None = None, user_config: ModuleType | None = None) -> int:
    """Entry point of `avs_scripts/<folder>/test.py`. Returns the exit status."""
    user = O.UserConfig(setting, user_config)
    parser = O.build_test_parser(setting)
    args = parser.parse_args(argv)
    try:
        run_test(setting, args, user)
        return 0
    except O.SetupError as err:
        if os.environ.get("RANK", "0") == "0":  # one message, not one per process
            print(f"\navsbench: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        runs.close_logging()
        cleanup_distributed()
