"""VCT's official names, both ways, on every published layout; the checkpoint detector."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

from avsbench.models.backbones.vggish import VGGish
from avsbench.models.vct import build_vct
from avsbench.models.vct.config import VCTArch
from avsbench.models.vct.official_names import (
    OfficialVCT,
    load_official_state_dict,
    read_architecture,
    to_official_state_dict,
)
from tests.models.vct.vct_helpers import SETTINGS, TAGS, read_layout


@functools.cache
def _meta_model(setting: str):
    """The full-size model without values (shapes and names only), once per setting."""
    with torch.device("meta"):
        return build_vct(setting)


def _layout_state(tag: str) -> dict[str, torch.Tensor]:
    """Every tensor of a published layout as a meta tensor (index buffers: the real index)."""
    index = get_relative_position_index(12, 12).to(torch.int64)
    state = {}
    for name, shape, dtype in read_layout(tag):
        if name.endswith("relative_position_index"):
            state[name] = index
        else:
            state[name] = torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    return state


@pytest.mark.parametrize("tag", TAGS)
def test_export_gives_the_published_layout_in_order(tag: str) -> None:
    model = _meta_model(SETTINGS[tag])
    with torch.device("meta"):
        vggish = VGGish().state_dict()
    exported = to_official_state_dict(model, vggish_state=vggish)
    assert [(k, tuple(v.shape)) for k, v in exported.items()] == [
        (name, shape) for name, shape, _ in read_layout(tag)
    ]
    empty = exported["criterion.empty_weight"]
    assert empty[-1].item() == pytest.approx(0.1) and bool((empty[:-1] == 1).all())


@pytest.mark.parametrize("tag", TAGS)
def test_every_published_tensor_loads_and_nothing_is_left(tag: str) -> None:
    model = _meta_model(SETTINGS[tag])
    report = load_official_state_dict(model, {"model": _layout_state(tag), "iteration": 44999})
    assert report.dropped == ["criterion.empty_weight"]
    indexes = sum(1 for name, _, _ in read_layout(tag) if "relative_position_index" in name)
    vggish = sum(1 for name, _, _ in read_layout(tag) if name.startswith("audio_backbone."))
    assert report.loaded == len(model.state_dict()) + indexes  # the Swin constants count
    assert report.loaded + len(report.dropped) + vggish == len(read_layout(tag))
    found = read_architecture(_layout_state(tag))
    assert found.setting == SETTINGS[tag]
    assert found.arch == VCTArch()  # the published sizes


def test_a_round_trip_keeps_every_value_and_vggish_goes_out() -> None:
    """Small real model: export -> load into a fresh one gives the same tensors."""
    from avsbench import config as C
    from avsbench.models.vct import config as vct_config

    arch = vct_config.synthetic(C.synthetic_base(vct_config.preset("avss"))).model.arch
    source, target = build_vct("avss", arch=arch), build_vct("avss", arch=arch)
    with torch.no_grad():
        source.logit_scale.fill_(1.25)
    vggish = {"features.0.weight": torch.ones(64, 1, 3, 3)}
    exported = to_official_state_dict(source, vggish_state=vggish, prefix="module.")
    wrapped = {"model": exported, "iteration": 7, "optimizer": {}, "scheduler": {}}
    detector = OfficialVCT()
    assert detector.matches(wrapped) and detector.matches(exported)
    load_official_state_dict(target, wrapped)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(
        detector.vggish_state(wrapped)["features.0.weight"], vggish["features.0.weight"]
    )
    cfg = detector.config(exported, None)
    assert cfg.model.method == "vct" and cfg.model.setting == "avss"
    # the sizes of the file; the drop-path rate (not in any shape) is the published one
    assert cfg.model.arch == dataclasses.replace(arch, drop_path_rate=0.3)


def test_a_file_without_criterion_loads_and_keeps_the_initial_scale() -> None:
    from avsbench import config as C
    from avsbench.models.vct import config as vct_config

    arch = vct_config.synthetic(C.synthetic_base(vct_config.preset("s4"))).model.arch
    source, target = build_vct("s4", arch=arch), build_vct("s4", arch=arch)
    exported = {k: v for k, v in to_official_state_dict(source).items() if "criterion" not in k}
    report = load_official_state_dict(target, exported)
    assert report.dropped == []
    assert float(target.logit_scale.detach()) == pytest.approx(2.6592600)  # log(1 / 0.07)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (
            lambda sd: sd.pop("sem_seg_head.predictor.query_feat.weight"),
            "1 missing (first: sem_seg_head.predictor.query_feat.weight)",
        ),
        (
            lambda sd: sd.__setitem__("sem_seg_head.extra.weight", torch.zeros(1)),
            "1 unexpected (first: sem_seg_head.extra.weight)",
        ),
        (lambda sd: sd.pop("backbone.norm3.weight"), "1 missing (first: backbone.norm3.weight)"),
    ],
)
def test_a_foreign_file_is_refused_in_one_line(edit, fragment: str) -> None:
    model = _meta_model("ms3")
    state = _layout_state("vct_ms3_swinb")
    edit(state)
    with pytest.raises(ValueError) as err:
        load_official_state_dict(model, state)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_an_s4_file_does_not_load_into_the_ms3_model() -> None:
    with pytest.raises(
        ValueError,
        match=r"unexpected \(first: sem_seg_head.predictor.visual_query_block.prototype.weight\)",
    ):
        load_official_state_dict(_meta_model("ms3"), _layout_state("vct_s4_swinb"))


def test_the_registry_knows_vct_and_its_detector() -> None:
    from avsbench.models import registry

    spec = registry.method_spec("vct")
    assert spec.audio_input == "conv_map"
    assert [e.key for e in spec.extra_inputs] == ["maskige"]
    assert "official_vct" in registry.official_detectors()


def test_a_released_style_file_loads_through_the_checkpoint_reader(tmp_path) -> None:
    """A detectron2 `model_best.pth` on disk (tiny sizes, trainer state included) is
    recognised, its architecture read off the keys, its weights and VGGish handed over; the
    same file cut short of one tensor is refused naming it."""
    from avsbench import checkpoints
    from avsbench import config as C
    from avsbench.errors import CheckpointError
    from avsbench.models.vct import config as vct_config

    arch = vct_config.synthetic(C.synthetic_base(vct_config.preset("ms3"))).model.arch
    source = build_vct("ms3", arch=arch)
    vggish = {k: torch.full_like(v, 0.5) for k, v in VGGish().state_dict().items()}
    state = to_official_state_dict(source, vggish_state=vggish)
    path = tmp_path / "model_best.pth"
    torch.save({"model": state, "iteration": 39999, "scheduler": {"last_epoch": 39999}}, path)

    loaded = checkpoints.load(path, expect_setting="ms3")
    assert loaded.report.kind == "official_vct" and loaded.config.model.method == "vct"
    assert loaded.report.dropped == ["criterion.empty_weight"]
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.vggish_state is not None and set(loaded.vggish_state) == set(vggish)

    del state["sem_seg_head.predictor.decoder_norm.bias"]
    torch.save({"model": state, "iteration": 1}, path)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load(path, expect_setting="ms3")
    message = str(err.value)
    assert str(path) in message and "sem_seg_head.predictor.decoder_norm.bias" in message
    assert "\n" not in message
