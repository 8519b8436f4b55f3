"""The Mask2Former family's optimizer (COMBO, VCT): weight decay 0 for the parameters of
normalisation modules, embeddings and Swin's relative-position tables, 0.05 for the rest, the
backbones at lr x 0.1 (Mask2Former's build_optimizer, as COMBO's and VCT's configs set it)."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from avsbench.engine.optim import MethodHooks, build_optimizer
from avsbench.models import registry
from avsbench.models.registry import build_model_for

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)


def _expected_exempt(model: nn.Module) -> set[str]:
    """Names of the parameters with decay 0, by a walk over the module names (independent of
    the library's rule, which works on module objects)."""
    modules = dict(model.named_modules())
    names = set()
    for name, _ in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if isinstance(modules[owner], NORMS) or leaf == "relative_position_bias_table":
            names.add(name)
    return names


@pytest.mark.parametrize("method", ["combo", "vct"])
def test_norms_embeddings_and_position_tables_get_no_weight_decay(method):
    published = registry.preset("s4", method)  # the recipe: AdamW 0.05, backbones x 0.1
    cfg = dataclasses.replace(registry.synthetic(published), train=published.train)
    model = build_model_for(cfg)
    optimizer = build_optimizer(model, cfg, MethodHooks.of(registry.method_spec(method)))
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {(g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    # COMBO's ResNet has frozen BatchNorm (no parameters); VCT's Swin has LayerNorms
    backbone_norms = {(1e-5, 0.0)} if method == "vct" else set()
    assert decay == {(1e-4, 0.05), (1e-4, 0.0), (1e-5, 0.05)} | backbone_norms
    exempt = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0
              for p in g["params"]}  # fmt: skip
    assert exempt == _expected_exempt(model)
    assert any(n.endswith("query_feat.weight") for n in exempt)
    assert not any(n.endswith("pixel_decoder.transformer.level_embed") for n in exempt)
    if method == "vct":
        assert any(n.endswith("relative_position_bias_table") for n in exempt)
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
