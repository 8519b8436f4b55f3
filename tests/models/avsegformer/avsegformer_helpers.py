"""Helpers of the AVSegFormer tests: the published layouts, the golden weight rule, tiny models."""

from __future__ import annotations

import functools
import math
import re
import zlib

import torch

import avsbench
from tests.golden_files import AVSEGFORMER_STATE_DICTS, require
from tests.state_dict_files import compact_state_dict

# layout file stem -> (setting, project backbone name)
LAYOUTS = {
    "s4_res50": ("s4", "resnet50"),
    "ms3_res50": ("ms3", "resnet50"),
    "avss_res50": ("avss", "resnet50"),
    "s4_pvt2": ("s4", "pvt_v2_b5"),
    "ms3_pvt2": ("ms3", "pvt_v2_b5"),
    "avss_pvt2": ("avss", "pvt_v2_b5"),
}
# the official tensors the published forward pass never uses
UNUSED = re.compile(r"^(backbone\.layer[34]_2\.|head\.fpn\.|head\.attn_fc\.)")

# a small configuration: every part present, seconds on CPU
TINY = dict(
    embed_dim=64,
    num_queries=8,
    encoder_layers=2,
    decoder_layers=2,
    generator_layers=2,
    num_points=2,
    ffn_dim=96,
    generator_ffn_dim=48,
    mlp_dim=40,
    dropout=0.0,
)


@functools.cache
def read_layout(stem: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, shape, dtype) rows of tests/golden/avsegformer/state_dicts/avsegformer_<stem>.tsv."""
    rows = []
    path = require(AVSEGFORMER_STATE_DICTS / f"avsegformer_{stem}.tsv")
    for line in path.read_text().splitlines():
        if line.strip():
            name, shape, dtype = line.split("\t")
            rows.append((name, tuple(int(s) for s in re.findall(r"\d+", shape)), dtype))
    return tuple(rows)


def rule_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The golden files' weight rule (tests/golden/README.md) for one floating tensor."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    v = torch.randn(shape, generator=g)
    if name.endswith("running_var"):
        return v.abs() * 0.5 + 0.5
    if name.endswith("running_mean"):
        return v * 0.1
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * v
    if len(shape) == 1:
        return 0.05 * v
    return v / math.sqrt(math.prod(shape[1:]))


def rule_state_dict(
    stem: str, cache: dict[tuple[str, tuple[int, ...]], torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The official state dict the golden values were computed with.

    `vggish.*` are zeros: the golden runs replaced VGGish by the identity, so its values
    never reach an output (and the rule on its 72M numbers would only cost time).
    cache: (name, shape) -> tensor, shared by layouts of one backbone (the rule depends on
    the name and shape only).
    """
    cache = {} if cache is None else cache
    sd = {}
    for name, shape, dtype in read_layout(stem):
        if dtype != "float32":
            sd[name] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif name.startswith("vggish."):
            sd[name] = torch.zeros(shape)
        else:
            if (name, shape) not in cache:
                cache[name, shape] = rule_tensor(name, shape)
            sd[name] = cache[name, shape]
    return sd


def random_state_dict(stem: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of a layout, distinct random values (int64 counters for num_batches_tracked),
    held in two shared buffers of 1 MB (tests/state_dict_files.py) instead of one number per
    element: the released layouts have 150M."""
    rows = read_layout(stem)
    dtypes = {name: getattr(torch, dtype) for name, _, dtype in rows}
    return compact_state_dict([(name, shape) for name, shape, _ in rows], seed, dtypes)


def empty_model(setting: str, backbone: str, **sizes) -> torch.nn.Module:
    """`build_model(..., method="avsegformer")` with uninitialised CPU tensors.

    Built on the meta device (no random initialisation: PVT-v2-b5's takes ~10 s), for tests
    that load every tensor from a state dict right after (`load_official_state_dict`
    refuses a state dict with a missing tensor, so nothing stays uninitialised).
    """
    with torch.device("meta"):
        model = avsbench.build_model(setting, backbone, method="avsegformer", **sizes)
    return model.to_empty(device="cpu")
