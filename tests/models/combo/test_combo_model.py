"""COMBO in the library: the registry's presets and small configuration build it, its
parameter groups put both backbones (and nothing else) at the backbone rate, a training step
reaches every trained part while FrozenBatchNorm stays fixed, and a missing maskige is a
clear error."""

from __future__ import annotations

import pytest
import torch

from avsbench.models import registry
from avsbench.models.combo import SPEC
from avsbench.models.combo.model import COMBO


def test_presets_are_the_published_recipes():
    s4, ms3, avss = (registry.preset(s, "combo") for s in ("s4", "ms3", "avss"))
    assert (s4.train.max_iters, ms3.train.max_iters, avss.train.max_iters) == (90000, 20000, 90000)
    for cfg in (s4, ms3, avss):
        train = cfg.train
        assert (train.optimizer, train.lr, train.weight_decay) == ("adamw", 1e-4, 0.05)
        assert (train.schedule, train.poly_power, train.backbone_lr_mult) == ("poly", 0.9, 0.1)
        assert (train.grad_clip_norm, train.train_batch_size) == (0.01, 8)
        assert cfg.eval.test_batch_size == 4  # AVSBench's batch; per clip: *_per_clip keys
        assert cfg.model.arch.fusion == "MHA-B"
    assert (s4.model.arch.frames_per_clip, avss.model.arch.frames_per_clip) == (5, 10)
    assert (s4.model.num_classes, avss.model.num_classes) == (1, 71)


def _small_model() -> COMBO:
    cfg = registry.synthetic(registry.preset("avss", "combo"))
    torch.manual_seed(0)
    model = registry.build_model_for(cfg)
    assert isinstance(model, COMBO) and model.frames_per_clip == 10
    return model


def test_parameter_groups_and_backbone_freezing():
    model = _small_model()
    groups = SPEC.param_groups(model)
    backbone_ids = {id(p) for p in groups["backbone"]}
    expected = {id(p) for p in model.visual.backbone.parameters()} | {
        id(p) for p in model.visual.pre_sam_backbone.parameters()
    }
    assert backbone_ids == expected
    assert all(id(p) not in backbone_ids for p in model.visual.scale_factor_module.parameters())
    assert len(groups["backbone"]) + len(groups["rest"]) == len(list(model.parameters()))
    SPEC.set_backbone_trainable(model, False)
    assert not any(p.requires_grad for p in groups["backbone"])
    assert all(p.requires_grad for p in groups["rest"])


def test_a_training_step_reaches_the_trained_parts_and_keeps_batchnorm_frozen():
    model = _small_model().train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert frozen  # FrozenBatchNorm statistics exist
    frames, maskige = torch.randn(10, 3, 64, 64), torch.randn(10, 3, 64, 64)
    valid = torch.tensor([1.0] * 5 + [0.0] * 5)
    out = model(frames, torch.randn(10, 128), valid, maskige=maskige)
    assert not out.logits.requires_grad  # the losses read pred_logits / pred_masks
    loss = out.pred_masks.square().mean() + out.pred_logits.square().mean()
    loss = loss + sum(m.square().mean() for _, m in out.aux_outputs)
    loss.backward()
    head = model.sem_seg_head
    for part in (
        head.predictor.query_feat.weight,
        head.fusion_module.b_attn.gamma_a,
        head.audio_transformation.embeddings[0].weight,
        head.pixel_decoder.input_proj[0][0].weight,
        model.visual.scale_factor_module[0].fc1.weight,
        model.visual.pre_sam_backbone.body.conv1.weight,
        model.visual.backbone.body.layer4[1].conv2.weight,  # residual branches alive: the
        # frozen BN of a block's end starts at 1, not at timm's zero
    ):
        assert part.grad is not None and part.grad.abs().sum() > 0
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())


def test_a_missing_maskige_is_a_clear_error():
    model = _small_model().eval()
    with pytest.raises(ValueError, match="COMBO needs the maskige of every frame"):
        model(torch.randn(10, 3, 64, 64), torch.randn(10, 128))
    with pytest.raises(ValueError, match="maskige must be shaped like the frames"):
        model(torch.randn(10, 3, 64, 64), torch.randn(10, 128), maskige=torch.randn(10, 3, 32, 32))
    assert SPEC.extra_inputs[0].key == "maskige"
