"""COMBO checkpoints both ways: every published layout (tests/golden/vct/state_dicts/combo_*.tsv)
loads into the network it describes with nothing missing or left over and comes back with the
same names and shapes; values survive the round trip on small networks; the detector tells a
COMBO file (detectron2 wrapper or flat) from VCT's and AVSegFormer's and reads its
architecture; a file that does not fit is refused in one line naming the keys."""

from __future__ import annotations

import pytest
import torch

import avsbench
from avsbench import checkpoints
from avsbench.models.combo import SPEC
from avsbench.models.combo.detector import OfficialCOMBO, is_combo_state_dict, read_architecture
from avsbench.models.combo.model import build_combo
from avsbench.models.combo.official_names import (
    d2_resnet_to_timm,
    load_official_state_dict,
    timm_resnet_to_d2,
    to_official_state_dict,
)
from tests.golden_files import VCT_STATE_DICTS
from tests.models.combo.combo_helpers import TAGS, empty_model, meta_state_dict, read_layout

TINY = dict(
    num_queries=4, hidden_dim=32, decoder_layers=2, encoder_layers=1, heads=4, points=2,
    decoder_ffn_dim=24, encoder_ffn_dim=24, audio_hidden_dim=16,
)  # fmt: skip


def _groups(keys) -> list[str]:
    """The top-level groups of a state dict, in order of first appearance."""
    seen: list[str] = []
    for key in keys:
        group = key.split(".")[0]
        if group not in seen:
            seen.append(group)
    return seen


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_every_published_layout_loads_and_comes_back(tag):
    model = empty_model(tag, device="meta")
    sd = meta_state_dict(tag)
    report = load_official_state_dict(model, sd)
    assert report.loaded == len(model.state_dict())
    assert report.dropped == ["criterion.empty_weight"]
    assert sorted(report.vggish_state) == sorted(avsbench.VGGish().state_dict())

    back = to_official_state_dict(model, vggish_state=report.vggish_state)
    assert sorted(back) == sorted(sd)
    assert all(tuple(back[k].shape) == tuple(sd[k].shape) for k in sd)
    assert _groups(back) == _groups(name for name, _, _ in read_layout(tag))


@pytest.mark.parametrize("backbone", ["resnet18", "pvt_v2_b0"])
def test_values_survive_the_round_trip(backbone):
    torch.manual_seed(0)
    source = build_combo("avss", backbone, **TINY)
    with torch.no_grad():
        for p in source.state_dict().values():
            p.copy_(torch.randn_like(p) if p.is_floating_point() else p)
    official = {k: v.clone() for k, v in to_official_state_dict(source).items()}
    expected_weight = torch.tensor([1.0] * 71 + [0.1])  # no-object weight 0.1
    assert torch.equal(official.pop("criterion.empty_weight"), expected_weight)
    target = build_combo("avss", backbone, **TINY)
    report = load_official_state_dict(target, {"model": official, "iteration": 3})
    assert report.dropped == []  # a file without criterion.* loads too
    own, loaded = source.state_dict(), target.state_dict()
    assert all(torch.equal(own[k], loaded[k]) for k in own)


def test_detectron2_resnet_names_both_ways():
    pairs = {
        "stem.conv1.weight": "conv1.weight",
        "stem.conv1.norm.running_var": "bn1.running_var",
        "res2.0.shortcut.weight": "layer1.0.downsample.0.weight",
        "res2.0.shortcut.norm.bias": "layer1.0.downsample.1.bias",
        "res4.5.conv3.norm.weight": "layer3.5.bn3.weight",
        "res5.2.conv2.weight": "layer4.2.conv2.weight",
    }
    for d2, timm_name in pairs.items():
        assert d2_resnet_to_timm(d2) == timm_name
        assert timm_resnet_to_d2(timm_name) == d2
    assert d2_resnet_to_timm("res6.0.conv1.weight") is None


def test_the_detector_reads_every_published_layout():
    detector = SPEC.detectors["official_combo"]
    for tag, (setting, backbone, fusion) in TAGS.items():
        sd = meta_state_dict(tag)
        wrapped = {"model": sd, "iteration": 89999, "scheduler": {"last_epoch": 1}}
        assert detector.matches(wrapped) and detector.matches(sd)
        found = read_architecture(wrapped)
        assert (found.backbone, found.fusion) == (backbone, fusion)
        assert found.setting == ("avss" if setting == "avss" else "s4")
        assert (found.num_queries, found.hidden_dim, found.decoder_layers) == (100, 256, 9)
        assert (found.encoder_layers, found.points, found.audio_hidden_dim) == (6, 4, 4096)
        assert detector.vggish_state(wrapped).keys() == avsbench.VGGish().state_dict().keys()


def test_the_detector_refuses_vct_and_other_methods():
    vct = {
        line.split("\t")[0]: torch.empty(
            [int(s) for s in line.split("\t")[1].strip("[]").split(", ") if s], device="meta"
        )
        for line in (VCT_STATE_DICTS / "vct_s4_swinb.tsv").read_text().splitlines()
        if line.strip()
    }
    assert not is_combo_state_dict(vct)  # same code base, 512-wide audio input
    tiny = build_combo("s4", "resnet18", **TINY)
    assert not is_combo_state_dict(tiny.state_dict())  # the project's own names
    assert not is_combo_state_dict({"model": {}}) and not is_combo_state_dict([1, 2])


def test_a_detected_file_builds_its_model_and_loads(tmp_path):
    source = build_combo("s4", "resnet18", fusion="MHA-None", **TINY)
    path = tmp_path / "model_best.pth"
    torch.save({"model": to_official_state_dict(source), "iteration": 12}, path)
    loaded = checkpoints.load(path)
    assert loaded.report.kind == "official_combo"
    assert loaded.config.model.arch.fusion == "MHA-None"
    assert loaded.config.model.backbone == "resnet18"
    own = source.state_dict()
    assert all(torch.equal(own[k], v) for k, v in loaded.model.state_dict().items())


def test_a_file_that_does_not_fit_is_refused_in_one_line():
    model = build_combo("s4", "resnet18", **TINY)
    sd = to_official_state_dict(model)
    broken = dict(sd)
    del broken["sem_seg_head.predictor.query_embed.weight"]
    broken["sem_seg_head.predictor.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_official_state_dict(model, broken)
    message = str(err.value)
    assert "\n" not in message
    assert "missing 1: sem_seg_head.predictor.query_embed.weight" in message
    assert "unexpected 1: sem_seg_head.predictor.extra.weight" in message
    wrong = dict(sd, **{"sem_seg_head.predictor.query_embed.weight": torch.zeros(5, 32)})
    with pytest.raises(ValueError, match=r"query_embed.weight: checkpoint \(5, 32\)"):
        load_official_state_dict(model, wrong)
    assert isinstance(OfficialCOMBO().description, str)
