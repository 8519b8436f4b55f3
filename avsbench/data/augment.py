"""Training augmentations of the Mask2Former family (COMBO, VCT), applied to a whole clip:
the frames, the GT masks and the extra inputs (maskiges) of a clip share one geometry.

The published pipelines (detectron2 0.6 dataset mappers of yannqi/COMBO-AVS and
spyflying/VCT_AVS, `models/data/dataset_mappers/*_semantic_dataset_mapper.py`; configs
`INPUT.*`) draw the transforms on the clip's first frame and apply them to every frame,
mask and maskige (`transforms.apply_image` / `apply_segmentation`):

    "mask2former"              ResizeShortestEdge to one of int(x * 0.1 * S), x = 5..20
                               (long edge at most 896; PIL bilinear, masks nearest), random
                               crop S x S (absolute: min(S, h) x min(S, w)), ColorAugSSD,
                               horizontal flip p 0.5, pad right/bottom to S x S (pixels 128,
                               GT 255 = ignored)        COMBO S4/MS3, VCT S4/MS3/AVSS
    "mask2former_color_flip"   ColorAugSSD and flip only                  COMBO AVSS
    "none"                     nothing (every other method)

ColorAugSSD (detectron2 `projects/PointRend/point_rend/color_augmentation.py`): brightness
+U(-32, 32) with p 0.5; then, in one of two orders chosen with p 0.5, contrast x U(0.5, 1.5),
saturation x U(0.5, 1.5) (in OpenCV's uint8 HSV) and hue + an integer in [-18, 18] (mod
180), each with p 0.5; every step truncates to uint8. Its random numbers are drawn inside
`apply_image`, so the published pipeline jitters the colours of EVERY image (each frame and
each maskige) with its own draw while the geometry is shared: kept here.

The maskige goes through `apply_image` like a frame (bilinear resize, colour jitter, pad
128). The masks are padded with 255, which the Mask2Former targets ignore (targets.py).

Randomness: one `numpy.random.Generator` per clip draw, seeded with (seed, epoch, index)
(`AugmentedDataset`): the same draws whatever the number of DataLoader workers or
processes, and after a resume (engine/resume.py hands the datasets the epoch with each
index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

AUGMENTS = ("none", "mask2former", "mask2former_color_flip")
SCALE_TENTHS = tuple(range(5, 21))  # short edge int(x * 0.1 * S), x = 5..20
MAX_SIZE = 896  # MAX_SIZE_TRAIN: the long edge after the resize
PAD_PIXEL = 128  # image padding value (uint8), frames and maskiges
IGNORE_LABEL = 255  # GT padding value (targets.IGNORE_LABEL)
FLIP_PROB = 0.5
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # OpenCV hue: 0..179


def check_augment(name: str) -> str:
    """`name` if it is one of AUGMENTS, else ValueError listing them."""
    if name not in AUGMENTS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {list(AUGMENTS)}")
    return name


def short_edge_choices(size: int) -> list[int]:
    """The short edges of ResizeShortestEdge for crop size `size`: int(x * 0.1 * size)."""
    return [int(x * 0.1 * size) for x in SCALE_TENTHS]


def resized_shape(h: int, w: int, short_edge: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """(new_h, new_w): the short edge to `short_edge`, aspect kept, the long edge capped at
    `max_size`, both rounded half up (detectron2's `ResizeShortestEdge.get_output_shape`)."""
    scale = short_edge / min(h, w)
    new_h, new_w = (short_edge, scale * w) if h < w else (scale * h, short_edge)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


@dataclass(frozen=True)
class ClipGeometry:
    """One clip's geometry draw. resize: (new_h, new_w) or None; crop: (y0, x0, h, w) of
    the resized image or None; flip: horizontal; pad_to: output side or None."""

    resize: tuple[int, int] | None
    crop: tuple[int, int, int, int] | None
    flip: bool
    pad_to: int | None


def draw_geometry(
    mode: str, height: int, width: int, size: int, rng: np.random.Generator
) -> ClipGeometry:
    """The geometry of `mode` for images of height x width, output side `size`."""
    if mode == "mask2former_color_flip":
        return ClipGeometry(None, None, bool(rng.random() < FLIP_PROB), None)
    if mode != "mask2former":
        raise ValueError(f"no geometry for augmentation {mode!r}")
    short = int(rng.choice(short_edge_choices(size)))
    new_h, new_w = resized_shape(height, width, short)
    crop_h, crop_w = min(size, new_h), min(size, new_w)
    y0 = int(rng.integers(new_h - crop_h + 1))
    x0 = int(rng.integers(new_w - crop_w + 1))
    flip = bool(rng.random() < FLIP_PROB)
    return ClipGeometry((new_h, new_w), (y0, x0, crop_h, crop_w), flip, size)


def apply_geometry(image: np.ndarray, geo: ClipGeometry, *, is_mask: bool) -> np.ndarray:
    """uint8 [H, W, 3] (image) or [H, W] (mask) -> the clip's geometry (resize, crop,
    flip, pad with PAD_PIXEL / IGNORE_LABEL)."""
    out = image
    if geo.resize is not None:
        new_h, new_w = geo.resize
        if out.shape[:2] != (new_h, new_w):
            resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
            out = np.asarray(Image.fromarray(out).resize((new_w, new_h), resample))
    if geo.crop is not None:
        y0, x0, h, w = geo.crop
        out = out[y0 : y0 + h, x0 : x0 + w]
    if geo.flip:
        out = out[:, ::-1]
    if geo.pad_to is not None and out.shape[:2] != (geo.pad_to, geo.pad_to):
        h, w = out.shape[:2]
        padded = np.full((geo.pad_to, geo.pad_to, *out.shape[2:]), 0, dtype=out.dtype)
        padded[...] = IGNORE_LABEL if is_mask else PAD_PIXEL
        padded[:h, :w] = out
        out = padded
    return np.ascontiguousarray(out)


def _scaled(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """values * alpha + beta in float32, clipped to 0..255 and truncated to uint8."""
    out = values.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(out, 0, 255).astype(np.uint8)


def color_aug_ssd(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SSD's photometric distortion of one uint8 RGB image [H, W, 3] (module docstring)."""

    def contrast(img: np.ndarray) -> np.ndarray:
        return _scaled(img, alpha=rng.uniform(*CONTRAST_RANGE)) if rng.integers(2) else img

    def saturation(img: np.ndarray) -> np.ndarray:
        if not rng.integers(2):
            return img
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = _scaled(hsv[:, :, 1], alpha=rng.uniform(*SATURATION_RANGE))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    def hue(img: np.ndarray) -> np.ndarray:
        if not rng.integers(2):
            return img
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        shift = int(rng.integers(-HUE_DELTA, HUE_DELTA + 1))
        hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + shift) % 180
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    img = np.ascontiguousarray(rgb)
    if rng.integers(2):
        img = _scaled(img, beta=rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA))
    if rng.integers(2):
        img = hue(saturation(contrast(img)))
    else:
        img = contrast(hue(saturation(img)))
    return img


def augment_clip(
    mode: str,
    size: int,
    frames: np.ndarray,
    masks: np.ndarray,
    extras: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The clip's frames uint8 [T, H, W, 3], masks uint8 [T, Hm, Wm] and extra images
    {key: uint8 [T, H, W, 3]} (the real frames only) through `mode` -> the same at the
    output size (S x S for "mask2former"; masks padded with IGNORE_LABEL).

    One geometry for all (drawn for the first frame's size; every image must have it);
    one ColorAugSSD draw per image, frames then each extra input, frame by frame."""
    t, h, w = frames.shape[:3]
    for name, array in (("masks", masks), *extras.items()):
        if array.shape[:3] != (t, h, w):
            raise ValueError(
                f"augmentation: {name} are {list(array.shape[:3])} but the frames "
                f"{[t, h, w]}; every image of a clip must have the frames' size"
            )
    geo = draw_geometry(mode, h, w, size, rng)
    out_frames = np.stack([apply_geometry(f, geo, is_mask=False) for f in frames]) if t else frames
    out_masks = np.stack([apply_geometry(m, geo, is_mask=True) for m in masks]) if t else masks
    out_extras = {
        key: np.stack([apply_geometry(x, geo, is_mask=False) for x in array]) if t else array
        for key, array in extras.items()
    }
    for i in range(t):
        crop = _content(geo, out_frames.shape[1:3])
        out_frames[i][crop] = color_aug_ssd(out_frames[i][crop], rng)
        for key in out_extras:
            out_extras[key][i][crop] = color_aug_ssd(out_extras[key][i][crop], rng)
    return out_frames, out_masks, out_extras


def _content(geo: ClipGeometry, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The region of an output image that holds image content (the padding is not jittered:
    the published pipeline pads after ColorAugSSD)."""
    if geo.crop is None:
        return slice(0, shape[0]), slice(0, shape[1])
    return slice(0, geo.crop[2]), slice(0, geo.crop[3])


# ---------------------------------------------------------------------------------------
# The dataset wrapper
# ---------------------------------------------------------------------------------------
class AugmentedDataset(Dataset):
    """The training samples of `inner` (a dataset of datasets.py, or its frame cache)
    through the augmentation `mode`, drawn for each sample from (seed, epoch, index).

    Indexing: `dataset[(index, epoch)]` (what the engine's sampler hands it, `epoch_keys`)
    or `dataset[index]` (epoch 0). Samples keep their keys and dtypes: frames and the
    extra inputs are encoded again as the inner dataset encodes them, masks keep their
    dtype (S4/MS3 float32 {0, 1}, AVSS int64 ids), with 255 where padded."""

    epoch_keys = True  # engine/resume.py: the sampler yields (index, epoch)

    def __init__(self, inner: Any, mode: str, size: int, seed: int) -> None:
        check_augment(mode)
        if mode == "none":
            raise ValueError("AugmentedDataset needs an augmentation, not 'none'")
        if seed < 0:
            raise ValueError(f"the augmentation seed must be >= 0, got {seed}")
        self.inner, self.mode, self.size, self.seed = inner, mode, int(size), int(seed)

    def __getattr__(self, name: str) -> Any:  # the inner dataset's attributes (rows, ...)
        if name == "inner" or "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def rng(self, index: int, epoch: int) -> np.random.Generator:
        """The generator of sample `index`'s draw in `epoch`."""
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = dict(self.inner[index])
        self.apply(sample, self.rng(index, epoch))
        return sample

    def apply(self, sample: dict[str, Any], rng: np.random.Generator) -> None:
        """Augment `sample` in place (its real frames; AVSS padding frames stay zeros)."""
        from avsbench.data.extra_inputs import imagenet_to_pixels
        from avsbench.data.transforms import normalize_pixels

        extras = {e.key: e for e in getattr(self.inner, "extra_inputs", ())}
        real = sample["frame_valid"].numpy() > 0  # [T]
        frames = imagenet_to_pixels(sample["frames"].numpy()[real]).transpose(0, 2, 3, 1)
        masks_in = sample["masks"].numpy()
        masks = np.rint(masks_in[real]).astype(np.uint8)  # [t, M, M]: 0/1 or class ids
        images = {
            key: extra.to_pixels(sample[key].numpy()[real]).transpose(0, 2, 3, 1)
            for key, extra in extras.items()
        }
        frames, masks, images = augment_clip(self.mode, self.size, frames, masks, images, rng)
        t, s = len(real), frames.shape[1]
        out_frames = np.zeros((t, 3, s, s), np.float32)
        out_frames[real] = normalize_pixels(frames.transpose(0, 3, 1, 2))
        out_masks = np.zeros((t, *masks.shape[1:]), masks_in.dtype)
        out_masks[real] = masks.astype(masks_in.dtype)
        sample["frames"] = torch.from_numpy(out_frames)
        sample["masks"] = torch.from_numpy(out_masks)
        for key, extra in extras.items():
            values = np.zeros((t, 3, s, s), np.float32)
            values[real] = extra.encode(images[key].transpose(0, 3, 1, 2))
            sample[key] = torch.from_numpy(values)

    def __repr__(self) -> str:
        return f"AugmentedDataset({self.inner!r}, mode={self.mode!r}, seed={self.seed})"
