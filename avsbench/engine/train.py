"""Training: the published AVSBench recipe (docs/ARCHITECTURE.md) as a plain loop of
functions; the command that sets it up is `avsbench.commands.train`.

    for epoch in range(start, max_epoches):
        train_one_epoch(...)                     -> {"loss": ..., "seg_loss": ..., ...}
        evaluate(...)   (every epoch; AVSS from start_eval_epoch every eval_interval)
        save <session>_best.pth on the best OFFICIAL validation mIoU, and last.pth

By iterations (`train.max_iters`) the same loop runs over as many epochs (loader passes)
as the iterations need, the last one cut short; validation comes every
`eval_interval_iters` iterations and at the end, and each validation inside an epoch also
writes last.pth with its position in the epoch (as interrupted.pth), so that any last.pth
resumes exactly. Optimizer, lr schedule (stepped per iteration), parameter groups and
gradient clipping are `optim.py`; what a method's backbone is comes from its `MethodHooks`.

The recipe (optimizer, lr, schedule, epochs) is the method's preset (TPAVI: Adam at a
constant 1e-4, no weight decay applied: `--wt_dec` is accepted and unused, as published);
seed 123, VGGish frozen (eval mode, no_grad; `embeddings.AudioEmbedder`), the forward step
`step.forward_batch`, losses from the method's spec (`MethodSpec.loss`, which also stops on
a non-finite loss). Runs are laid out as published
(`<log_dir>/<session>_<YYYYmmdd-HHMMSS>/{checkpoints,log}`, see `runs.py`); checkpoints are
written atomically and resume is exact (model, optimizer, lr schedule,
scaler, RNG states, sampler epoch). Multi-process runs (torchrun) follow `distributed.py`:
`train_batch_size` is the global batch. Ctrl-C stops at the next step boundary and saves
`checkpoints/interrupted.pth` with the position inside the epoch, from which `--resume`
continues exactly (`resume.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from avsbench import config as C
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import runs
from avsbench.engine.distributed import DistInfo, all_reduce_mean
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.engine.evaluate import evaluate
from avsbench.engine.optim import (
    DEFAULT_HOOKS,
    LRSchedule,
    MethodHooks,
    build_optimizer,
    describe,
    make_scaler,
    optimizer_step,
    set_backbone_trainable,
)
from avsbench.engine.resume import (
    DeferredInterrupt,
    Progress,
    ResumableSampler,
    RunPlan,
    build_train_loader,
    should_validate,
    start_epoch_iterator,
    steps_in_epoch,
)
from avsbench.engine.step import flat_targets, forward_batch, to_channels_last
from avsbench.errors import SetupError
from avsbench.models import registry
from avsbench.models.contract import unwrap

logger = logging.getLogger(runs.LOGGER_NAME)


# ---------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------
def prepare_model(
    model: nn.Module, cfg: C.Config, info: DistInfo, sync_bn: bool | None
) -> nn.Module:
    """Move to the device, memory format, SyncBatchNorm and DDP wrapping as configured."""
    device = info.device
    if info.distributed and (sync_bn or (sync_bn is None and device.type == "cuda")):
        if device.type != "cuda":
            raise SetupError("--sync_bn needs CUDA devices (not supported by the CPU backend)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cfg.runtime.channels_last:
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
    progress: Progress | None = None,
    resume: Progress | None = None,
    rng_at_stop: dict[str, Any] | None = None,
    at_boundary: Callable[[int], None] | None = None,
    scheduler: LRSchedule | None = None,
    num_steps: int | None = None,
) -> dict[str, float]:
    """One pass over `loader` (capped at max_steps_per_epoch, or at `num_steps`). Returns
    mean losses (over steps and processes), the number of steps and clips, seconds and clips
    per second.

    progress: kept up to date after every step (what an interrupted.pth stores); resume
    (with rng_at_stop): continue this epoch after the steps it records (resume.py);
    at_boundary(steps done): called after each step (Ctrl-C is raised there); scheduler:
    stepped after every optimizer step. Gradients are clipped (train.grad_clip_norm) after
    unscaling, before the step."""
    spec = registry.method_spec(cfg.model.method)
    setting, device = cfg.model.setting, info.device
    loss_cfg = distributed_loss_config(cfg, info.world_size)
    model.train()
    num_steps = steps_in_epoch(loader, cfg) if num_steps is None else num_steps
    clip_norm = cfg.train.grad_clip_norm
    progress = progress if progress is not None else Progress(epoch=epoch)
    if isinstance(loader.sampler, ResumableSampler):
        iterator = start_epoch_iterator(
            loader, loader.sampler, progress, resume, loader.batch_size or 1, rng_at_stop
        )
    else:
        iterator = iter(loader)
    sums: dict[str, float] = defaultdict(float, progress.sums)
    clips, first = progress.clips, progress.step
    start = time.perf_counter()
    bar = tqdm(
        total=num_steps,
        initial=first,
        desc=f"epoch {epoch + 1}" + ("" if cfg.train.max_iters else f"/{cfg.train.max_epoches}"),
        leave=False,
        disable=not runs.show_progress(info.is_main),
        dynamic_ncols=True,
    )
    step = first - 1
    for step, batch in enumerate(iterator, start=first):
        if step >= num_steps:
            break
        progress.in_step = True
        masks, gt_valid = flat_targets(batch, device)  # [B*T, S, S], [B*T]
        output = forward_batch(
            model, embedder, batch, device, amp=cfg.runtime.amp,
            channels_last=cfg.runtime.channels_last, cache_namespace=f"{setting}/train",
            target_frames=spec.target_frames(cfg, gt_valid),  # decode what the losses read
        )  # fmt: skip
        try:
            reads = {key: batch[key] for key in spec.loss_batch_keys}  # e.g. VCT: category
            loss, parts = spec.loss(setting, output, masks, gt_valid, loss_cfg, **reads)
        except FloatingPointError as err:
            raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {err}") from err
        if info.distributed:
            loss = loss * ddp_loss_weight(gt_valid, info)

        lr = max(float(g["lr"]) for g in optimizer.param_groups)  # this step's (largest)
        optimizer_step(loss, optimizer, scaler, clip_norm=clip_norm, scheduler=scheduler)

        value = float(parts.get("total_loss", loss.detach()))
        sums["loss"] += value
        for name, part in parts.items():
            if name != "total_loss":
                sums[name] += float(part)
        clips += batch["frames"].shape[0] * info.world_size
        if writer is not None:
            writer.add_scalar("train/loss_step", value, global_step + step)
            writer.add_scalar("train/lr_step", lr, global_step + step)
        bar.set_postfix(loss=f"{value:.4f}")
        bar.update(1)
        progress.step, progress.sums, progress.clips = step + 1, dict(sums), clips
        progress.in_step = False
        if at_boundary is not None:
            at_boundary(step + 1)
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
    """Everything one training run holds; `fit()` is the loop.

    hooks: the method's backbone (freezing); scheduler_state: the resumed checkpoint's
    "scheduler" (None: derived from the position, which is what it holds); resume_command:
    the command printed after Ctrl-C / SIGTERM that continues this run
    (`commands.train.resume_command`)."""

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
        position: dict[str, Any] | None = None,
        rng_at_stop: dict[str, Any] | None = None,
        hooks: MethodHooks = DEFAULT_HOOKS,
        scheduler_state: dict[str, Any] | None = None,
        resume_command: str = "bash train.sh --resume auto",
    ) -> None:
        self.cfg, self.info = cfg, info
        self.model, self.embedder = model, embedder
        self.train_loader, self.sampler, self.val_loader = train_loader, sampler, val_loader
        self.optimizer, self.scaler, self.hooks = optimizer, scaler, hooks
        self.run_dir = run_dir
        self.start_epoch, self.best_miou = start_epoch, best_miou
        self.history = list(history or [])
        self.writer = writer
        self.session = cfg.train.session_name
        self.resume_command = resume_command
        # an interrupted.pth's position inside its epoch, and its RNG states (resume.py)
        self.resume = Progress.from_dict(position) if position else None
        self.rng_at_stop = rng_at_stop
        self.progress = Progress(epoch=start_epoch)
        self.interrupt = DeferredInterrupt()
        self.plan = RunPlan(cfg, steps_in_epoch(train_loader, cfg))  # epochs or iterations
        self.by_iters = self.plan.by_iters
        self.scheduler = LRSchedule(optimizer, cfg, self.plan.total_iters)
        done = start_epoch * self.plan.steps_per_epoch + (self.resume.step if self.resume else 0)
        self.scheduler.resume(done, scheduler_state)

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
            scheduler=self.scheduler if full else None,
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
            amp=cfg.runtime.amp, channels_last=cfg.runtime.channels_last, info=self.info,
            cache_namespace=f"{cfg.model.setting}/val", num_classes=cfg.model.num_classes,
            desc=f"val {epoch + 1}",
        )  # fmt: skip

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train, maybe validate, keep the best and the last checkpoint. Returns the record."""
        self.sampler.set_epoch(epoch)
        if self.cfg.train.freeze_backbone_epochs:
            trainable = set_backbone_trainable(self.model, epoch, self.cfg, self.hooks)
            if epoch == self.start_epoch or epoch == self.cfg.train.freeze_backbone_epochs:
                logger.info(
                    "epoch %d: backbone %s", epoch + 1, "trainable" if trainable else "frozen"
                )
        global_step = epoch * self.plan.steps_per_epoch
        self.progress = Progress(epoch=epoch)
        resume = self.resume if self.resume is not None and self.resume.epoch == epoch else None
        self.resume = None
        train_stats = train_one_epoch(
            self.model, self.embedder, self.train_loader, self.optimizer, self.scaler,
            self.cfg, self.info, epoch, writer=self.writer, global_step=global_step,
            progress=self.progress, resume=resume, rng_at_stop=self.rng_at_stop,
            at_boundary=lambda steps: self.step_boundary(epoch, steps),
            scheduler=self.scheduler, num_steps=self.plan.epoch_steps(epoch),
        )  # fmt: skip
        record = self.checkpoint_point(epoch, train_stats, epoch_done=True)
        self.progress = Progress(epoch=epoch + 1)  # a boundary: last.pth is this state
        self.stop_if_interrupted()
        return record

    def checkpoint_point(
        self, epoch: int, train_stats: dict[str, Any], *, epoch_done: bool
    ) -> dict[str, Any]:
        """At an epoch end, or a validation inside an epoch (iteration mode): maybe validate,
        record, write the best and last.pth (inside an epoch with its position)."""
        record: dict[str, Any] = {"epoch": epoch, "train": train_stats}
        if self.by_iters:
            record["iteration"] = self.scheduler.iteration
            where = f"iteration {record['iteration']}/{self.plan.total_iters} (epoch {epoch + 1})"
        else:
            where = f"epoch {epoch + 1}/{self.cfg.train.max_epoches}"
        message = (
            f"{where}: loss {train_stats.get('loss', float('nan')):.4f} "
            f"({train_stats['steps']} steps"
            + (f", {train_stats['clips_per_second']:.1f} clips/s)" if epoch_done else ")")
        )
        improved = False
        if self.plan.validation_due(epoch, self.scheduler.iteration):
            val = self.validate(epoch)
            record["val"] = {k: v for k, v in val.items() if isinstance(v, (int, float))}
            improved = val["miou"] > self.best_miou
            if improved:
                self.best_miou = val["miou"]
            message += f" | val mIoU {val['miou']:.4f} F {val['fscore']:.4f}"
            message += f" (best {self.best_miou:.4f}{', new best' if improved else ''})"
        self.history.append(record)
        done = epoch if epoch_done else epoch - 1  # the last COMPLETED epoch
        extra = {"iteration": self.scheduler.iteration} if self.by_iters else {}
        if improved:
            self.save(f"{self.session}_best.pth", done, full=False, **extra)
        if not epoch_done:  # resume continues inside the epoch (resume.py)
            extra["position"] = self.progress.to_dict()
        self.save("last.pth", done, **extra)
        logger.info(message)
        self.log_scalars(record)
        return record

    def after_step(self, epoch: int, steps: int) -> None:
        """Called after each training step (`steps` of `epoch` done); a hook for tests."""

    def step_boundary(self, epoch: int, steps: int) -> None:
        self.after_step(epoch, steps)
        due = self.plan.validation_due(epoch, self.scheduler.iteration)
        if self.by_iters and steps < self.plan.epoch_steps(epoch) and due:
            p = self.progress  # running means of the epoch so far
            stats = {k: all_reduce_mean(v / max(p.step, 1), self.info) for k, v in p.sums.items()}
            self.checkpoint_point(epoch, {**stats, "steps": p.step}, epoch_done=False)
        self.stop_if_interrupted()

    def stop_if_interrupted(self) -> None:
        """Raise KeyboardInterrupt here, between steps, if Ctrl-C was pressed (every process
        stops at the same step: the request is shared)."""
        requested = float(self.interrupt.requested)
        if self.info.distributed:
            requested = all_reduce_mean(requested, self.info)
        if requested > 0:
            raise KeyboardInterrupt

    def log_scalars(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = record["iteration"] if self.by_iters else record["epoch"] + 1
        for key, value in record["train"].items():
            self.writer.add_scalar(f"train/{key}", value, step)
        for key, value in record.get("val", {}).items():
            self.writer.add_scalar(f"val/{key}", value, step)
        self.writer.add_scalar("val/best_miou", self.best_miou, step)
        self.writer.flush()

    def fit(self) -> dict[str, Any]:
        """The loop. Ctrl-C stops at the next step boundary, saves `interrupted.pth` (with
        the position inside the epoch, resume.py) and re-raises KeyboardInterrupt."""
        logger.info("optimizer: %s", describe(self.cfg))
        if self.by_iters:
            logger.info("training %d iterations: %d epochs of %d steps", self.plan.total_iters,
                        self.plan.num_epochs, self.plan.steps_per_epoch)  # fmt: skip
        try:
            with self.interrupt.installed():
                for epoch in range(self.start_epoch, self.plan.num_epochs):
                    self.run_epoch(epoch)
        except KeyboardInterrupt:
            self.save_interrupted()
            raise
        if not any("val" in r for r in self.history):
            logger.warning(
                "no epoch was validated (start_eval_epoch %d >= max_epoches %d): no best "
                "checkpoint was written",
                self.cfg.train.start_eval_epoch,
                self.cfg.train.max_epoches,
            )
        return {"best_miou": self.best_miou, "history": self.history}

    def save_interrupted(self) -> None:
        """interrupted.pth at the step boundary where the run stopped; nothing after a
        second Ctrl-C inside a step (the weights would be half-way through an update)."""
        p = self.progress
        if p.in_step or self.interrupt.forced:
            logger.warning(
                "interrupted inside a step: no checkpoint written; resume from last.pth (%s)",
                self.resume_command.replace("interrupted.pth", "last.pth"),
            )
            return
        position = {"position": p.to_dict()} if p.step > 0 else {}
        path = self.save("interrupted.pth", p.epoch - 1, interrupted_in_epoch=p.epoch, **position)
        if path is not None:
            logger.warning(
                "interrupted in epoch %d after %d steps: saved %s; resuming continues from "
                "the next step exactly. Resume with:\n  %s",
                p.epoch + 1,
                p.step,
                path,
                self.resume_command,
            )


__all__ = [
    "build_train_loader",
    "build_optimizer",
    "make_scaler",
    "set_backbone_trainable",
    "prepare_model",
    "train_one_epoch",
    "should_validate",
    "Trainer",
]
