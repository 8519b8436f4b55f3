"""benchmarks/bench_avsegformer_model.py: its agreement check on the small configuration
(the whole AVSegFormer with the project's deformable attention against the published
formulation, same weights and inputs), and that the check can fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import bench_avsegformer_model as bench  # noqa: E402

from avsbench.models.avsegformer import deform_attn  # noqa: E402


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return bench.build("small", "cpu")


@pytest.mark.parametrize("task", bench.TASKS)
def test_the_two_formulations_agree_in_the_whole_model(small, task):
    model, inputs = small
    diffs = bench.agreement(model, task, inputs)
    assert diffs["logits"] < bench.TOLERANCE and diffs["mask_feature"] < bench.TOLERANCE
    if task == "train":
        assert diffs["loss"] < bench.TOLERANCE and diffs["grad_max"] < bench.TOLERANCE
        # every parameter has a gradient (AVSegFormer S4 trains them all), none is missed
        assert diffs["grads_compared"] == sum(1 for _ in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # the check leaves no gradients


def test_the_swap_reaches_every_encoder_layer_and_is_undone(small):
    model, inputs = small
    calls = []

    def counting(*args):
        calls.append(args[0].shape)
        return bench.published_formulation(*args)

    original = bench.CORES["published"]
    bench.CORES["published"] = counting
    try:
        with bench.core("published"):
            bench.step(model, "infer", inputs)
    finally:
        bench.CORES["published"] = original
    layers = len(model.head.encoder.layers)
    assert layers == 2 and len(calls) == layers  # the small config's 2 encoder layers
    assert deform_attn.multi_scale_deformable_attention is bench.PROJECT_CORE


def test_a_formulation_that_differs_fails_the_check(small, monkeypatch):
    model, inputs = small

    def off(*args):
        return bench.published_formulation(*args) * (1 + 1e-4)

    monkeypatch.setitem(bench.CORES, "published", off)
    with pytest.raises(AssertionError, match="formulations disagree"):
        bench.agreement(model, "infer", inputs)
