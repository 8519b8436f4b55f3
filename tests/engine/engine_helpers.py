"""Shared helpers of tests/engine: tiny synthetic data and tiny training flags."""

from __future__ import annotations

from pathlib import Path

from avsbench.config import SETTINGS
from avsbench.data.synthetic import make_toy_data


def toy_root(base: Path, setting: str) -> Path:
    """A very small synthetic dataset of `setting` under `base` (made once per base)."""
    root = base / SETTINGS[setting].dataset_folder
    if not root.is_dir():
        # MS3 and AVSS at 0.025: 6 and 2 v1s + 2 v1m + 1 v2 training clips
        scale = 0.05 if setting == "s4" else 0.025
        make_toy_data(base, seed=0, scale=scale, settings=(setting,), num_categories=3)
    return root


def tiny_flags(root: Path, log_dir: Path, **extra: object) -> list[str]:
    """Flags of a tiny CPU run: synthetic config, 64 px, decoder width 16, 2 clips/batch."""
    flags = {
        "data_root": root,
        "log_dir": log_dir,
        "image_size": 64,
        "decoder_channels": 16,
        "train_batch_size": 2,
        "val_batch_size": 2,
        "max_epoches": 1,
        "max_steps_per_epoch": 2,
        "num_workers": 0,
        "device": "cpu",
    }
    flags.update(extra)
    argv = ["--synthetic"]
    for key, value in flags.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not None:
            argv += [f"--{key}", str(value)]
    return argv
