"""Helpers of the COMBO tests: the published layouts (tests/golden/vct/state_dicts/combo_*.tsv),
the golden weight rule on them, models built without initialisation."""

from __future__ import annotations

import functools
import re

import torch

from avsbench.models.combo.model import COMBO, build_combo
from tests.golden_files import VCT_STATE_DICTS, require
from tests.models.avsegformer.avsegformer_helpers import rule_tensor

# layout / golden tag -> (setting, project backbone, fusion the published config builds)
TAGS = {
    "combo_s4_r50": ("s4", "resnet50", "MHA-B"),
    "combo_ms3_r50": ("ms3", "resnet50", "MHA-B"),
    "combo_s4_pvt": ("s4", "pvt_v2_b5", "MHA-B"),
    "combo_ms3_pvt": ("ms3", "pvt_v2_b5", "MHA-B"),
    "combo_avss_pvt": ("avss", "pvt_v2_b5", "MHA-B"),
    "combo_avss_r50": ("avss", "resnet50", "MHA-None"),  # the test config's quirk
    "combo_avss_r50_trainconfig": ("avss", "resnet50", "MHA-B"),
}


@functools.cache
def read_layout(tag: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, shape, dtype) rows of state_dicts/<tag>.tsv, in the published order."""
    rows = []
    for line in require(VCT_STATE_DICTS / f"{tag}.tsv").read_text().splitlines():
        if line.strip():
            name, shape, dtype = line.split("\t")
            rows.append((name, tuple(int(s) for s in re.findall(r"\d+", shape)), dtype))
    return tuple(rows)


def rule_state_dict(tag: str) -> dict[str, torch.Tensor]:
    """The published state dict the golden values were computed with (VGGish included)."""
    return {name: rule_tensor(name, shape) for name, shape, _ in read_layout(tag)}


def meta_state_dict(tag: str) -> dict[str, torch.Tensor]:
    """Every tensor of a layout on the meta device (names and shapes only, no memory)."""
    return {name: torch.empty(shape, device="meta") for name, shape, _ in read_layout(tag)}


def empty_model(tag: str, device: str = "cpu") -> COMBO:
    """The published network of `tag`, uninitialised (built on the meta device, then
    materialised on `device`, "meta" to keep it there)."""
    setting, backbone, fusion = TAGS[tag]
    with torch.device("meta"):
        model = build_combo(setting, backbone, fusion=fusion)
    return model if device == "meta" else model.to_empty(device=device)
