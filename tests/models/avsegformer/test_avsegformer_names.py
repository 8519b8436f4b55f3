"""Released AVSegFormer checkpoints <-> project models, both ways, for every published layout."""

from __future__ import annotations

import pytest
import torch

import avsbench
from avsbench.models.avsegformer.official_names import (
    is_avsegformer_state_dict,
    read_architecture,
)
from tests.models.avsegformer.avsegformer_helpers import (
    LAYOUTS,
    TINY,
    UNUSED,
    empty_model,
    random_state_dict,
    read_layout,
)


def check_placements(model, sd):
    """Hand-written official name -> project tensor pairs (independent of official_names.py)."""
    head = model.head
    pairs = {
        "head.transformer.encoder.layers.3.self_attn.sampling_offsets.weight": (
            head.encoder.layers[3].self_attn.sampling_offsets.weight
        ),
        "head.transformer.encoder.layers.5.norm2.bias": head.encoder.layers[5].norm2.bias,
        "head.transformer.decoder.layers.2.cross_attn.in_proj_bias": (
            head.decoder.layers[2].cross_attn.in_proj_bias
        ),
        "head.query_generator.layers.4.ffn.2.weight": head.query_generator.layers[4].ffn[2].weight,
        "head.query_generator.query.weight": head.query_generator.query.weight,
        "head.fusion_block.kv_proj.weight": head.mixer.kv_proj.weight,
        "head.in_proj.2.1.bias": head.in_proj[2][1].bias,
        "head.mlp.layers.1.weight": head.mlp.layers[1].weight,
        "head.out_conv.1.weight": head.out_conv[1].weight,
        "head.fc.4.weight": head.fc[4].weight,
        "head.level_embed": head.level_embed,
        "audio_proj.bias": model.audio_proj.bias,
    }
    body = model.visual.body
    if model.visual.name == "resnet50":
        pairs["backbone.layer3_1.5.conv2.weight"] = body.layer3[5].conv2.weight
        pairs["backbone.layer4_1.0.downsample.1.running_mean"] = (
            body.layer4[0].downsample[1].running_mean
        )
        pairs["backbone.bn1.num_batches_tracked"] = body.bn1.num_batches_tracked
    else:
        params = dict(body.named_parameters())
        pairs["backbone.block3.17.attn.kv.weight"] = params["stages_2.blocks.17.attn.kv.weight"]
        pairs["backbone.patch_embed2.proj.weight"] = params["stages_1.downsample.proj.weight"]
        pairs["backbone.block4.2.mlp.dwconv.dwconv.bias"] = params[
            "stages_3.blocks.2.mlp.dwconv.bias"
        ]
        pairs["backbone.norm4.bias"] = params["stages_3.norm.bias"]
    for key, tensor in pairs.items():
        assert torch.equal(tensor, sd[key]), key


def _load_layout(stem):
    setting, backbone = LAYOUTS[stem]
    model = empty_model(setting, backbone)  # every tensor comes from `sd`
    sd = random_state_dict(stem, seed=7)
    report = avsbench.load_official_state_dict(model, sd)

    unused = [k for k in sd if UNUSED.match(k)]
    vggish = [k for k in sd if k.startswith("vggish.")]
    assert sorted(report.dropped) == sorted(unused)
    assert any(k.startswith("head.fpn.") for k in unused)
    assert any(k.startswith("head.attn_fc.") for k in unused)
    assert any(k.startswith("backbone.layer3_2.") for k in unused) == (backbone == "resnet50")
    assert report.loaded == len(sd) - len(unused) - len(vggish) == len(model.state_dict())
    check_placements(model, sd)

    # VGGish's tensors are handed over in the project VGGish's names
    vggish_model = avsbench.VGGish()
    vggish_model.load_state_dict(report.vggish_state, strict=True)
    assert torch.equal(vggish_model.embeddings[4].weight, sd["vggish.embeddings.4.weight"])

    # back to the published layout: every key, in the published order, same shapes, dtypes, values
    back = avsbench.to_official_state_dict(
        model, vggish_state=report.vggish_state, unused_state=report.unused_state
    )
    rows = read_layout(stem)
    assert list(back) == [name for name, _, _ in rows]
    for name, shape, dtype in rows:
        assert tuple(back[name].shape) == shape and str(back[name].dtype) == f"torch.{dtype}"
        assert torch.equal(back[name], sd[name]), name

    # without the originals: unused tensors get defaults, VGGish is left out on request
    default = avsbench.to_official_state_dict(model)
    assert set(default) == {name for name, _, _ in rows if not name.startswith("vggish.")}
    for key in unused:
        if key.startswith("backbone."):  # a copy of the used branch
            used = key.replace("layer3_2", "layer3_1").replace("layer4_2", "layer4_1")
            assert torch.equal(default[key], default[used])
        else:
            assert not default[key].any() and default[key].shape == sd[key].shape
    return model, sd


def test_ms3_layouts_are_the_s4_layouts():
    """S4 and MS3 release one architecture: the layout tests below load S4 and AVSS."""
    for backbone in ("res50", "pvt2"):
        assert read_layout(f"ms3_{backbone}") == read_layout(f"s4_{backbone}")


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["s4_res50", "avss_res50", "s4_pvt2", "avss_pvt2"])
def test_released_layouts(stem):
    _load_layout(stem)


@pytest.mark.parametrize("stem", list(LAYOUTS))
def test_read_architecture_of_every_release(stem):
    setting, backbone = LAYOUTS[stem]
    sd = {name: torch.empty(shape) for name, shape, _ in read_layout(stem)}
    assert is_avsegformer_state_dict(sd)
    arch = read_architecture(sd)
    # S4 and MS3 share one architecture: a 1-class checkpoint reads as "s4"
    assert arch.setting == ("avss" if setting == "avss" else "s4")
    assert arch.backbone == backbone
    assert arch.num_classes == (71 if setting == "avss" else 1)
    kwargs = arch.build_kwargs()
    assert kwargs == {
        "setting": arch.setting,
        "backbone": backbone,
        "num_classes": arch.num_classes,
        "embed_dim": 256,
        "num_queries": 300,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "generator_layers": 6,
        "num_points": 4,
        "ffn_dim": 2048,
        "generator_ffn_dim": 1024,
        "mlp_dim": 2048,
        "num_heads": 8,
    }
    prefixed = {f"module.{k}": v for k, v in sd.items()}  # DataParallel
    assert read_architecture(prefixed) == arch


@pytest.fixture(scope="module")
def tiny_avss():
    torch.manual_seed(0)
    model = avsbench.build_model("avss", "resnet18", method="avsegformer", **TINY).eval()
    return model, avsbench.to_official_state_dict(model)


def test_small_model_round_trip(tiny_avss):
    """A project model written in the published layout is recognised, rebuilt from its keys,
    loaded, and computes the same function."""
    model, sd = tiny_avss
    arch = read_architecture(sd)
    assert arch.backbone == "resnet18" and arch.setting == "avss"
    assert arch.build_kwargs() == {
        "setting": "avss",
        "backbone": "resnet18",
        "num_classes": 71,
        **{k: v for k, v in TINY.items() if k != "dropout"},
        "num_heads": 8,
    }
    other = avsbench.build_model(**arch.build_kwargs(), method="avsegformer")
    avsbench.load_official_state_dict(other, sd)
    frames, audio = torch.randn(2, 3, 64, 64), torch.randn(2, 128)
    with torch.no_grad():
        assert torch.equal(model(frames, audio).logits, other.eval()(frames, audio).logits)


def test_data_parallel_prefix(tiny_avss):
    model, _ = tiny_avss
    prefixed = avsbench.to_official_state_dict(model, prefix="module.")
    assert all(k.startswith("module.") for k in prefixed)
    report = avsbench.load_official_state_dict(model, prefixed)
    assert report.stripped_prefix == "module."


def test_errors_name_the_keys(tiny_avss):
    model, sd = tiny_avss
    missing = {k: v for k, v in sd.items() if k != "head.transformer.decoder.layers.1.norm2.bias"}
    with pytest.raises(
        ValueError, match=r"missing 1: head.transformer.decoder.layers.1.norm2.bias"
    ):
        avsbench.load_official_state_dict(model, missing)
    extra = dict(sd, **{"head.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected 1: head.extra.weight"):
        avsbench.load_official_state_dict(model, extra)
    wrong = dict(sd, **{"head.fc.4.weight": torch.zeros(1, 32, 1, 1)})
    with pytest.raises(ValueError, match=r"head.fc.4.weight: checkpoint \(1, 32, 1, 1\)"):
        avsbench.load_official_state_dict(model, wrong)
    with pytest.raises(ValueError, match="unused_state names tensors the published class lacks"):
        avsbench.to_official_state_dict(
            model, unused_state={"head.fpn.up4.1.weight": torch.zeros(1)}
        )


def test_not_avsegformer_state_dicts():
    tpavi = avsbench.build_model("s4", "resnet18", decoder_channels=16, tpavi_stages=())
    tpavi_sd = avsbench.to_official_state_dict(tpavi)
    assert not is_avsegformer_state_dict(tpavi_sd)
    assert not is_avsegformer_state_dict(["not", "a", "dict"])
    with pytest.raises(ValueError, match="not an AVSegFormer state dict"):
        read_architecture(tpavi_sd)
    with pytest.raises(TypeError, match="unexpected keyword argument 'vggish_state'"):
        avsbench.to_official_state_dict(tpavi, vggish_state={})


def test_unsupported_checkpoints_are_refused(tiny_avss):
    _, sd = tiny_avss
    three_classes = dict(sd, **{"head.fc.4.weight": torch.zeros(3, 32, 1, 1)})
    with pytest.raises(ValueError, match="3 classes"):
        read_architecture(three_classes)
    odd_resnet = {k: v for k, v in sd.items() if not k.startswith("backbone.layer1.1.")}
    with pytest.raises(
        ValueError, match=r"unsupported AVSegFormer backbone: ResNet with blocks \(1, 2, 2, 2\)"
    ):
        read_architecture(odd_resnet)


def test_other_backbones_have_no_official_layout():
    model = avsbench.build_model("s4", "convnext_atto", method="avsegformer", **TINY)
    with pytest.raises(ValueError, match="ResNet and PVT-v2 backbones only.*convnext_atto"):
        avsbench.to_official_state_dict(model)
