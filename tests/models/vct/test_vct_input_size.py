"""VCT's input size as an architecture field (`VCTArch.image_size`): the query mixer is sized
from it, a small VCT trains at 64 / 96 px, and a checkpoint made for another size (a
released file: 384 x 384, a 96 x 96 mixer) is refused with one line, by the loader and by
the config check, and taken when the sizes match."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

from avsbench import config as C
from avsbench.models.vct import build_vct
from avsbench.models.vct import config as vct_config
from avsbench.models.vct.config import VCTArch
from avsbench.models.vct.official_names import (
    OfficialVCT,
    load_official_state_dict,
    read_architecture,
    to_official_state_dict,
)
from tests.models.vct.vct_helpers import read_layout


def _small_cfg(setting: str = "s4") -> C.Config:
    return vct_config.synthetic(C.synthetic_base(vct_config.preset(setting)))


def _published_layout(tag: str = "vct_s4_swinb") -> dict[str, torch.Tensor]:
    """A released file's tensors as meta tensors (index buffers: the real window-12 index)."""
    index = get_relative_position_index(12, 12).to(torch.int64)
    return {
        name: index
        if name.endswith("relative_position_index")
        else torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
        for name, shape, dtype in read_layout(tag)
    }


@pytest.mark.parametrize("size", [64, 96])
def test_a_small_vct_trains_at_its_own_size(size: int) -> None:
    torch.manual_seed(0)
    arch = dataclasses.replace(_small_cfg().model.arch, image_size=size)
    model = build_vct("s4", arch=arch).train()
    mixer = model.sem_seg_head.predictor.visual_query_block.query_mixer.layers[0]
    assert mixer.in_features == (size // 4) ** 2 == arch.mixer_pixels
    frames, maskige = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    out = model(frames, torch.rand(2, 512, 6, 4), None, maskige=maskige)
    assert out.pred_masks.shape == (2, 16, size // 4, size // 4)
    assert out.logits.shape == (2, 1, 224, 224)  # still scored at VCT's 224
    (out.pred_masks.sigmoid().mean() + out.pred_logits.softmax(-1)[..., 0].mean()).backward()
    for name, param in [
        ("query mixer", mixer.weight),
        ("swin patch embedding", model.visual.backbone.body.patch_embed.proj.weight),
    ]:
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    with pytest.raises(ValueError, match=rf"this VCT works at {size} x {size} only") as err:
        model(frames[..., :32, :32], torch.rand(2, 512, 6, 4), None, maskige=maskige[..., :32, :32])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("size", [0, 80, 100])
def test_a_size_the_swin_cannot_stride_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match=rf"image_size = {size} is not a positive multiple of 32"):
        build_vct("s4", arch=VCTArch(image_size=size))


def test_a_released_layout_is_refused_by_a_model_of_another_size_in_one_line() -> None:
    layout = _published_layout()
    with torch.device("meta"):
        at_96 = build_vct("s4", arch=VCTArch(image_size=96))
        at_384 = build_vct("s4")
    with pytest.raises(ValueError) as err:
        load_official_state_dict(at_96, {"model": layout, "iteration": 44999})
    assert str(err.value) == (
        "the VCT checkpoint's query mixer takes 9216 mask-feature pixels, this model's 576 "
        "(96 x 96 inputs): set data.image_size and model.arch.image_size to 384"
    )
    assert read_architecture(layout).arch.image_size == 384  # the size read off the mixer
    report = load_official_state_dict(at_384, {"model": layout, "iteration": 44999})
    assert report.dropped == ["criterion.empty_weight"]


def test_the_detector_s_config_takes_the_file_s_size_and_the_check_refuses_another() -> None:
    """The file's mixer fixes the input size, over a user's config too (test.sh --synthetic
    --weights released.pth reads 384-px frames); a config contradicting it is refused."""
    detector = OfficialVCT()
    layout = _published_layout()
    alone = detector.config(layout, None)  # no user config: the file's size
    assert alone.data.image_size == alone.model.arch.image_size == 384
    vct_config.check(alone)
    small = _small_cfg()  # the user asks 64 px (test.sh --synthetic --weights released.pth)
    asked = detector.config(layout, small)
    assert small.data.image_size == 64
    assert asked.model.arch.image_size == 384 and asked.data.image_size == 384
    vct_config.check(asked)
    with pytest.raises(ValueError) as err:
        vct_config.check(C.override(asked, {"data.image_size": 64}))
    assert str(err.value).startswith(
        "this VCT works at 384 x 384 only (data.image_size = 64): its query mixer takes the "
        "96 x 96 mask-feature pixels of that size; set data.image_size to 384"
    )
    assert "\n" not in str(err.value)


def test_a_small_file_round_trips_with_its_size_and_refuses_a_larger_model() -> None:
    cfg = _small_cfg("ms3")
    source = build_vct("ms3", arch=cfg.model.arch)
    exported = to_official_state_dict(source)
    found = OfficialVCT().config(exported, None)
    assert found.data.image_size == found.model.arch.image_size == 64
    vct_config.check(found)
    target = build_vct("ms3", arch=dataclasses.replace(cfg.model.arch, image_size=96))
    with pytest.raises(ValueError, match=r"takes 256 mask-feature pixels, this model's 576 "):
        load_official_state_dict(target, exported)
