"""Official image and mask transforms of AVSBench (PIL in, numpy out).

- Frames: RGB, resized with PIL bilinear when needed, scaled to [0, 1] and normalised
  with the ImageNet mean/std (torchvision ToTensor + Normalize, as the published code);
  `normalize_pixels` does the arithmetic on uint8 arrays (the frame cache serves it).
- AVSS (published `crop_resize_img` / `resize_img`): train resizes the short edge to the
  output size (the long edge to int(long * size / short)) then centre-crops at
  x1 = int(round((w - size) / 2)); val/test resize to size x size. Bilinear for images,
  nearest for masks.
- S4/MS3 frames and masks are stored at 224 x 224; they are resized to `image_size`
  (bilinear / nearest) only when it differs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels [..., 3, H, W] -> ImageNet-normalised float32 [..., 3, H, W].

    (p / 255 - mean) / std in float32, one correctly rounded operation at a time, so the
    result does not depend on the array's shape: the frame cache (frame_cache.py) relies
    on it to serve the very floats the datasets compute.
    """
    out = np.asarray(pixels).astype(np.float32, order="C")  # [..., 3, H, W]
    out /= np.float32(255.0)
    out -= IMAGENET_MEAN[:, None, None]
    out /= IMAGENET_STD[:, None, None]
    return out


def normalize_image(image: Image.Image) -> np.ndarray:
    """RGB PIL image [H, W] -> ImageNet-normalised float32 [3, H, W]."""
    return normalize_pixels(np.asarray(image.convert("RGB")).transpose(2, 0, 1))  # [3, H, W]


def _resample(is_mask: bool) -> Image.Resampling:
    return Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR


def resize_square(image: Image.Image, size: int, *, is_mask: bool = False) -> Image.Image:
    """Resize to size x size (no-op when already that size)."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), _resample(is_mask))


def short_edge_resize_center_crop(
    image: Image.Image, size: int, *, is_mask: bool = False
) -> Image.Image:
    """Resize the short edge to `size` (aspect kept, long edge truncated to int), then
    centre-crop size x size: the published AVSS train transform."""
    w, h = image.size
    if w > h:
        oh, ow = size, int(1.0 * w * size / h)
    else:
        ow, oh = size, int(1.0 * h * size / w)
    image = image.resize((ow, oh), _resample(is_mask))
    x1 = int(round((ow - size) / 2.0))
    y1 = int(round((oh - size) / 2.0))
    return image.crop((x1, y1, x1 + size, y1 + size))


def avss_transform(image: Image.Image, size: int, split: str, *, is_mask: bool) -> Image.Image:
    """AVSS geometry: train = short-edge resize + centre crop, val/test = plain resize."""
    if split == "train":
        return short_edge_resize_center_crop(image, size, is_mask=is_mask)
    return resize_square(image, size, is_mask=is_mask)
