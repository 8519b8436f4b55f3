"""Official checkpoints <-> project models, both ways, for every published layout; the
architecture read off the keys."""

from __future__ import annotations

import re

import pytest
import torch

from avsbench.models.registry import build_model
from avsbench.models.tpavi.official_names import (
    load_official_state_dict,
    looks_official,
    official_architecture,
    pvt_original_to_timm,
    pvt_timm_to_original,
    to_official_state_dict,
)
from tests.golden_files import read_tsv
from tests.state_dict_files import compact_state_dict

LAYOUTS = {  # tsv -> (setting, backbone)
    "avs_s4_resnet.tsv": ("s4", "resnet50"),
    "avs_ms3_resnet.tsv": ("ms3", "resnet50"),
    "avss_resnet.tsv": ("avss", "resnet50"),
    "avs_s4_pvt.tsv": ("s4", "pvt_v2_b5"),
    "avs_ms3_pvt.tsv": ("ms3", "pvt_v2_b5"),
    "avss_pvt.tsv": ("avss", "pvt_v2_b5"),
}
UNUSED = re.compile(r"^resnet\.layer[34]_2\.")


def check_every_tensor(model, sd):
    """Hand-written placements (independent of checkpoints.py) plus the full round trip."""
    stage_checks = {
        "conv4.conv2d_list.2.weight": model.projections[3].conv2d_list[2].weight,
        "conv1.conv2d_list.0.bias": model.projections[0].conv2d_list[0].bias,
        "tpavi_b3.theta.weight": model.tpavi_blocks["2"].theta.weight,
        "tpavi_b1.W_z.1.running_var": model.tpavi_blocks["0"].W_z[1].running_var,
        "tpavi_b4.align_channel.weight": model.tpavi_blocks["3"].align_channel.weight,
        "path1.resConfUnit1.conv1.weight": model.decoder.fusions[0].resConfUnit1.conv1.weight,
        "path4.resConfUnit2.conv2.bias": model.decoder.fusions[3].resConfUnit2.conv2.bias,
        "output_conv.4.weight": model.decoder.output_conv[4].weight,
    }
    body = model.visual.body
    if model.visual.name == "resnet50":
        stage_checks["resnet.layer3_1.5.conv2.weight"] = body.layer3[5].conv2.weight
        stage_checks["resnet.layer4_1.0.downsample.1.running_mean"] = (
            body.layer4[0].downsample[1].running_mean
        )
        stage_checks["resnet.bn1.num_batches_tracked"] = body.bn1.num_batches_tracked
    else:
        params = dict(body.named_parameters())
        stage_checks["encoder_backbone.block3.17.attn.kv.weight"] = params[
            "stages_2.blocks.17.attn.kv.weight"
        ]
        stage_checks["encoder_backbone.patch_embed2.proj.weight"] = params[
            "stages_1.downsample.proj.weight"
        ]
        stage_checks["encoder_backbone.norm4.bias"] = params["stages_3.norm.bias"]
    for key, tensor in stage_checks.items():
        assert torch.equal(tensor, sd[key]), key

    back = to_official_state_dict(model)
    assert back.keys() == sd.keys()  # exactly the published layout, unused branch included
    for key, value in sd.items():
        if UNUSED.match(key):
            # written as a copy of the used branch (what the published initialisation gives)
            used = key.replace("layer3_2", "layer3_1").replace("layer4_2", "layer4_1")
            assert torch.equal(back[key], back[used])
        else:
            assert torch.equal(back[key], value), key


def _load(layout):
    setting, backbone = LAYOUTS[layout]
    # uninitialised CPU tensors (PVT-v2-b5's random initialisation takes ~10 s): the loader
    # refuses a state dict with a missing tensor and every tensor is compared below
    with torch.device("meta"):
        model = build_model(setting, backbone)
    model = model.to_empty(device="cpu")
    sd = compact_state_dict(read_tsv(layout), seed=7)  # distinct values, 2 MB of random numbers
    report = load_official_state_dict(model, sd)
    dropped = sorted(k for k in sd if UNUSED.match(k))
    assert sorted(report.dropped) == dropped
    assert report.loaded == len(sd) - len(dropped) == len(model.state_dict())
    check_every_tensor(model, sd)
    return model, sd


@pytest.mark.slow
@pytest.mark.parametrize("layout", [k for k in LAYOUTS if "resnet" in k])
def test_resnet_layouts(layout):
    _load(layout)


@pytest.mark.slow
@pytest.mark.parametrize("layout", [k for k in LAYOUTS if "pvt" in k])
def test_pvt_layouts(layout):
    _load(layout)


def test_pvt_name_mapping_is_timms_and_invertible():
    """Original -> timm goes through timm's checkpoint_filter_fn; our inverse undoes it."""
    original = [k for k, _ in read_tsv("pvt_v2_b5_original.tsv")]
    forward = pvt_original_to_timm(original)
    assert forward["block3.39.mlp.dwconv.dwconv.bias"] == "stages.2.blocks.39.mlp.dwconv.bias"
    assert forward["patch_embed1.proj.weight"] == "patch_embed.proj.weight"
    assert forward["patch_embed3.norm.weight"] == "stages.2.downsample.norm.weight"
    assert forward["norm2.bias"] == "stages.1.norm.bias"
    assert len(set(forward.values())) == len(original)
    assert all(pvt_timm_to_original(forward[k]) == k for k in original)


@pytest.fixture(scope="module")
def small_avss():
    """A ResNet-18 AVSS model with its official-layout state dict (fast)."""
    torch.manual_seed(0)
    model = build_model("avss", "resnet18", decoder_channels=32)
    return model, to_official_state_dict(model)


def test_round_trip_small(small_avss):
    model, sd = small_avss
    assert "resnet.layer3_1.0.conv1.weight" in sd and "tpavi_b2.W_z.1.weight" in sd
    assert "tpavi_b1.align_channel.bias" not in sd  # AVSS: no bias
    other = build_model("avss", "resnet18", decoder_channels=32)
    cloned = {k: v.clone() + 1 if v.is_floating_point() else v.clone() for k, v in sd.items()}
    load_official_state_dict(other, cloned)
    for key, value in to_official_state_dict(other).items():
        assert torch.equal(value, cloned[key]), key
    # and the functions are the same
    frames, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128)
    model.eval(), other.eval()
    load_official_state_dict(other, sd)
    with torch.no_grad():
        assert torch.equal(model(frames, audio).logits, other(frames, audio).logits)


def test_data_parallel_prefix(small_avss):
    model, sd = small_avss
    prefixed = to_official_state_dict(model, prefix="module.")
    assert all(k.startswith("module.") for k in prefixed)
    assert looks_official(prefixed)
    report = load_official_state_dict(model, prefixed)
    assert report.stripped_prefix == "module."


def test_looks_official(small_avss):
    model, sd = small_avss
    assert looks_official(sd)
    assert not looks_official(model.state_dict())
    assert not looks_official({"conv1.weight": torch.zeros(1)})


def test_errors_list_keys(small_avss):
    model, sd = small_avss
    extra = dict(sd, **{"tpavi_b1.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected 1: tpavi_b1.extra.weight"):
        load_official_state_dict(model, extra)
    missing = {k: v for k, v in sd.items() if k != "path2.resConfUnit1.conv2.bias"}
    with pytest.raises(ValueError, match=r"missing 1: path2.resConfUnit1.conv2.bias"):
        load_official_state_dict(model, missing)
    wrong = dict(sd, **{"output_conv.4.weight": torch.zeros(1, 4, 1, 1)})
    with pytest.raises(ValueError, match=r"output_conv.4.weight: checkpoint \(1, 4, 1, 1\)"):
        load_official_state_dict(model, wrong)
    # an S4/MS3 model (align_channel with bias) refuses an AVSS checkpoint, saying why
    s4_model = build_model("s4", "resnet18", decoder_channels=32, num_classes=71)
    with pytest.raises(
        ValueError, match=r"(?s)missing 4: tpavi_b1.align_channel.bias.*align_bias=False"
    ):
        load_official_state_dict(s4_model, sd)


def test_other_backbones_have_no_official_layout():
    model = build_model("s4", "convnext_atto", decoder_channels=16, tpavi_stages=())
    with pytest.raises(ValueError, match="ResNet.*PVT-v2.*convnext_atto"):
        to_official_state_dict(model)


@pytest.mark.parametrize(
    "tsv, expected",
    [
        ("avs_s4_resnet.tsv", ("resnet50", 256, (0, 1, 2, 3), True, 1)),
        ("avs_ms3_pvt.tsv", ("pvt_v2_b5", 256, (0, 1, 2, 3), True, 1)),
        ("avss_resnet.tsv", ("resnet50", 256, (0, 1, 2, 3), False, 71)),
        ("avss_pvt.tsv", ("pvt_v2_b5", 256, (0, 1, 2, 3), False, 71)),
    ],
)
def test_official_architecture_is_read_off_the_keys(tsv, expected):
    state = {"module." + name: torch.empty(shape, device="meta") for name, shape in read_tsv(tsv)}
    ch = official_architecture(state)  # DataParallel form
    fields = ("backbone", "arch.decoder_channels", "arch.tpavi_stages", "arch.align_bias")
    got = tuple(ch[f"model.{k}"] for k in (*fields, "num_classes"))
    assert got == expected
    del_stages = {k: v for k, v in state.items() if not k.startswith("module.tpavi_b2")}
    assert official_architecture(del_stages)["model.arch.tpavi_stages"] == (0, 2, 3)
