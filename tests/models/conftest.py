"""Shared helpers for the model tests: random state dicts in the published layouts."""

from __future__ import annotations

import re

import pytest
import torch
from golden_files import GOLDEN, STATE_DICTS, require  # noqa: F401


def read_tsv(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """`name<TAB>shape` rows of spec/state_dicts/<name>."""
    rows = []
    for line in require(STATE_DICTS / name).read_text().splitlines():
        if not line.strip():
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(s) for s in re.findall(r"\d+", shape))))
    return rows


def random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with every tensor of the layout `name`, filled with distinct random values.

    BatchNorm running variances are positive, `num_batches_tracked` are int64 counters.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (key, shape) in enumerate(read_tsv(name)):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000 + i, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.05
    return sd


@pytest.fixture(scope="session")
def tsv_state_dict():
    return random_state_dict


@pytest.fixture(scope="session")
def tsv_rows():
    return read_tsv


@pytest.fixture(scope="session")
def golden_tpavi():
    import numpy as np

    return dict(np.load(require(GOLDEN / "tpavi_blocks.npz")))
