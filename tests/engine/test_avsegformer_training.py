"""AVSegFormer through the engine (`--method avsegformer`): train + test on the synthetic
data, exact resume across the epoch that unfreezes the backbone, AdamW, bf16 autocast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.engine import runs, train
from avsbench.engine.step import forward
from avsbench.models import registry
from avsbench.models.registry import build_model_for
from tests.engine.engine_helpers import tiny_flags

# a small AVSegFormer: width 32 (GroupNorm needs a multiple of 32), 64 px frames
FLAGS = {"method": "avsegformer", "decoder_channels": 32, "max_steps_per_epoch": 2}


def _only_run(log_dir: Path) -> runs.RunDir:
    (root,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return runs.RunDir(root)


@pytest.mark.slow
def test_train_and_test_with_method_avsegformer(tmp_path, s4_toy):
    logs = tmp_path / "train"
    assert cmd_train.main("s4", tiny_flags(s4_toy, logs, max_epoches=2, **FLAGS)) == 0
    run = _only_run(logs)
    last = torch.load(run.last, weights_only=True)
    cfg = registry.config_from_dict(last["config"])
    assert cfg.model.method == "avsegformer" and cfg.train.optimizer == "adamw"
    assert any(k.startswith("head.query_generator.") for k in last["model"])
    assert last["optimizer"]["param_groups"][0]["weight_decay"] == 0.01  # AdamW defaults
    log_text = (run.log / "train.log").read_text()
    assert "AVSegFormer (16 queries, 2/2 layers" in log_text and "adamw lr 0.0005" in log_text
    assert "mix_loss" in last["history"][0]["train"]
    assert any(p.name.startswith("events.out.tfevents") for p in run.log.iterdir())

    out_json = tmp_path / "metrics.json"
    test_flags = ["--synthetic", "--data_root", str(s4_toy), "--train_log_dir", str(logs),
                  "--image_size", "64", "--num_workers", "0", "--device", "cpu", "--report",
                  "--log_dir", str(tmp_path / "test"), "--out_json", str(out_json)]  # fmt: skip
    assert cmd_test.main("s4", test_flags) == 0
    result = json.loads(out_json.read_text())
    assert result["checkpoint_kind"] == "project"
    assert registry.config_from_dict(result["config"]).model.method == "avsegformer"
    assert 0.0 <= result["metrics"]["miou"] <= 1.0
    assert list((_only_run(tmp_path / "test").root / "report").iterdir())
    # --method contradicting the checkpoint is refused, not silently rebuilt
    assert cmd_test.main("s4", [*test_flags, "--method", "tpavi"]) == 2


@pytest.mark.slow
def test_resume_across_the_unfreeze_epoch_is_exact(tmp_path, s4_toy):
    """Backbone frozen in epoch 1, trainable in epoch 2: a run stopped after epoch 1 and
    resumed equals the uninterrupted run bit for bit (weights, AdamW state, history)."""
    flags = {**FLAGS, "freeze_backbone_epochs": 1, "max_steps_per_epoch": 1}
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cmd_train.main("s4", tiny_flags(s4_toy, straight, max_epoches=2, **flags)) == 0
    assert cmd_train.main("s4", tiny_flags(s4_toy, split, max_epoches=1, **flags)) == 0
    first = torch.load(_only_run(split).last, weights_only=True)
    resumed = tiny_flags(s4_toy, split, max_epoches=2, resume="auto", **flags)
    assert cmd_train.main("s4", resumed) == 0

    a = torch.load(_only_run(straight).last, weights_only=True)
    b = torch.load(_only_run(split).last, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert len(a["optimizer"]["state"]) == len(b["optimizer"]["state"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert [h["train"]["loss"] for h in a["history"]] == [h["train"]["loss"] for h in b["history"]]

    # epoch 1: backbone weights untouched, the head trained; epoch 2: the backbone trained
    torch.manual_seed(C.TrainConfig().seed)
    cfg = registry.config_from_dict(a["config"])
    conv = "visual.body.conv1.weight"
    start = build_model_for(cfg).state_dict()
    assert conv in start, sorted(k for k in start if k.startswith("visual."))[:3]
    assert torch.equal(first["model"][conv], start[conv])
    assert not torch.equal(a["model"][conv], first["model"][conv])
    head = "head.learnable_query.weight"
    assert not torch.equal(first["model"][head], start[head])
    # the frozen epoch left the backbone without AdamW state; the second gave it some
    assert len(first["optimizer"]["state"]) < len(a["optimizer"]["state"])


def test_freeze_follows_the_epoch():
    cfg = C.override(registry.synthetic(registry.preset("ms3", method="avsegformer")),
                     {"train.freeze_backbone_epochs": 2})  # fmt: skip
    model = build_model_for(cfg)
    for epoch, trainable in [(0, False), (1, False), (2, True), (5, True), (1, False)]:
        assert train.set_backbone_trainable(model, epoch, cfg) is trainable
        assert all(p.requires_grad is trainable for p in model.visual.parameters())
        assert all(p.requires_grad for p in model.head.parameters())


def test_bf16_autocast_step_is_finite_and_backpropagates():
    cfg = C.override(registry.synthetic(registry.preset("avss", method="avsegformer")),
                     {"model.arch.embed_dim": 32, "data.image_size": 64})  # fmt: skip
    torch.manual_seed(0)
    model = build_model_for(cfg).train()
    frames, audio = torch.randn(4, 3, 64, 64), torch.randn(4, 128)
    valid = torch.tensor([1.0, 1.0, 1.0, 0.0])
    out = forward(model, frames, audio, valid, amp="bf16")
    assert out.logits.dtype == torch.float32 and out.mask_feature is not None
    masks = torch.randint(0, 71, (4, 64, 64))
    loss, parts = registry.method_spec("avsegformer").loss(
        "avss", out, masks, valid, cfg.train.loss
    )
    loss.backward()
    grads = [p.grad for p in model.head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert parts["total_loss"] == pytest.approx(parts["iou_loss"] + parts["mix_loss"], rel=1e-6)
