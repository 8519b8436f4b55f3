"""Helpers of the VCT tests: the published layouts, the golden weight rule, the golden inputs."""

from __future__ import annotations

import functools
import re

import numpy as np
import torch

from tests.golden_files import VCT, VCT_STATE_DICTS, require
from tests.models.avsegformer.avsegformer_helpers import rule_tensor

TAGS = ("vct_s4_swinb", "vct_ms3_swinb", "vct_avss_swinb")
SETTINGS = {"vct_s4_swinb": "s4", "vct_ms3_swinb": "ms3", "vct_avss_swinb": "avss"}
PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


@functools.cache
def read_layout(tag: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, shape, dtype) rows of tests/golden/vct/state_dicts/<tag>.tsv."""
    rows = []
    for line in require(VCT_STATE_DICTS / f"{tag}.tsv").read_text().splitlines():
        if line.strip():
            name, shape, dtype = line.split("\t")
            rows.append((name, tuple(int(s) for s in re.findall(r"\d+", shape)), dtype))
    return tuple(rows)


def golden_rule_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The golden weight rule (tests/golden/README.md), 0-dim tensors (`logit_scale`): 0.05 v."""
    if shape == ():
        return 0.05 * rule_tensor(name, shape)
    return rule_tensor(name, shape)


def rule_state_dict(tag: str, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The published state dict the golden values of `tag` were computed with (the index
    buffers hold the standard Swin index: only their shape is in the layout). skip: name
    prefixes left out (VGGish's embedding layers, which VCT never uses: 50M numbers)."""
    from timm.models.swin_transformer import get_relative_position_index

    sd = {}
    for name, shape, dtype in read_layout(tag):
        if name.startswith(skip):
            continue
        if name.endswith("relative_position_index"):
            sd[name] = get_relative_position_index(12, 12).to(torch.int64)
        elif dtype != "float32":
            sd[name] = torch.zeros(shape, dtype=getattr(torch, dtype))
        else:
            sd[name] = golden_rule_tensor(name, shape)
    return sd


def golden(tag: str) -> dict[str, np.ndarray]:
    with np.load(require(VCT / f"{tag}.npz")) as z:
        return {k: z[k] for k in z.files}


def golden_frames(num_frames: int, size: int = 384) -> torch.Tensor:
    """The golden frames, normalised: [T, 3, S, S]."""
    gen = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (num_frames, 3, size, size), generator=gen).float()
    return normalise(frames)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - PIXEL_MEAN) / PIXEL_STD
