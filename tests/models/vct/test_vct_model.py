"""The VCT model's contract on a tiny configuration: shapes, padding frames, frames computed
on their own, refused inputs."""

from __future__ import annotations

import functools

import pytest
import torch

from avsbench import config as C
from avsbench.models.vct import VCTTrace, build_vct
from avsbench.models.vct import config as vct_config

SIZE = vct_config.SYNTHETIC_SIZE  # the small configuration's input side (64)
SIDE = SIZE // 4  # its mask features (16 x 16)


@functools.cache
def _tiny(setting: str) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = vct_config.synthetic(C.synthetic_base(vct_config.preset(setting))).model.arch
    return build_vct(setting, arch=arch).eval()


def _inputs(n: int, seed: int = 0, size: int = SIZE):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, 3, size, size, generator=g)
    maskige = torch.randn(n, 3, size, size, generator=g)
    audio = torch.rand(n, 512, 6, 4, generator=g)
    return frames, audio, maskige


def test_outputs_and_frames_computed_on_their_own() -> None:
    model = _tiny("s4")
    frames, audio, maskige = _inputs(3)
    with torch.no_grad():
        out = model(frames, audio, None, maskige=maskige)
        alone = model(frames[1:2], audio[1:2], None, maskige=maskige[1:2])
    assert out.logits.shape == (3, 1, 224, 224)
    assert out.pred_logits.shape == (3, 16, 3) and out.pred_masks.shape == (3, 16, SIDE, SIDE)
    assert len(out.aux_outputs) == 4  # initial queries + 3 earlier layers
    assert set(out.extras) == {"feat_audio", "feat_proto", "logit_scale"}
    torch.testing.assert_close(out.extras["feat_audio"].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(alone.logits[0], out.logits[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone.pred_masks[0], out.pred_masks[1], rtol=1e-4, atol=1e-4)


def test_padding_frames_are_zero_and_change_nothing_else() -> None:
    model = _tiny("avss")
    frames, audio, maskige = _inputs(4, seed=1)
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        out = model(frames, audio, valid, maskige=maskige)
        kept = model(frames[[0, 1, 3]], audio[[0, 1, 3]], None, maskige=maskige[[0, 1, 3]])
    assert out.logits.shape == (4, 71, 224, 224)
    assert bool((out.logits[2] == 0).all()) and bool((out.pred_masks[2] == 0).all())
    torch.testing.assert_close(out.logits[[0, 1, 3]], kept.logits)
    assert out.extras["feat_proto"].shape == (71, 64)


def test_ms3_has_no_prototype_outputs_and_the_trace_records_decisions() -> None:
    model = _tiny("ms3")
    frames, audio, maskige = _inputs(2, seed=2)
    trace = VCTTrace()
    with torch.no_grad():
        out = model(frames, audio, None, maskige=maskige, trace=trace)
        forced = VCTTrace(force_assign=torch.zeros(2, SIDE * SIDE, dtype=torch.long))
        other = model(frames, audio, None, maskige=maskige, trace=forced)
    assert out.extras == {} and not hasattr(model, "logit_scale")
    assert trace.assign_index.shape == (2, SIDE * SIDE) and sorted(trace.masks) == [1, 2, 3]
    assert bool((forced.assign_index == trace.assign_index).all())  # computed, not forced
    assert not torch.allclose(other.pred_logits, out.pred_logits)  # the forced one is used


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f, a, m: (f[..., :32, :32], a, m[..., :32, :32]), "64 x 64 only"),
        (lambda f, a, m: (f, a.flatten(1)[:, :128], m), r"conv map, \[B\*T=2, 12288\]"),
        (lambda f, a, m: (f, a, None), "needs the maskige of every frame"),
    ],
)
def test_wrong_inputs_are_refused_in_one_line(change, message: str) -> None:
    model = _tiny("s4")
    frames, audio, maskige = change(*_inputs(2))
    with pytest.raises(ValueError, match=message) as err:
        model(frames, audio, None, maskige=maskige)
    assert "\n" not in str(err.value)


def test_training_step_reaches_every_trained_part() -> None:
    """In training the assignment is Gumbel-perturbed and straight-through: one backward
    gives gradients to the assignment projections, the prototypes and the backbones."""
    torch.manual_seed(3)
    arch = vct_config.synthetic(C.synthetic_base(vct_config.preset("s4"))).model.arch
    model = build_vct("s4", arch=arch).train()
    frames, audio, maskige = _inputs(2, seed=3)
    out = model(frames, audio, None, maskige=maskige)
    loss = out.pred_masks.sigmoid().mean() + out.pred_logits.softmax(-1)[..., 0].mean()
    loss = (
        loss
        + (
            out.extras["logit_scale"].exp() * out.extras["feat_audio"] @ out.extras["feat_proto"].T
        ).mean()
    )
    loss.backward()
    block = model.sem_seg_head.predictor.visual_query_block
    for name, param in [
        ("assign q_proj", block.assign_attn.q_proj.weight),
        ("prototypes", block.prototype.weight),
        ("swin", model.visual.backbone.body.patch_embed.proj.weight),
        ("maskige swin", model.visual.pre_sam_backbone.norm0.weight),
        ("logit_scale", model.logit_scale),
    ]:
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name


def test_presets_and_the_synthetic_config_pass_the_check_and_build() -> None:
    from avsbench.models import registry

    for setting, (batch, iters) in {
        "s4": (2, 45000),
        "ms3": (2, 40000),
        "avss": (8, 45000),
    }.items():
        cfg = registry.preset(setting, "vct")
        registry.method_spec("vct").check(cfg)
        assert (cfg.data.image_size, cfg.train.train_batch_size, cfg.train.max_iters) == (
            384, batch, iters,
        )  # fmt: skip
        assert cfg.train.backbone_lr_mult == 0.1 and cfg.train.grad_clip_norm == 0.01
    small = registry.synthetic(registry.preset("ms3", "vct"))
    registry.method_spec("vct").check(small)
    assert small.train.max_iters is None and small.train.max_epoches == 10  # epochs, not 40k
    assert small.data.image_size == small.model.arch.image_size == 64
    model = registry.build_model_for(small)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert "16 queries" in registry.method_spec("vct").summary(small.model)
    with pytest.raises(ValueError, match="Swin-B only"):
        registry.method_spec("vct").check(C.override(small, {"model.backbone": "resnet50"}))


def test_the_engine_s_flat_conv_map_is_the_same_input() -> None:
    """The engine hands VGGish's conv map flattened in C-H-W order ([N, 12288])."""
    model = _tiny("ms3")
    frames, audio, maskige = _inputs(2, seed=4)
    with torch.no_grad():
        four_d = model(frames, audio, None, maskige=maskige)
        flat = model(frames, audio.flatten(1), None, maskige=maskige)
    assert torch.equal(four_d.logits, flat.logits)


def test_a_config_evaluating_at_another_size_is_refused() -> None:
    cfg = C.override(vct_config.preset("s4"), {"data.eval_mask_size": None})
    with pytest.raises(ValueError, match=r"eval_mask_size = None: set data.eval_mask_size to 224"):
        vct_config.check(cfg)


def test_the_spec_loss_reads_the_batch_category() -> None:
    """SPEC.loss on a real output: the set losses plus S4's prototype loss, which needs the
    clips' categories (MethodSpec.loss_batch_keys)."""
    from avsbench.models import registry

    spec = registry.method_spec("vct")
    assert spec.loss_batch_keys == ("category",)
    model = _tiny("s4")
    frames, audio, maskige = _inputs(2, seed=5)
    out = model(frames, audio, None, maskige=maskige)
    masks = torch.zeros(2, SIZE, SIZE)
    masks[:, 16:32, 24:48] = 1.0
    gt_valid = torch.tensor([1.0, 0.0])
    total, parts = spec.loss("s4", out, masks, gt_valid, C.LossConfig(), category=["helicopter"])
    assert torch.isfinite(total) and parts["loss_proto"] > 0
    with pytest.raises(ValueError, match="category"):
        spec.loss("s4", out, masks, gt_valid, C.LossConfig())


def test_mixed_precision_keeps_the_loss_features_in_float32() -> None:
    """AVSS trains with AMP (published): the engine's autocast leaves the extras float32."""
    from avsbench.engine.step import forward

    model = _tiny("avss")
    frames, audio, maskige = _inputs(1, seed=6)  # one frame: bf16 on a CPU is slow
    with torch.no_grad():
        out = forward(model, frames, audio.flatten(1), torch.ones(1), amp="bf16", maskige=maskige)
    assert {k: v.dtype for k, v in out.extras.items()} == dict.fromkeys(
        ("feat_audio", "feat_proto", "logit_scale"), torch.float32
    )
    torch.testing.assert_close(out.extras["feat_audio"].norm(dim=-1), torch.ones(1))
