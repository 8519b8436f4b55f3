"""Visual encoders: timm stages, pretrained files users bring, clear errors."""

from __future__ import annotations

import time

import pytest
import timm
import torch
import torchvision

from avsbench.models.backbones.official_names import pvt_timm_to_original
from avsbench.models.backbones.visual import (
    VisualEncoder,
    build_visual_encoder,
    load_backbone_weights,
)
from tests.golden_files import read_tsv
from tests.state_dict_files import compact_state_dict, layout_only_state_dict


def test_four_stages_from_timm_feature_info():
    enc = VisualEncoder("resnet18")
    assert enc.channels == (64, 128, 256, 512)
    feats = enc(torch.randn(2, 3, 96, 64))
    assert [tuple(f.shape) for f in feats] == [
        (2, 64, 24, 16),
        (2, 128, 12, 8),
        (2, 256, 6, 4),
        (2, 512, 3, 2),
    ]
    with pytest.raises(ValueError, match="divisible by 32"):
        enc(torch.randn(1, 3, 100, 64))


def test_torchvision_resnet50_file_gives_torchvision_stage_outputs(tmp_path):
    """resnet50-19c8e357.pth layout: loaded values AND the function equal torchvision's."""
    sd = compact_state_dict(read_tsv("resnet50_torchvision.tsv"))  # a 2 MB file, not 100 MB
    path = tmp_path / "resnet50-19c8e357.pth"
    torch.save(sd, path)
    enc = build_visual_encoder("resnet50", weights=path).eval()
    assert torch.equal(enc.body.layer3[5].conv2.weight, sd["layer3.5.conv2.weight"])
    assert torch.equal(enc.body.bn1.running_var, sd["bn1.running_var"])

    ref = torchvision.models.resnet50()
    ref.load_state_dict(sd)
    ref.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        expected = []
        for layer in (ref.layer1, ref.layer2, ref.layer3, ref.layer4):
            y = layer(y)
            expected.append(y)
        got = enc(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_pvt_original_naming_small(tmp_path):
    """Original PVT names (patch_embed1, block1.0, norm1, dwconv.dwconv) load via timm's filter."""
    torch.manual_seed(0)
    full = timm.create_model("pvt_v2_b0").eval()
    original = {pvt_timm_to_original(k): v for k, v in full.state_dict().items()}
    assert (
        "block2.1.mlp.dwconv.dwconv.weight" in original and "patch_embed3.proj.weight" in original
    )
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save(original, path)
    enc = build_visual_encoder("pvt_v2_b0", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = full.forward_intermediates(x, intermediates_only=True)
        got = enc(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_timm_checkpoint_with_head(tmp_path):
    torch.manual_seed(1)
    full = timm.create_model("resnet18")
    path = tmp_path / "resnet18_timm.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    enc = VisualEncoder("resnet18")
    ignored = load_backbone_weights(enc, path)
    assert sorted(ignored) == ["fc.bias", "fc.weight"]
    assert torch.equal(enc.body.layer4[1].conv2.weight, full.layer4[1].conv2.weight)
    assert torch.equal(enc.body.layer2[0].downsample[0].weight, full.layer2[0].downsample[0].weight)


@pytest.mark.slow
def test_pvt_v2_b5_original_file(tmp_path):
    sd = compact_state_dict(read_tsv("pvt_v2_b5_original.tsv"))  # a 2 MB file, not 330 MB
    path = tmp_path / "pvt_v2_b5.pth"
    torch.save(sd, path)
    enc = build_visual_encoder("pvt_v2_b5", weights=path)
    assert enc.channels == (64, 128, 320, 512)
    body = dict(enc.body.named_parameters())
    assert torch.equal(
        body["stages_2.blocks.39.mlp.dwconv.weight"], sd["block3.39.mlp.dwconv.dwconv.weight"]
    )
    assert torch.equal(body["stages_3.downsample.proj.weight"], sd["patch_embed4.proj.weight"])
    assert torch.equal(body["patch_embed.norm.bias"], sd["patch_embed1.norm.bias"])
    assert torch.equal(body["stages_0.norm.weight"], sd["norm1.weight"])
    # every original tensor has a home: mapping back gives the file again
    back = {
        pvt_timm_to_original(enc.body_to_full_name(k)): v for k, v in enc.body.state_dict().items()
    }
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet50-19c8e357.pth.*not found|not found"):
        build_visual_encoder("resnet18", weights=tmp_path / "nope.pth")


def test_corrupted_file(tmp_path):
    path = tmp_path / "resnet50-19c8e357.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="cannot read .*resnet50-19c8e357.pth"):
        build_visual_encoder("resnet50", weights=path)


def test_mismatched_file_names_the_problem(tmp_path):
    path = tmp_path / "wrong.pth"
    resnet18 = timm.create_model("resnet18").state_dict()  # its names and shapes: a few bytes
    torch.save(layout_only_state_dict((k, tuple(v.shape)) for k, v in resnet18.items()), path)
    with pytest.raises(
        ValueError,
        match=r"shape mismatches \d+: layer1.0.conv1.weight: "
        r"file \(64, 64, 3, 3\) vs model \(64, 64, 1, 1\)",
    ) as info:
        build_visual_encoder("resnet50", weights=path)
    assert "wrong.pth" in str(info.value) and "\n  missing " in str(info.value)


def test_pretrained_without_file_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="pvt_v2_b5.pth.*pretrained_backbones"):
        build_visual_encoder("pvt_v2_b5", pretrained=True)
    assert time.perf_counter() - start < 1.0  # no network, no model built


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match=r"\['pvt_v2_b5', 'resnet50'\]"):
        VisualEncoder("resnet5O")
