"""Method presets (TPAVI / AVSegFormer), their synthetic variants and the config round-trip
of checkpoints written before the method fields existed."""

from __future__ import annotations

import pytest
import torch

from avsbench import config as C
from avsbench.checkpoints import build_model_for
from avsbench.models.avs import AVSModel
from avsbench.models.avsegformer.model import AVSegFormer


@pytest.mark.parametrize(
    "setting, batch, epochs, frozen", [("s4", 2, 30, 5), ("ms3", 2, 60, 10), ("avss", 4, 30, 0)]
)
def test_avsegformer_preset_is_the_published_recipe(setting, batch, epochs, frozen):
    cfg = C.preset(setting, method="avsegformer")
    tpavi = C.preset(setting)
    assert cfg.model.method == "avsegformer" and tpavi.model.method == "tpavi"
    t = cfg.train
    assert (t.optimizer, t.lr, t.train_batch_size, t.max_epoches) == ("adamw", 2e-5, batch, epochs)
    assert (t.freeze_backbone_epochs, t.val_batch_size) == (frozen, batch)
    assert not (t.loss.sa_loss_flag or t.loss.masked_av_flag) and t.loss.mix_loss_weight == 0.1
    assert cfg.data == tpavi.data and cfg.eval == tpavi.eval
    m = cfg.model
    assert (m.decoder_channels, m.num_queries, m.encoder_layers, m.decoder_layers) == (
        256, 300, 6, 6,
    )  # fmt: skip
    assert (tpavi.train.optimizer, tpavi.train.freeze_backbone_epochs) == ("adam", 0)
    with pytest.raises(ValueError, match="unknown method 'detr'; valid"):
        C.preset(setting, method="detr")


def test_synthetic_avsegformer_is_small_and_builds():
    cfg = C.synthetic(C.preset("s4", method="avsegformer"))
    m = cfg.model
    assert (m.backbone, m.decoder_channels, m.num_queries, m.encoder_layers) == (
        "resnet18", 64, 16, 2,
    )  # fmt: skip
    assert cfg.train.freeze_backbone_epochs == 0 and cfg.train.optimizer == "adamw"
    model = build_model_for(cfg)
    assert isinstance(model, AVSegFormer)
    assert model.head.query_generator.query.num_embeddings == 16
    out = model.eval()(torch.zeros(2, 3, 96, 96), torch.zeros(2, 128))
    assert out.logits.shape == (2, 1, 96, 96) and out.mask_feature.shape == (2, 64, 24, 24)
    tpavi = C.synthetic(C.preset("s4"))
    assert tpavi.model.num_queries == 300 and isinstance(build_model_for(tpavi), AVSModel)


def test_configs_without_the_method_fields_still_load():
    """A checkpoint's stored config from before `method` / the AVSegFormer sizes /
    `optimizer` / `freeze_backbone_epochs` existed: the TPAVI defaults."""
    old = C.to_dict(C.preset("ms3"))
    for key in ("method", "num_queries", "encoder_layers", "decoder_layers", "generator_layers",
                "ffn_dim", "generator_ffn_dim", "mlp_dim"):  # fmt: skip
        del old["model"][key]
    del old["train"]["optimizer"], old["train"]["freeze_backbone_epochs"]
    del old["train"]["loss"]["mix_loss_weight"]
    assert C.from_dict(old) == C.preset("ms3")
    cfg = C.preset("avss", method="avsegformer")
    assert C.from_dict(C.to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="use avsbench.checkpoints.build_model_for"):
        from avsbench.models.avs import build_model_from_config

        build_model_from_config(cfg.model)
