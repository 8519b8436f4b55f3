"""Where the tests find the facts of the published code: `tests/golden/` (see its README for
the provenance of every file). The files are part of the repository, so a missing one is a
broken checkout and fails the test that needs it; nothing outside the repository is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

GOLDEN_ROOT = Path(__file__).resolve().parent / "golden"
GOLDEN = GOLDEN_ROOT / "avsbench"  # published AVSBench outputs (commit f7414af)
STATE_DICTS = GOLDEN / "state_dicts"  # published AVSBench state-dict layouts
AVSEGFORMER = GOLDEN_ROOT / "avsegformer"  # published AVSegFormer outputs (commit 7083cb6)
AVSEGFORMER_STATE_DICTS = AVSEGFORMER / "state_dicts"


def require(path: Path) -> Path:
    """Return `path`; fail (never skip) when the repository file is absent."""
    if not path.exists():
        pytest.fail(f"golden file {path} is missing from the checkout (see tests/golden/README.md)")
    return path


def read_tsv(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """`name<TAB>shape` rows of state_dicts/<name> (a published state-dict layout)."""
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


VCT = GOLDEN_ROOT / "vct"  # published VCT (9a18d2f) and COMBO (cb8af1c) outputs
VCT_STATE_DICTS = VCT / "state_dicts"
