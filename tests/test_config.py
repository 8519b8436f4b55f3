"""Method presets (TPAVI / AVSegFormer), their synthetic variants and the config round-trip
of checkpoints written before the method fields existed."""

from __future__ import annotations

import pytest
import torch

from avsbench import config as C
from avsbench.models import registry
from avsbench.models.avsegformer.model import AVSegFormer
from avsbench.models.registry import build_model_for
from avsbench.models.tpavi.model import AVSModel


@pytest.mark.parametrize(
    "setting, batch, epochs, frozen", [("s4", 2, 30, 5), ("ms3", 2, 60, 10), ("avss", 4, 30, 0)]
)
def test_avsegformer_preset_is_the_published_recipe(setting, batch, epochs, frozen):
    cfg = registry.preset(setting, method="avsegformer")
    tpavi = registry.preset(setting)
    assert cfg.model.method == "avsegformer" and tpavi.model.method == "tpavi"
    t = cfg.train
    assert (t.optimizer, t.lr, t.train_batch_size, t.max_epoches) == ("adamw", 2e-5, batch, epochs)
    assert (t.freeze_backbone_epochs, t.val_batch_size) == (frozen, batch)
    assert not (t.loss.sa_loss_flag or t.loss.masked_av_flag) and t.loss.mix_loss_weight == 0.1
    assert cfg.data == tpavi.data and cfg.eval == tpavi.eval
    a = cfg.model.arch
    assert (a.embed_dim, a.num_queries, a.encoder_layers, a.decoder_layers) == (256, 300, 6, 6)
    assert (tpavi.train.optimizer, tpavi.train.freeze_backbone_epochs) == ("adam", 0)
    with pytest.raises(ValueError, match="unknown method 'detr'; valid"):
        registry.preset(setting, method="detr")


def test_synthetic_avsegformer_is_small_and_builds():
    cfg = registry.synthetic(registry.preset("s4", method="avsegformer"))
    m = cfg.model
    assert (m.backbone, m.arch.embed_dim, m.arch.num_queries, m.arch.encoder_layers) == (
        "resnet18", 64, 16, 2,
    )  # fmt: skip
    assert cfg.train.freeze_backbone_epochs == 0 and cfg.train.optimizer == "adamw"
    model = build_model_for(cfg)
    assert isinstance(model, AVSegFormer)
    assert model.head.query_generator.query.num_embeddings == 16
    out = model.eval()(torch.zeros(2, 3, 96, 96), torch.zeros(2, 128))
    assert out.logits.shape == (2, 1, 96, 96) and out.mask_feature.shape == (2, 64, 24, 24)
    tpavi = registry.synthetic(registry.preset("s4"))
    assert not hasattr(tpavi.model.arch, "num_queries")  # each method has its own fields
    assert isinstance(build_model_for(tpavi), AVSModel)


def test_configs_of_older_versions_still_load():
    """A checkpoint's stored config from before `model.arch`: every method's fields flat in
    `model` (and from before `method` / `optimizer` / `freeze_backbone_epochs` existed: the
    TPAVI defaults). The config's method takes its own fields; AVSegFormer's width was
    `decoder_channels`; the other method's fields are dropped."""
    old = C.to_dict(registry.preset("ms3"))
    old["model"].update(old["model"].pop("arch"))  # TPAVI's fields flat in `model`
    old["model"].update(num_queries=300, encoder_layers=6, mlp_dim=2048)  # AVSegFormer's too
    del old["model"]["method"]
    del old["train"]["optimizer"], old["train"]["freeze_backbone_epochs"]
    del old["train"]["loss"]["mix_loss_weight"]
    runtime = old.pop("runtime")  # amp and channels_last were training fields, workers data's
    old["train"].update(amp="bf16", channels_last=runtime["channels_last"])
    old["data"]["num_workers"] = 3
    changed = {"runtime.amp": "bf16", "runtime.num_workers": 3}
    assert registry.config_from_dict(old) == C.override(registry.preset("ms3"), changed)

    cfg = registry.synthetic(registry.preset("avss", method="avsegformer"))
    assert registry.config_from_dict(C.to_dict(cfg)) == cfg
    flat = C.to_dict(cfg)
    arch = flat["model"].pop("arch")
    width = arch.pop("embed_dim")
    flat["model"].update(arch, decoder_channels=width, tpavi_stages=[0, 1])
    assert registry.config_from_dict(flat) == cfg
    assert isinstance(build_model_for(cfg), AVSegFormer)
    flat["model"]["no_such_field"] = 1
    with pytest.raises(KeyError, match="unknown config field ModelConfig.no_such_field"):
        registry.config_from_dict(flat)
