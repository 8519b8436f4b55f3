"""The Mask2Former training augmentation (avsbench/data/augment.py): one geometry per clip over
frames, masks and maskiges (a planted pattern), padding values, the scale choices, the
ColorAugSSD steps on known colours, and draws that depend on (seed, epoch, index) only: the
same with the frame cache, with DataLoader workers, and after a resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from avsbench.data import augment as A
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import imagenet_to_pixels
from avsbench.data.transforms import normalize_pixels
from avsbench.engine.resume import ResumableSampler
from avsbench.models.mask2former.targets import IGNORE_LABEL, semantic_targets


def test_short_edge_choices_are_the_published_list():
    # int(x * 0.1 * S), x = 5..20, as the configs' MIN_SIZE_TRAIN evaluates it
    assert A.short_edge_choices(224) == [
        112, 134, 156, 179, 201, 224, 246, 268, 291, 313, 336, 358, 380, 403, 425, 448,
    ]  # fmt: skip
    assert A.short_edge_choices(384) == [
        192, 230, 268, 307, 345, 384, 422, 460, 499, 537, 576, 614, 652, 691, 729, 768,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "h, w, short, expected",
    [
        (224, 224, 112, (112, 112)),
        (240, 320, 180, (180, 240)),  # aspect kept
        (320, 240, 179, (239, 179)),  # 238.67 rounds up
        (100, 1000, 448, (90, 896)),  # 448 x 4480 capped at a long edge of 896
    ],
)
def test_resized_shape(h, w, short, expected):
    assert A.resized_shape(h, w, short) == expected


def test_every_scale_is_drawn_and_crops_stay_inside():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(1000):
        geo = A.draw_geometry("mask2former", 224, 224, 224, rng)
        seen.add(geo.resize)
        y0, x0, h, w = geo.crop
        assert (h, w) == (min(224, geo.resize[0]), min(224, geo.resize[1]))
        assert 0 <= y0 <= geo.resize[0] - h and 0 <= x0 <= geo.resize[1] - w
    assert seen == {(c, c) for c in A.short_edge_choices(224)}


def expected_geometry(image: np.ndarray, geo: A.ClipGeometry, *, is_mask: bool) -> np.ndarray:
    """Resize (PIL), then crop, flip and pad by explicit pixel loops."""
    new_h, new_w = geo.resize
    resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample))
    y0, x0, h, w = geo.crop
    out = np.full((geo.pad_to, geo.pad_to, *image.shape[2:]), 255 if is_mask else 128, np.uint8)
    for y in range(h):
        for x in range(w):
            source_x = x0 + (w - 1 - x if geo.flip else x)
            out[y, x] = resized[y0 + y, source_x]
    return out


def planted_clip(t: int = 3, size: int = 64):
    """Grey frames and maskiges with a block pattern (0 / 255) and its 0/1 mask."""
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 2, (size // 8, size // 8)).astype(np.uint8)
    pattern = np.kron(blocks, np.ones((8, 8), np.uint8))  # [S, S] in {0, 1}
    grey = np.repeat((pattern * 255)[:, :, None], 3, axis=2)
    frames = np.stack([grey] * t)
    masks = np.stack([pattern] * t)
    return frames, masks, {"maskige": frames.copy()}


@pytest.mark.parametrize("seed", range(6))
def test_one_geometry_for_frames_masks_and_maskiges(seed):
    frames, masks, extras = planted_clip()
    geo = A.draw_geometry("mask2former", 64, 64, 64, np.random.default_rng(seed))
    out_f, out_m, out_x = A.augment_clip(
        "mask2former", 64, frames, masks, extras, np.random.default_rng(seed)
    )
    for i in range(len(frames)):
        assert np.array_equal(out_m[i], expected_geometry(masks[i], geo, is_mask=True))
        h, w = geo.crop[2:]
        for image in (out_f[i], out_x["maskige"][i]):
            # the colour jitter is monotone on grey: dark stays < 80 < bright
            content = image[:h, :w, 0]
            planted = out_m[i][:h, :w]
            inside = (planted == 1) | (planted == 0)
            agree = ((content > 80) == (planted == 1))[inside].mean()
            assert agree > 0.9, agree  # (bilinear blends the block edges)
            assert (image[h:] == 128).all() and (image[:, w:] == 128).all()  # pad untouched


def test_colour_is_drawn_per_image_like_detectron2():
    rng = np.random.default_rng(0)
    colourful = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    frames = np.stack([colourful[0]] * 4)
    out_f, _, out_x = A.augment_clip(
        "mask2former_color_flip", 32, frames, np.zeros((4, 32, 32), np.uint8),
        {"maskige": frames.copy()}, np.random.default_rng(3),
    )  # fmt: skip
    images = [*out_f, *out_x["maskige"]]
    distinct = {image.tobytes() for image in images}
    assert len(distinct) > 4  # same input, independent colour draws


class Scripted:
    """A stand-in generator returning scripted draws (integers, then uniforms)."""

    def __init__(self, coins, uniforms, ints=()):
        self.coins, self.uniforms, self.ints = list(coins), list(uniforms), list(ints)

    def integers(self, low, high=None):
        if high is None:  # a coin: integers(2)
            return self.coins.pop(0)
        return self.ints.pop(0)

    def uniform(self, low, high):
        value = self.uniforms.pop(0)
        assert low <= value <= high
        return value


def test_brightness_then_contrast_by_hand():
    grey = np.arange(0, 256, 15, dtype=np.uint8).reshape(1, -1, 1).repeat(3, axis=2)
    # brightness +10; order "contrast first"; contrast x1.2; saturation no; hue no
    out = A.color_aug_ssd(grey, Scripted([1, 1, 1, 0, 0], [10.0, 1.2]))
    for value, got in zip(grey[0, :, 0], out[0, :, 0]):
        step = min(255, int(value) + 10)
        assert got == min(255, int(step * 1.2))


def test_saturation_and_hue_on_pure_red():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    # no brightness; order "saturation, hue, contrast": saturation x0.5, hue no, contrast no
    half = A.color_aug_ssd(red, Scripted([0, 0, 1, 0, 0], [0.5]))
    assert half[0, 0].tolist() == [255, 128, 128]  # V 255, S 127
    # hue +60 (OpenCV units: 120 degrees): red -> green
    green = A.color_aug_ssd(red, Scripted([0, 0, 0, 1, 0], [], [60]))
    assert green[0, 0].tolist() == [0, 255, 0]


def test_flip_only_mode_keeps_the_size_and_flips_everything_alike():
    frames, masks, extras = planted_clip(t=2, size=32)
    for seed in range(8):
        flip = A.draw_geometry("mask2former_color_flip", 32, 32, 32, np.random.default_rng(seed))
        _, out_m, _ = A.augment_clip(
            "mask2former_color_flip", 32, frames, masks, extras, np.random.default_rng(seed)
        )
        wanted = masks[:, :, ::-1] if flip.flip else masks
        assert np.array_equal(out_m, wanted)


def test_mismatched_sizes_are_refused():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="maskige are"):
        A.augment_clip(
            "mask2former", 8, frames, np.zeros((2, 8, 8), np.uint8),
            {"maskige": np.zeros((2, 6, 8, 3), np.uint8)}, np.random.default_rng(0),
        )  # fmt: skip
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.check_augment("mask2former_crop")


# ---------------------------------------------------------------------------------------
# On the datasets
# ---------------------------------------------------------------------------------------
def padded_sample(dataset):
    """A (key, sample) whose draw pads (short edge below S)."""
    for epoch in range(50):
        sample = dataset[(0, epoch)]
        if (sample["masks"][0] == IGNORE_LABEL).any():
            return (0, epoch), sample
    raise AssertionError("no padded draw in 50 epochs")


def test_s4_train_padding_values_and_ignored_targets(s4_root):
    dataset = build_dataset("s4", s4_root, "train", augment="mask2former", augment_seed=7)
    assert isinstance(dataset, A.AugmentedDataset)
    _, sample = padded_sample(dataset)
    masks, frames = sample["masks"], sample["frames"]
    assert masks.dtype == torch.float32 and set(torch.unique(masks).tolist()) <= {0.0, 1.0, 255.0}
    pad = masks[0] == IGNORE_LABEL  # [S, S]
    grey = torch.from_numpy(normalize_pixels(np.full((3, 1, 1), 128, np.uint8)))[:, 0, 0]
    assert torch.equal(frames[:, :, pad].permute(0, 2, 1).reshape(-1, 3)[0], grey)
    assert (frames[:, :, pad] == grey[None, :, None]).all()
    # the padding is in no per-class target mask (Mask2Former semantic targets)
    rows, targets = semantic_targets("s4", masks, sample["gt_valid"])
    assert rows.tolist() == [0]
    assert set(targets[0].labels.tolist()) <= {0, 1}
    assert (targets[0].masks[:, pad] == 0).all()
    assert targets[0].masks.sum(0)[~pad].eq(1).all()  # every other pixel in one mask


def test_val_is_never_augmented_and_train_draws_differ_by_epoch(s4_root):
    plain = build_dataset("s4", s4_root, "val")
    asked = build_dataset("s4", s4_root, "val", augment="mask2former", augment_seed=7)
    assert not isinstance(asked, A.AugmentedDataset)
    assert torch.equal(plain[0]["frames"], asked[0]["frames"])
    train = build_dataset("s4", s4_root, "train", augment="mask2former", augment_seed=7)
    a, b, again = train[(0, 0)], train[(0, 1)], train[(0, 0)]
    assert not torch.equal(a["frames"], b["frames"])
    for key in ("frames", "masks", "audio"):
        assert torch.equal(a[key], again[key])
    assert torch.equal(a["audio"], b["audio"])  # the sound is never augmented
    other_seed = build_dataset("s4", s4_root, "train", augment="mask2former", augment_seed=8)
    assert not torch.equal(other_seed[(0, 0)]["frames"], a["frames"])


def test_frame_cache_serves_the_same_augmented_samples(s4_root, tmp_path):
    kwargs = {"augment": "mask2former", "augment_seed": 3}
    direct = build_dataset("s4", s4_root, "train", **kwargs)
    cached = build_dataset("s4", s4_root, "train", frame_cache=tmp_path / "fc", **kwargs)
    assert isinstance(cached, A.AugmentedDataset) and type(cached.inner).__name__ == (
        "FrameCachedDataset"
    )
    for epoch in range(3):
        one, two = direct[(0, epoch)], cached[(0, epoch)]
        for key in ("frames", "masks", "gt_valid", "audio"):
            assert torch.equal(one[key], two[key]), key


def test_avss_square_geometry_and_padding_frames(avss_root):
    flip = build_dataset("avss", avss_root, "train", augment="mask2former_color_flip")
    assert flip.inner.train_geometry == "crop"
    full = build_dataset("avss", avss_root, "train", augment="mask2former", augment_seed=1)
    assert full.inner.train_geometry == "square" and full.inner.cache_tag == "square"
    index = [uid for uid, _ in full.inner.rows].index("vidA_0")  # v1s: 5 real frames
    sample = full[(index, 0)]
    assert sample["masks"].dtype == torch.int64
    assert sample["frame_valid"].tolist() == [1.0] * 5 + [0.0] * 5
    assert (sample["frames"][5:] == 0).all() and (sample["masks"][5:] == 0).all()
    ids = set(torch.unique(sample["masks"][0]).tolist())
    assert ids <= {0, 1, 70, IGNORE_LABEL}


def test_pixels_round_trip_exactly():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    assert np.array_equal(imagenet_to_pixels(normalize_pixels(pixels)), pixels)


@pytest.mark.slow
def test_loader_draws_do_not_depend_on_workers_or_resume(s4_root):
    """The engine's sampler hands (index, epoch): 0 or 2 workers, and a pass that skips the
    first sample (a resume), give the same augmented batches."""
    dataset = build_dataset("s4", s4_root, "train", augment="mask2former", augment_seed=5)

    def batches(workers, skip=0, epoch=2):
        inner = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=1)
        sampler = ResumableSampler(inner, epoch_keys=dataset.epoch_keys)
        sampler.set_epoch(epoch)
        sampler.skip = skip
        loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers)
        return [b["frames"] for b in loader]

    torch.manual_seed(0)
    first = batches(0)
    torch.manual_seed(99)  # the global RNG plays no part
    assert all(torch.equal(a, b) for a, b in zip(first, batches(2), strict=True))
    assert len(dataset) == 1
    assert not torch.equal(first[0], batches(0, epoch=3)[0])


def test_only_the_train_command_augments(s4_root):
    from avsbench import config as C
    from avsbench.engine import setup
    from avsbench.engine.user_config import UserConfig
    from avsbench.models import registry

    cfg = C.override(registry.preset("s4", method="combo"), {"data.root": str(s4_root)})
    assert cfg.data.augment == "mask2former"
    user = UserConfig("s4")
    (tested,) = setup.build_datasets(cfg, user, ["train"])  # test.py --split train
    trained, val = setup.build_datasets(cfg, user, ["train", "val"], training=True)
    assert not isinstance(tested, A.AugmentedDataset) and not isinstance(val, A.AugmentedDataset)
    assert isinstance(trained, A.AugmentedDataset) and trained.seed == cfg.train.seed
    assert trained.mode == "mask2former" and trained.size == 224


def test_augment_flag_and_refusals():
    import dataclasses

    from avsbench.engine import options as O
    from avsbench.errors import SetupError
    from avsbench.models import registry

    args = O.build_train_parser("s4").parse_args(["--augment", "none"])
    assert O.train_overrides(args, "s4", "combo")["data.augment"] == "none"
    with pytest.raises(SystemExit):
        O.build_train_parser("s4").parse_args(["--augment", "crop"])
    cfg = registry.preset("s4", method="combo")
    bad = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment="crop"))
    with pytest.raises(SetupError, match="augmentation 'crop'"):
        O.check_model_config(bad)
