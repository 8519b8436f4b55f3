"""Training: the published AVSBench recipe (spec/TRAINING.md) as a plain loop of functions.

    for epoch in range(start, max_epoches):
        train_one_epoch(...)                     -> {"loss": ..., "seg_loss": ..., ...}
        evaluate(...)   (every epoch; AVSS from start_eval_epoch every eval_interval)
        save <session>_best.pth on the best OFFICIAL validation mIoU, and last.pth

Adam (lr 1e-4, no weight decay applied: `--wt_dec` is accepted and unused, as published),
seed 123, VGGish frozen (eval mode, no_grad; `embeddings.AudioEmbedder`), losses from
`avsbench.losses.compute_loss`. Runs are laid out as published
(`<log_dir>/<session>_<YYYYmmdd-HHMMSS>/{checkpoints,log}`, see `runs.py`); checkpoints are
written atomically and resume is exact (model, optimizer, scaler, RNG states, sampler epoch).
Multi-process runs (torchrun) follow `distributed.py`: `train_batch_size` is the global batch.
Ctrl-C saves `checkpoints/interrupted.pth`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from avsbench import config as C
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import options as O
from avsbench.engine import runs
from avsbench.engine.distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    per_process_batch_size,
)
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.engine.evaluate import (
    build_eval_loader,
    evaluate,
    flat_targets,
    forward_batch,
    to_channels_last,
    unwrap,
)

logger = logging.getLogger(runs.LOGGER_NAME)


# ---------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------
def build_train_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, *, seed: int, num_workers: int
) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled training batches of `batch_size` clips PER PROCESS.

    The same sampler serves one and many processes: a permutation seeded with
    seed + epoch (`set_epoch`); process r takes positions r, r + N, ... of it, so the
    per-process batches of step j together are batch j of a one-process run with the
    global batch size. `drop_last` only drops the n mod N samples that would otherwise be
    duplicated (nothing for one process); the last, smaller batch is kept as published."""
    sampler = DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=False,
        persistent_workers=num_workers > 0,
    )
    return loader, sampler


def build_optimizer(model: nn.Module, cfg: C.Config) -> torch.optim.Optimizer:
    """Adam over the trainable parameters; no weight decay (the official `--wt_dec` is unused)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.train.lr)


def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, active for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def load_init_weights(model: nn.Module, path: str, flag: str) -> str:
    """Initialise `model` from a project checkpoint or an official flat state dict."""
    from avsbench.models.checkpoints import load_official_state_dict, looks_official

    obj = ckpt_io.load_file(path, f"{flag} file")
    try:
        if ckpt_io.is_project_checkpoint(obj):
            model.load_state_dict(obj["model"], strict=True)
            return "project checkpoint"
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if isinstance(state, dict) and looks_official(state):
            load_official_state_dict(model, state)
            return "official checkpoint"
    except (RuntimeError, ValueError) as err:
        raise O.SetupError(f"{flag} {path} does not fit the model being trained:\n{err}") from err
    raise O.SetupError(f"{flag} {path}: neither an avsbench checkpoint nor an official state dict")


def prepare_model(
    model: nn.Module, cfg: C.Config, info: DistInfo, sync_bn: bool | None
) -> nn.Module:
    """Move to the device, memory format, SyncBatchNorm and DDP wrapping as configured."""
    device = info.device
    if info.distributed and (sync_bn or (sync_bn is None and device.type == "cuda")):
        if device.type != "cuda":
            raise O.SetupError("--sync_bn needs CUDA devices (not supported by the CPU backend)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cfg.train.channels_last:
        model = to_channels_last(model)
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. align_channel without audio-visual TPAVI
        )
    return model


def distributed_loss_config(cfg: C.Config, world_size: int) -> C.LossConfig:
    """The loss flags a process uses so that DDP's gradient AVERAGE equals the one-process
    gradient of the global batch.

    The published MS3 KL term is SUMMED over the frames of the batch (not averaged): each
    process sums over its share and DDP divides by N, so lambda_1 is multiplied by N. Every
    other term is a (gt_valid-weighted) mean, handled by `ddp_loss_weight`."""
    loss = cfg.train.loss
    summed = (
        cfg.model.setting == "ms3" and loss.masked_av_flag and loss.kl_flag
        and not loss.euclidean_flag
    )  # fmt: skip
    if world_size > 1 and summed:
        return dataclasses.replace(loss, lambda_1=loss.lambda_1 * world_size)
    return loss


def ddp_loss_weight(gt_valid: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """N * w_local / w_global with w = sum(gt_valid): the factor that turns a per-process
    gt_valid-weighted mean into this process's share of the global weighted mean, so that
    DDP's average of the gradients is the gradient of the global batch (AVSS and S4
    weight frames by gt_valid; clips differ in annotated frames)."""
    local = gt_valid.detach().sum().to(torch.float64)
    total = local.clone()
    reduce_device = info.device if torch.distributed.get_backend() == "nccl" else "cpu"
    total = total.to(reduce_device)
    torch.distributed.all_reduce(total)
    return (info.world_size * local / total.to(local.device).clamp(min=1e-12)).float()


def check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    """Stop with a clear error when the loss is NaN or infinite."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise FloatingPointError(
            f"the loss is not finite ({float(loss):.4g}) at epoch {epoch + 1}, step {step + 1}. "
            "Try a lower --lr, --amp off (or bf16 instead of fp16), and check the data"
        )


def should_validate(epoch: int, cfg: C.Config) -> bool:
    """Epoch (0-based) with validation: from start_eval_epoch, every eval_interval."""
    start, every = cfg.train.start_eval_epoch, max(1, cfg.train.eval_interval)
    return epoch >= start and (epoch - start) % every == 0


def steps_in_epoch(loader: DataLoader, cfg: C.Config) -> int:
    cap = cfg.train.max_steps_per_epoch
    return len(loader) if cap is None else min(len(loader), cap)


# ---------------------------------------------------------------------------------------
# One epoch
# ---------------------------------------------------------------------------------------
def train_one_epoch(
    model: nn.Module,
    embedder: AudioEmbedder,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: C.Config,
    info: DistInfo,
    epoch: int,
    *,
    writer: Any = None,
    global_step: int = 0,
) -> dict[str, float]:
    """One pass over `loader` (capped at max_steps_per_epoch). Returns mean losses (over
    steps and processes), the number of steps and clips, seconds and clips per second."""
    from avsbench.losses import compute_loss

    setting, device = cfg.model.setting, info.device
    loss_cfg = distributed_loss_config(cfg, info.world_size)
    model.train()
    num_steps = steps_in_epoch(loader, cfg)
    sums: dict[str, float] = defaultdict(float)
    clips = 0
    start = time.perf_counter()
    bar = tqdm(
        total=num_steps,
        desc=f"epoch {epoch + 1}/{cfg.train.max_epoches}",
        leave=False,
        disable=not info.is_main,
        dynamic_ncols=True,
    )
    step = 0
    for step, batch in enumerate(loader):
        if step >= num_steps:
            break
        output = forward_batch(
            model, embedder, batch, device, amp=cfg.train.amp,
            channels_last=cfg.train.channels_last, cache_namespace=f"{setting}/train",
        )  # fmt: skip
        masks, gt_valid = flat_targets(batch, device)  # [B*T, S, S], [B*T]
        try:
            loss, parts = compute_loss(setting, output, masks, gt_valid, loss_cfg)
        except FloatingPointError as err:
            raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {err}") from err
        check_finite(loss, epoch, step)
        if info.distributed:
            loss = loss * ddp_loss_weight(gt_valid, info)

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        value = float(parts.get("total_loss", loss.detach()))
        sums["loss"] += value
        for name, part in parts.items():
            if name != "total_loss":
                sums[name] += float(part)
        clips += batch["frames"].shape[0] * info.world_size
        if writer is not None:
            writer.add_scalar("train/loss_step", value, global_step + step)
        bar.set_postfix(loss=f"{value:.4f}")
        bar.update(1)
    bar.close()
    done = min(step + 1, num_steps) if num_steps else 0
    seconds = time.perf_counter() - start
    stats = {name: all_reduce_mean(total / max(done, 1), info) for name, total in sums.items()}
    stats.update(
        steps=done, clips=clips, seconds=seconds, clips_per_second=clips / max(seconds, 1e-9)
    )
    return stats


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
class Trainer:
    """Everything one training run holds; `fit()` is the loop."""

    def __init__(
        self,
        cfg: C.Config,
        info: DistInfo,
        model: nn.Module,
        embedder: AudioEmbedder,
        train_loader: DataLoader,
        sampler: DistributedSampler,
        val_loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        run_dir: runs.RunDir | None,
        *,
        start_epoch: int = 0,
        best_miou: float = -1.0,
        history: list[dict[str, Any]] | None = None,
        writer: Any = None,
    ) -> None:
        self.cfg, self.info = cfg, info
        self.model, self.embedder = model, embedder
        self.train_loader, self.sampler, self.val_loader = train_loader, sampler, val_loader
        self.optimizer, self.scaler = optimizer, scaler
        self.run_dir = run_dir
        self.start_epoch, self.best_miou = start_epoch, best_miou
        self.history = list(history or [])
        self.writer = writer
        self.session = cfg.train.session_name

    # checkpoints ---------------------------------------------------------------------
    def checkpoint(self, epoch: int, *, full: bool = True, **extra: Any) -> dict[str, Any]:
        return ckpt_io.make_checkpoint(
            unwrap(self.model).state_dict(),
            C.to_dict(self.cfg),
            epoch=epoch,
            best_miou=self.best_miou,
            history=self.history,
            optimizer=self.optimizer if full else None,
            scaler=self.scaler if full else None,
            with_rng=full,
            extra=extra or None,
        )

    def save(self, name: str, epoch: int, *, full: bool = True, **extra: Any) -> Path | None:
        if not self.info.is_main or self.run_dir is None:
            return None
        path = self.run_dir.checkpoints / name
        return ckpt_io.atomic_save(self.checkpoint(epoch, full=full, **extra), path)

    # loop ----------------------------------------------------------------------------
    def validate(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        return evaluate(
            self.model, self.embedder, self.val_loader, cfg.model.setting, self.info.device,
            amp=cfg.train.amp, channels_last=cfg.train.channels_last, info=self.info,
            cache_namespace=f"{cfg.model.setting}/val", num_classes=cfg.model.num_classes,
            desc=f"val {epoch + 1}",
        )  # fmt: skip

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train, maybe validate, keep the best and the last checkpoint. Returns the record."""
        self.sampler.set_epoch(epoch)
        global_step = epoch * steps_in_epoch(self.train_loader, self.cfg)
        train_stats = train_one_epoch(
            self.model, self.embedder, self.train_loader, self.optimizer, self.scaler,
            self.cfg, self.info, epoch, writer=self.writer, global_step=global_step,
        )  # fmt: skip
        record: dict[str, Any] = {"epoch": epoch, "train": train_stats}
        message = (
            f"epoch {epoch + 1}/{self.cfg.train.max_epoches}: "
            f"loss {train_stats.get('loss', float('nan')):.4f} "
            f"({train_stats['steps']} steps, {train_stats['clips_per_second']:.1f} clips/s)"
        )
        improved = False
        if should_validate(epoch, self.cfg):
            val = self.validate(epoch)
            record["val"] = {k: v for k, v in val.items() if isinstance(v, (int, float))}
            improved = val["miou"] > self.best_miou
            if improved:
                self.best_miou = val["miou"]
            message += f" | val mIoU {val['miou']:.4f} F {val['fscore']:.4f}"
            message += f" (best {self.best_miou:.4f}{', new best' if improved else ''})"
        self.history.append(record)
        if improved:
            self.save(f"{self.session}_best.pth", epoch, full=False)
        self.save("last.pth", epoch)
        logger.info(message)
        self.log_scalars(record)
        return record

    def log_scalars(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = record["epoch"] + 1
        for key, value in record["train"].items():
            self.writer.add_scalar(f"train/{key}", value, step)
        for key, value in record.get("val", {}).items():
            self.writer.add_scalar(f"val/{key}", value, step)
        self.writer.add_scalar("val/best_miou", self.best_miou, step)
        self.writer.flush()

    def fit(self) -> dict[str, Any]:
        """The loop. Ctrl-C saves `interrupted.pth` and re-raises KeyboardInterrupt."""
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.cfg.train.max_epoches):
                self.run_epoch(epoch)
        except KeyboardInterrupt:
            path = self.save("interrupted.pth", epoch - 1, interrupted_in_epoch=epoch)
            if path is not None:
                logger.warning(
                    "interrupted in epoch %d: saved %s (weights of the interrupted epoch; "
                    "resuming repeats that epoch). Resume with:\n  bash train.sh --resume %s",
                    epoch + 1,
                    path,
                    path,
                )
            raise
        if not any("val" in r for r in self.history):
            logger.warning(
                "no epoch was validated (start_eval_epoch %d >= max_epoches %d): no best "
                "checkpoint was written",
                self.cfg.train.start_eval_epoch,
                self.cfg.train.max_epoches,
            )
        return {"best_miou": self.best_miou, "history": self.history}


# ---------------------------------------------------------------------------------------
# train.py
# ---------------------------------------------------------------------------------------
def resolve_config(
    setting: str, args: argparse.Namespace, user: O.UserConfig
) -> tuple[C.Config, dict[str, Any] | None, Path | None]:
    """The run's config: config.py + flags, or, with --resume, the checkpoint's config +
    the flags given. Returns (config, resume checkpoint or None, its path)."""
    base = user.get_config(args.synthetic)
    if args.resume is None:
        cfg = O.apply(base, O.model_overrides(args, user, base))
        return O.apply(cfg, O.train_overrides(args, setting, cfg)), None, None

    if args.weights or getattr(args, "load_s4_params", None):
        raise O.SetupError("--resume continues a run; it cannot be combined with --weights / "
                           "--load_s4_params")  # fmt: skip
    if args.resume == "auto":
        log_dir = args.log_dir or base.train.log_dir
        session = args.session_name or base.train.session_name
        path = runs.find_resume_checkpoint(log_dir, session)
        if path is None:
            raise O.SetupError(
                f"--resume auto: no last.pth / interrupted.pth of session {session!r} under "
                f"{Path(log_dir).resolve()}; pass --resume PATH or start a new run"
            )
    else:
        path = Path(args.resume)
    try:
        ckpt = ckpt_io.load_project_checkpoint(path)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise O.SetupError(f"--resume: {err}") from err
    if "optimizer" not in ckpt or "rng" not in ckpt:
        raise O.SetupError(
            f"--resume {path}: this checkpoint has no optimizer/RNG state (a *_best.pth?); "
            "resume from checkpoints/last.pth, or use --weights to start a new run from it"
        )
    stored = C.from_dict(ckpt["config"])
    if stored.model.setting != setting:
        raise O.SetupError(f"--resume {path}: a {stored.model.setting.upper()} run, not {setting}")
    cfg = O.apply(stored, O.model_overrides(args, user, stored))
    cfg = O.apply(cfg, O.train_overrides(args, setting, cfg))
    arch = {k: v for k, v in O.config_diff(stored, cfg).items() if k.startswith("model.")}
    arch.pop("model.tpavi_dense", None)  # same function, another implementation
    if arch:
        raise O.SetupError(f"--resume cannot change the model: {arch}")
    return cfg, ckpt, path


def _log_setup(cfg: C.Config, info: DistInfo, sizes: dict[str, int], per_process: int) -> None:
    m, t = cfg.model, cfg.train
    logger.info(
        "AVSBench %s | backbone %s | TPAVI stages %s (va %s, vv %s) | image %d | device %s x %d",
        m.setting.upper(), m.backbone, list(m.tpavi_stages), m.tpavi_va, m.tpavi_vv,
        cfg.data.image_size, info.device, info.world_size,
    )  # fmt: skip
    logger.info(
        "train %d clips, val %d clips | batch %d (global; %d per process) | %d epochs | "
        "Adam lr %g (wt_dec %g not applied, as published) | amp %s",
        sizes["train"], sizes["val"], t.train_batch_size, per_process, t.max_epoches, t.lr,
        t.wt_dec, t.amp,
    )  # fmt: skip


def run_training(
    setting: str, args: argparse.Namespace, user: O.UserConfig, argv: list[str]
) -> dict[str, Any]:
    """train.py: everything from flags to the finished run. Returns {best_miou, history,
    run_dir}."""
    from avsbench.data.datasets import build_dataset
    from avsbench.data.layouts import AVSDataError
    from avsbench.models.avs import build_model_from_config, build_vggish

    info = init_distributed(args.device)
    runs.setup_logging(None, is_main=info.is_main)
    cfg, resume, resume_path = resolve_config(setting, args, user)
    O.check_config(cfg)
    init_path, init_flag = args.weights, "--weights"
    s4_path = getattr(args, "trained_s4_model_path", None)
    if getattr(args, "load_s4_params", None) or s4_path:
        if not s4_path:
            raise O.SetupError("--load_s4_params needs --trained_s4_model_path PATH")
        if args.weights:
            raise O.SetupError("--weights and --load_s4_params both initialise the model: give one")
        init_path, init_flag = s4_path, "--trained_s4_model_path"
    if resume is not None or init_path:  # every weight comes from the checkpoint
        cfg = O.apply(cfg, {"model.backbone_weights": None})
    O.check_files(cfg, user)
    try:
        per_process = per_process_batch_size(
            cfg.train.train_batch_size, info.world_size, "--train_batch_size"
        )
    except ValueError as err:
        raise O.SetupError(str(err)) from err

    ckpt_io.seed_everything(cfg.train.seed)
    try:
        kw = {"image_size": cfg.data.image_size, "frames_per_clip": cfg.data.frames_per_clip,
              "source": cfg.data.source}  # fmt: skip
        train_set = build_dataset(setting, cfg.data.root, "train", **kw)
        val_set = build_dataset(setting, cfg.data.root, "val", **kw)
    except AVSDataError as err:
        raise O.explain_data_error(err, cfg, user) from err
    train_loader, sampler = build_train_loader(
        train_set, per_process, info, seed=cfg.train.seed, num_workers=cfg.data.num_workers
    )
    val_loader = build_eval_loader(val_set, cfg.train.val_batch_size, info, cfg.data.num_workers)

    model = build_model_from_config(cfg.model)
    if init_path:
        kind = load_init_weights(model, init_path, init_flag)
    model = prepare_model(model, cfg, info, args.sync_bn)
    embedder = AudioEmbedder(build_vggish(cfg.model), info.device, cfg.data.embedding_cache)
    optimizer = build_optimizer(model, cfg)
    scaler = make_scaler(info.device, cfg.train.amp)

    start_epoch, best_miou, history = 0, -1.0, []
    if resume is not None:
        unwrap(model).load_state_dict(resume["model"], strict=True)
        optimizer.load_state_dict(resume["optimizer"])
        if "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        start_epoch = int(resume["epoch"]) + 1
        best_miou, history = float(resume["best_miou"]), list(resume["history"])

    run_dir = None
    if info.is_main:
        reuse = resume_path is not None and resume_path.parent.name == "checkpoints"
        if reuse and (resume_path.parent.parent / "config.json").is_file():
            run_dir = runs.RunDir(resume_path.parent.parent)
        else:
            run_dir = runs.create_run_dir(cfg.train.log_dir, cfg.train.session_name)
    run_dir = broadcast_object(run_dir, info)
    assert isinstance(run_dir, runs.RunDir)
    writer = None
    if info.is_main:
        runs.setup_logging(run_dir.log / "train.log", is_main=True)
        runs.write_json(
            {**C.to_dict(cfg), "world_size": info.world_size, "per_process_batch": per_process},
            run_dir.config_json,
        )
        command = "python train.py " + shlex.join(argv)
        with open(run_dir.root / "command.txt", "a") as f:
            f.write(command + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir.log))
    else:
        runs.setup_logging(None, is_main=False)
    _log_setup(cfg, info, {"train": len(train_set), "val": len(val_set)}, per_process)
    logger.info("run folder: %s", run_dir.root.resolve())
    if init_path:
        logger.info("initialised from %s (%s)", init_path, kind)
    if resume is not None:
        logger.info(
            "resuming %s at epoch %d (best mIoU %.4f)", resume_path, start_epoch + 1, best_miou
        )
        ckpt_io.set_rng_state(resume["rng"])  # last: everything above may draw random numbers

    trainer = Trainer(
        cfg, info, model, embedder, train_loader, sampler, val_loader, optimizer, scaler,
        run_dir, start_epoch=start_epoch, best_miou=best_miou, history=history, writer=writer,
    )  # fmt: skip
    try:
        result = trainer.fit()
    finally:
        if writer is not None:
            writer.close()
    best = run_dir.best(cfg.train.session_name)
    logger.info("done: best validation mIoU %.4f -> %s", result["best_miou"], best)
    return {**result, "run_dir": run_dir.root}


def main(setting: str, argv: list[str] | None = None, user_config: ModuleType | None = None) -> int:
    """Entry point of `avs_scripts/<folder>/train.py`. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    user = O.UserConfig(setting, user_config)
    parser = O.build_train_parser(setting, user)
    args = parser.parse_args(argv)
    try:
        run_training(setting, args, user, argv)
        return 0
    except O.SetupError as err:
        if os.environ.get("RANK", "0") == "0":  # one message, not one per process
            print(f"\navsbench: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        logger.error("%s", err)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        runs.close_logging()
        cleanup_distributed()


__all__ = [
    "build_train_loader",
    "build_optimizer",
    "make_scaler",
    "train_one_epoch",
    "should_validate",
    "Trainer",
    "run_training",
    "main",
]
