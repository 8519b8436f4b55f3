"""Writing the project's checkpoints (docs/ARCHITECTURE.md, "Checkpoints of the project");
reading any checkpoint is `avsbench.checkpoints.load`.

A project checkpoint is `torch.save` of a dict:
`{"format": "avsbench/1", "model": state_dict (project names), "config": to_dict(cfg),
"epoch": int (last COMPLETED epoch, 0-based; -1 before the first), "optimizer": ...,
"scaler": ..., "scheduler": {"iteration", "base_lrs"} (`optim.LRSchedule`), "rng": {python,
numpy, torch, cuda}, "best_miou": float, "history": [per-epoch dicts]}`, and inside an epoch
"position" (resume.py; runs by iterations also "iteration"); `<session>_best.pth` holds the
same without optimizer, scaler, scheduler and rng. Files are written atomically: to a
temporary file in the same folder, flushed and fsync'ed, then `os.replace`d over the
target, so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsbench.checkpoints import FORMAT
from avsbench.fileio import atomic_write


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj)` to `path` atomically (temp file + fsync + os.replace).

    If anything fails before the replace, the temporary file is removed and an existing
    file at `path` is left untouched."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and every CUDA device."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state_to_plain(state: tuple) -> tuple:
    """numpy's MT19937 state with the key array as a list (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = state
    return (str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached))


def _numpy_state_from_plain(state: tuple | list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA states only where the devices exist)."""
    random.setstate(state["python"])
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(torch.as_tensor(s, dtype=torch.uint8).cpu(), i)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_checkpoint(
    model_state: dict[str, torch.Tensor],
    config: dict[str, Any],
    *,
    epoch: int,
    best_miou: float,
    history: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    scheduler: Any = None,
    with_rng: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring). Tensors are moved to the CPU so that
    a checkpoint written on a GPU loads anywhere."""
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "config": config,
        "epoch": int(epoch),
        "best_miou": float(best_miou),
        "history": list(history),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    if with_rng:
        ckpt["rng"] = rng_state()
    if extra:
        ckpt.update(extra)
    return ckpt
