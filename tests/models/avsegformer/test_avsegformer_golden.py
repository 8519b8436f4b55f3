"""The six published AVSegFormer configurations reproduce the golden outputs of the published
code (tests/golden/README.md): weights by the golden rule under the OFFICIAL names, loaded
through `load_official_state_dict` (so the name mapping is tested too).

Costs kept down (about 85 s of CPU time on 2 cores), without weakening what is asserted:
- S4 and MS3 are one network: the MS3 model is built and loaded too, its tensors are asserted
  equal to the S4 model's, and the S4 forward pass is compared with the MS3 golden file.
- Every frame is processed on its own (test_avsegformer_model.py asserts it), so the AVSS
  clip runs its five real frames and one padding frame; the golden's padding frames are
  all zero, which the computed padding frame must be.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avsbench
from tests.golden_files import AVSEGFORMER, require
from tests.models.avsegformer.avsegformer_helpers import (
    LAYOUTS,
    empty_model,
    read_layout,
    rule_state_dict,
)

_RULE_CACHE: dict[str, dict] = {}  # backbone -> (name, shape) -> tensor, one backbone at a time
_RUNS: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}  # one at a time


def _build_and_load(stem: str) -> torch.nn.Module:
    setting, backbone = LAYOUTS[stem]
    for other in [b for b in _RULE_CACHE if b != backbone]:
        del _RULE_CACHE[other]
    sd = rule_state_dict(stem, _RULE_CACHE.setdefault(backbone, {}))
    model = empty_model(setting, backbone).eval()  # every tensor comes from `sd`
    report = avsbench.load_official_state_dict(model, sd)
    assert report.loaded == len(model.state_dict())
    return model


def _run(stem: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(outputs at the golden's strides, the loaded model's state dict) of one network."""
    if stem not in _RUNS:
        _RUNS.clear()
        golden = _golden(stem)
        frames_total = golden["audio_emb"].shape[0]
        frames = torch.randn(frames_total, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        valid = golden["frame_valid"]
        keep = int(valid.sum()) + 1 if valid.min() == 0 else frames_total  # + one padding frame
        model = _build_and_load(stem)
        with torch.no_grad():
            out = model(
                frames[:keep],
                torch.from_numpy(golden["audio_emb"][:keep]),
                torch.from_numpy(valid[:keep]),
            )
        stride = int(golden["logits_stride"])
        outputs = {
            "logits": out.logits[:, :, ::stride, ::stride],
            "mask_feature_mean": out.mask_feature.mean(1),
        }
        _RUNS[stem] = outputs, model.state_dict()
    return _RUNS[stem]


def _golden(stem: str) -> dict[str, np.ndarray]:
    return dict(np.load(require(AVSEGFORMER / f"avsegformer_{stem}.npz")))


def _check(outputs: dict[str, torch.Tensor], golden: dict[str, np.ndarray]) -> dict[str, float]:
    diffs = {}
    for key, value in outputs.items():
        expected = golden[key]
        got = value.numpy()
        keep = got.shape[0]
        assert got.shape[1:] == expected.shape[1:], key
        scale = float(np.abs(expected).max())
        diff = float(np.abs(got - expected[:keep]).max())
        assert diff <= 1e-4 * scale, f"{key}: max |diff| {diff:.3g} > 1e-4 x {scale:.3g}"
        assert not expected[keep:].any(), f"{key}: golden padding frames beyond {keep} not zero"
        diffs[key] = diff / scale
    return diffs


# in this order: each MS3 case reuses the S4 run just before it
@pytest.mark.slow
@pytest.mark.parametrize("stem", list(LAYOUTS))
def test_golden(stem):
    golden = _golden(stem)
    if stem.startswith("ms3_"):  # MS3 builds the S4 network: same layout, same tensors
        network = stem.replace("ms3_", "s4_")
        outputs, s4_state = _run(network)
        assert read_layout(stem) == read_layout(network)
        ms3_state = _build_and_load(stem).state_dict()
        assert ms3_state.keys() == s4_state.keys()
        assert all(torch.equal(ms3_state[k], s4_state[k]) for k in s4_state)
    else:
        outputs, _ = _run(stem)
    diffs = _check(outputs, golden)
    print(f"{stem}: max |diff| / max |golden| = {diffs}")
    if golden["frame_valid"].min() == 0:  # AVSS: the computed padding frame is zero
        last = int(golden["frame_valid"].sum())
        assert not outputs["logits"][last:].any()
        assert not outputs["mask_feature_mean"][last:].any()
