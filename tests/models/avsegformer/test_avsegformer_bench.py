"""benchmarks/bench_avsegformer_model.py: its agreement check on the small configuration
(the whole AVSegFormer with the project's deformable attention against the published
formulation, same weights and inputs), and that the check can fail."""

from __future__ import annotations

import pytest
import torch

from avsbench.models.backbones import deform_attn
from benchmarks import bench_avsegformer_model as bench
from benchmarks.two_variants import PROJECT_CORE
from tests.models.avsegformer.published_deform_attn import published_formulation


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return bench.build("small", "cpu")


@pytest.mark.parametrize("task", bench.TASKS)
def test_the_two_formulations_agree_in_the_whole_model(small, task):
    model, inputs = small
    result = bench.agreement(model, task, inputs)
    assert result["frames"] == 2
    # float64: outputs come back in float32 (the engine's step); float32: without dropout
    for dtype, bound in (("float64", 1e-6), ("float32_no_dropout", 1e-4)):
        diffs = result[dtype]
        assert diffs["logits"] < bound and diffs["mask_feature"] < bound, (dtype, diffs)
        if task == "train":
            assert diffs["loss"] < bound and diffs["grad_max"] < bound, (dtype, diffs)
            # every parameter has a gradient (AVSegFormer S4 trains them all), none is missed
            assert diffs["grads_compared"] == sum(1 for _ in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # the check leaves no gradients


def test_the_swap_reaches_every_encoder_layer_and_is_undone(small):
    model, inputs = small
    calls = []

    def counting(*args):
        calls.append(args[0].shape)
        return published_formulation(*args)

    original = bench.CORES["published"]
    bench.CORES["published"] = counting
    try:
        with bench.core("published"):
            bench.step(model, "infer", inputs)
    finally:
        bench.CORES["published"] = original
    layers = len(model.head.encoder.layers)
    assert layers == 2 and len(calls) == layers  # the small config's 2 encoder layers
    assert deform_attn.multi_scale_deformable_attention is PROJECT_CORE


def test_a_formulation_that_differs_fails_the_check(small, monkeypatch):
    model, inputs = small

    def off(*args):
        return published_formulation(*args) * (1 + 1e-4)

    monkeypatch.setitem(bench.CORES, "published", off)
    with pytest.raises(AssertionError, match="formulations disagree"):
        bench.agreement(model, "infer", inputs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_device_cuda_without_a_gpu_is_skipped_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cuda.json"
    assert bench.main(["--device", "cuda", "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().out and not out.exists()
