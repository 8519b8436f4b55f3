"""Optimizers, learning-rate schedules, parameter groups and gradient clipping of training
(docs/TRAINING.md, "Optimizer, lr schedule, run length").

    hooks.param_groups(model)      -> {"backbone": [...], "rest": [...]}  (named groups)
    build_optimizer(model, cfg, hooks)   adam | adamw | sgd, the "backbone" group at
                                         lr * backbone_lr_mult
    LRSchedule(optimizer, cfg, total)    lr of group g before iteration i:
                                         initial_lr_g * warmup(i) * main(i)
    clip_gradients(optimizer, norm)      detectron2's "full_model" clip: one L2 norm over
                                         every parameter of the optimizer

A method says which parameters are its backbone and how to freeze it through
`MethodHooks`; `DEFAULT_HOOKS` is the AVSBench / AVSegFormer models' `.visual`. The
schedule is a pure function of the iteration, stepped after every optimizer step; its state
(the iteration and the initial lrs) goes into last.pth / interrupted.pth, so resuming sets
exactly the lr an uninterrupted run has. The defaults (Adam or AdamW, torch's weight decay,
constant lr, no clipping, multiplier 1) build the one parameter group of the published
runs, in the model's parameter order, so their updates are bit-identical to before.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avsbench import config as C
from avsbench.errors import SetupError
from avsbench.models.contract import unwrap
from avsbench.models.spec import MethodSpec, set_visual_trainable, visual_backbone_groups

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("constant", "step", "poly")
BACKBONE_GROUP = "backbone"  # the group name that gets train.backbone_lr_mult (spec.py's)


# ---------------------------------------------------------------------------------------
# Method hooks
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodHooks:
    """What the training engine asks a method about its model.

    param_groups(model) -> {group name: parameters}: a partition of the model's
        parameters; the group named "backbone" trains at lr * train.backbone_lr_mult.
    set_backbone_trainable(model, trainable): freeze (False) or unfreeze (True) the
        backbone (train.freeze_backbone_epochs).
    no_weight_decay(model) -> the parameters trained with weight decay 0 (None: none).
    `model` may be DDP-wrapped: use `avsbench.models.contract.unwrap`."""

    param_groups: Callable[[nn.Module], dict[str, list[nn.Parameter]]] = visual_backbone_groups
    set_backbone_trainable: Callable[[nn.Module, bool], None] = set_visual_trainable
    no_weight_decay: Callable[[nn.Module], list[nn.Parameter]] | None = None

    @classmethod
    def of(cls, spec: MethodSpec) -> MethodHooks:
        """The hooks of a registered method."""
        return cls(spec.param_groups, spec.set_backbone_trainable, spec.no_weight_decay)


DEFAULT_HOOKS = MethodHooks()  # the backbone is `unwrap(model).visual`


# ---------------------------------------------------------------------------------------
# Flags of train.py (options.build_train_parser / train_overrides)
# ---------------------------------------------------------------------------------------
def _number(kind: type, low: float, high: float = math.inf, *, low_open: bool = False) -> Any:
    """An argparse type: a finite `kind` (int or float) in [low, high] ((low, high] with
    low_open), else argparse's one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {expected}: {text!r}") from None
        below = value <= low if low_open else value < low
        if below or not value <= high or not math.isfinite(value):  # also refuses nan, inf
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if high < math.inf else ')'}"
            raise argparse.ArgumentTypeError(f"must be in {bounds}, got {text}")
        return value

    return parse


_POSITIVE, _FRACTION = _number(float, 0, low_open=True), _number(float, 0, 1, low_open=True)
positive_number, non_negative_number = _POSITIVE, _number(float, 0)  # --lr, --wt_dec
_FLAGS: tuple[tuple[str, Any, str], ...] = (  # flag, type, help ({} is the default)
    ("--max_iters", _number(int, 1), "train this many iterations (steps) instead of "
     "--max_epoches epochs; the lr schedule runs over them"),
    ("--eval_interval_iters", _number(int, 1), "with --max_iters: validate every N "
     "iterations and at the end (default: at the end only)"),
    ("--optimizer", None, "adam | adamw | sgd (default: {})"),
    ("--momentum", _number(float, 0, 1), "sgd's momentum (default: {})"),
    ("--weight_decay", _number(float, 0), "applied weight decay (default: the optimizer's "
     "torch default: adam and sgd 0, adamw 0.01)"),
    ("--schedule", None, "lr schedule, stepped per iteration: constant | step | poly "
     "(default: {})"),
    ("--poly_power", _POSITIVE, "poly: lr x (1 - it / total) ** power (default: {})"),
    ("--lr_steps", _number(int, 1), "step: iterations at which the lr is multiplied by "
     "--lr_gamma"),
    ("--lr_gamma", _FRACTION, "step: the factor (default: {})"),
    ("--warmup_iters", _number(int, 0), "linear warm-up over the first N iterations "
     "(default: {})"),
    ("--warmup_factor", _FRACTION, "the warm-up starts at lr x this (default: {})"),
    ("--backbone_lr_mult", _number(float, 0), "the backbone's lr is lr x this (default: {})"),
    ("--grad_clip_norm", _POSITIVE, "clip the L2 norm of all gradients together to this "
     "(default: no clipping)"),
)  # fmt: skip
OPTIM_FLAGS = tuple(flag[2:] for flag, _, _ in _FLAGS)  # = their train.* config fields
_CHOICES = {"--optimizer": tuple(OPTIMIZERS), "--schedule": SCHEDULES}


def add_optim_arguments(parser: argparse.ArgumentParser, preset: C.TrainConfig) -> None:
    """The optimizer / schedule / run-length flags; absent flags keep the config."""
    group = parser.add_argument_group("optimizer and lr schedule (project flags, optim.py)")
    for flag, kind, text in _FLAGS:
        extra: dict[str, Any] = {"choices": _CHOICES[flag]} if kind is None else {"type": kind}
        if flag == "--lr_steps":
            extra.update(nargs="+", metavar="IT")
        group.add_argument(flag, help=text.format(getattr(preset, flag[2:])), **extra)


# ---------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------
def check_optim_config(t: C.TrainConfig) -> None:
    """SetupError for an optimizer / schedule setting that cannot work (config.py values
    reach here without argparse's checks)."""
    problems = []
    if t.optimizer not in OPTIMIZERS:
        problems.append(f"unknown train.optimizer {t.optimizer!r}; valid: {sorted(OPTIMIZERS)}")
    if t.schedule not in SCHEDULES:
        problems.append(f"unknown train.schedule {t.schedule!r}; valid: {list(SCHEDULES)}")
    for name in ("lr", "backbone_lr_mult", "momentum", "warmup_iters"):
        if getattr(t, name) < 0:
            problems.append(f"train.{name} must be >= 0, got {getattr(t, name)}")
    if t.weight_decay is not None and t.weight_decay < 0:
        problems.append(f"train.weight_decay must be >= 0 or None, got {t.weight_decay}")
    if t.grad_clip_norm is not None and t.grad_clip_norm <= 0:
        problems.append(f"train.grad_clip_norm must be > 0 or None, got {t.grad_clip_norm}")
    if not 0 < t.warmup_factor <= 1:
        problems.append(f"train.warmup_factor must be in (0, 1], got {t.warmup_factor}")
    if t.poly_power <= 0:
        problems.append(f"train.poly_power must be > 0, got {t.poly_power}")
    if not 0 < t.lr_gamma <= 1:
        problems.append(f"train.lr_gamma must be in (0, 1], got {t.lr_gamma}")
    steps = list(t.lr_steps)
    if any(s < 1 for s in steps) or steps != sorted(set(steps)):
        problems.append(f"train.lr_steps must be increasing iterations >= 1, got {steps}")
    if t.max_iters is not None and t.max_iters < 1:
        problems.append(f"train.max_iters must be >= 1 or None, got {t.max_iters}")
    if t.eval_interval_iters is not None and t.eval_interval_iters < 1:
        problems.append(f"train.eval_interval_iters must be >= 1 or None, got "
                        f"{t.eval_interval_iters}")  # fmt: skip
    if problems:
        raise SetupError("; ".join(problems))


def named_groups(
    model: nn.Module, hooks: MethodHooks = DEFAULT_HOOKS
) -> dict[str, list[nn.Parameter]]:
    """The hooks' groups, checked to partition the model's parameters (ValueError if a
    parameter is missing or in two groups: the method's hook is wrong)."""
    groups = hooks.param_groups(model)
    seen: dict[int, str] = {}
    for name, params in groups.items():
        for p in params:
            if id(p) in seen:
                raise ValueError(f"param_groups: a parameter is in groups {seen[id(p)]!r} "
                                 f"and {name!r}")  # fmt: skip
            seen[id(p)] = name
    own = {id(p) for p in unwrap(model).parameters()}
    missing, foreign = len(own - seen.keys()), len(seen.keys() - own)
    if missing or foreign:
        raise ValueError(f"param_groups must partition the model's parameters: {missing} are "
                         f"in no group, {foreign} are not the model's")  # fmt: skip
    return groups


def optimizer_groups(
    model: nn.Module, cfg: C.Config, hooks: MethodHooks = DEFAULT_HOOKS
) -> list[dict[str, Any]]:
    """torch param groups: the trainable parameters, one group per distinct lr multiplier
    (so multiplier 1 gives ONE group, as the published runs), each in the order of
    `model.parameters()`; "initial_lr" = lr * multiplier (the schedule's base). A method
    with `no_weight_decay` gets, per multiplier, a second group of those parameters with
    weight decay 0."""
    by_mult: dict[float, set[int]] = {}
    for name, params in named_groups(model, hooks).items():
        mult = cfg.train.backbone_lr_mult if name == BACKBONE_GROUP else 1.0
        by_mult.setdefault(mult, set()).update(id(p) for p in params)
    ordered = [p for p in unwrap(model).parameters() if p.requires_grad]
    exempt = {id(p) for p in hooks.no_weight_decay(model)} if hooks.no_weight_decay else set()
    groups = []
    for mult, ids in by_mult.items():
        lr = cfg.train.lr * mult
        params = [p for p in ordered if id(p) in ids and id(p) not in exempt]
        if params:
            groups.append({"params": params, "lr": lr, "initial_lr": lr})
        params = [p for p in ordered if id(p) in ids and id(p) in exempt]
        if params:  # the method's exempt parameters: weight decay 0 (Mask2Former's norms)
            groups.append({"params": params, "lr": lr, "initial_lr": lr, "weight_decay": 0.0})
    return groups


def build_optimizer(
    model: nn.Module, cfg: C.Config, hooks: MethodHooks = DEFAULT_HOOKS
) -> torch.optim.Optimizer:
    """`train.optimizer` over the trainable parameters (`optimizer_groups`): adam (AVSBench:
    no weight decay, the official `--wt_dec` is unused), adamw (AVSegFormer: torch's 0.01;
    Mask2Former family: 0.05) or sgd (`train.momentum`). `train.weight_decay` None keeps
    torch's default of the optimizer. Build it before any freezing: a frozen parameter stays
    in the optimizer and is skipped while it has no gradient."""
    t = cfg.train
    check_optim_config(t)
    kwargs: dict[str, Any] = {"lr": t.lr}
    if t.weight_decay is not None:
        kwargs["weight_decay"] = t.weight_decay
    if t.optimizer == "sgd":
        kwargs["momentum"] = t.momentum
    return OPTIMIZERS[t.optimizer](optimizer_groups(model, cfg, hooks), **kwargs)


def describe(cfg: C.Config) -> str:
    """One line for the run's log: optimizer, lr, decay, schedule, multiplier, clipping."""
    t = cfg.train
    name = {"adam": "Adam", "adamw": "AdamW", "sgd": f"SGD (momentum {t.momentum:g})"}
    decay = "torch default" if t.weight_decay is None else f"{t.weight_decay:g}"
    text = f"{name.get(t.optimizer, t.optimizer)} lr {t.lr:g}, weight decay {decay}"
    if t.optimizer == "adam" and t.weight_decay is None:
        text += f" (wt_dec {t.wt_dec:g} not applied, as published)"
    text += f", {t.schedule} lr"
    if t.schedule == "poly":
        text += f" (power {t.poly_power:g})"
    if t.schedule == "step":
        text += f" (x{t.lr_gamma:g} at iterations {list(t.lr_steps)})"
    if t.warmup_iters:
        text += f", linear warm-up {t.warmup_iters} iterations from x{t.warmup_factor:g}"
    if t.backbone_lr_mult != 1.0:
        text += f", backbone lr x{t.backbone_lr_mult:g}"
    if t.grad_clip_norm is not None:
        text += f", gradients clipped to L2 norm {t.grad_clip_norm:g}"
    return text


# ---------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------
def lr_factor(iteration: int, t: C.TrainConfig, total_iters: int) -> float:
    """The multiplier of the initial lr before `iteration` (0-based), detectron2's form:
    warmup(i) * main(i) with
      warmup(i) = warmup_factor * (1 - i / W) + i / W for i < W = warmup_iters, else 1
      main(i)   = 1 (constant) | lr_gamma ** #{s in lr_steps: s <= i} (step)
                | (1 - i / total_iters) ** poly_power, 0 from total_iters on (poly)."""
    if t.schedule == "poly":
        main = max(0.0, 1.0 - iteration / total_iters) ** t.poly_power
    elif t.schedule == "step":
        main = t.lr_gamma ** sum(1 for s in t.lr_steps if s <= iteration)
    else:
        main = 1.0
    if iteration < t.warmup_iters:
        alpha = iteration / t.warmup_iters
        return (t.warmup_factor * (1.0 - alpha) + alpha) * main
    return main


class LRSchedule:
    """Sets each group's lr to initial_lr * lr_factor(iteration). `step()` after every
    optimizer step; state_dict / load_state_dict for checkpoints. A constant schedule
    without warm-up leaves every lr exactly at its initial value."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: C.Config, total_iters: int):
        check_optim_config(cfg.train)
        self.optimizer, self.train_cfg = optimizer, cfg.train
        self.total_iters = max(1, int(total_iters))  # poly's horizon
        # as torch's schedulers: "initial_lr" (build_optimizer), else the lr found
        self.base_lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        self.iteration = 0
        self.apply()

    def factor(self) -> float:
        return lr_factor(self.iteration, self.train_cfg, self.total_iters)

    def apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def step(self) -> None:
        self.iteration += 1
        self.apply()

    def lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def resume(self, iteration: int, state: dict[str, Any] | None) -> None:
        """Continue after `iteration` iterations: from a checkpoint's `state` (SetupError if
        it is at another iteration), or, without one (older checkpoints), from the
        iteration alone (the schedule is a function of it)."""
        if state is None:
            self.iteration = iteration
            self.apply()
            return
        self.load_state_dict(state)
        if self.iteration != iteration:
            raise SetupError(
                f"the checkpoint's schedule is at iteration {self.iteration}, its position at "
                f"{iteration} (steps per epoch changed? keep --max_steps_per_epoch and the "
                "batch size of the run)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        base_lrs = [float(lr) for lr in state["base_lrs"]]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the checkpoint's schedule has {len(base_lrs)} parameter groups, the optimizer "
                f"{len(self.optimizer.param_groups)} (train.backbone_lr_mult changed?)"
            )
        self.base_lrs, self.iteration = base_lrs, int(state["iteration"])
        self.apply()


# ---------------------------------------------------------------------------------------
# The step, clipping and freezing
# ---------------------------------------------------------------------------------------
def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, active for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    clip_norm: float | None = None,
    scheduler: LRSchedule | None = None,
) -> None:
    """One update: backward (scaled), gradients clipped to `clip_norm` after unscaling
    (`clip_gradients`), the optimizer step (skipped by the scaler on fp16 overflow), then the
    schedule steps to the next iteration's lr."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients (a no-op without fp16)
        clip_gradients(optimizer, clip_norm)
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """detectron2's "full_model" clipping: scale every gradient of the optimizer's
    parameters by max_norm / (total L2 norm + 1e-6) when the norm exceeds max_norm
    (`torch.nn.utils.clip_grad_norm_` over all groups at once). Returns the norm before."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def set_backbone_trainable(
    model: nn.Module, epoch: int, cfg: C.Config, hooks: MethodHooks = DEFAULT_HOOKS
) -> bool:
    """Freeze the backbone during the first `train.freeze_backbone_epochs` epochs
    (AVSegFormer's recipe), unfreeze it after, through the method's hook; returns True if it
    is trainable. The state follows from the epoch alone, so a resumed run freezes exactly
    as an uninterrupted one."""
    trainable = epoch >= cfg.train.freeze_backbone_epochs
    hooks.set_backbone_trainable(model, trainable)
    return trainable


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "MethodHooks",
    "DEFAULT_HOOKS",
    "build_optimizer",
    "optimizer_groups",
    "LRSchedule",
    "lr_factor",
    "clip_gradients",
    "make_scaler",
    "optimizer_step",
    "set_backbone_trainable",
    "check_optim_config",
    "add_optim_arguments",
    "OPTIM_FLAGS",
    "describe",
]
