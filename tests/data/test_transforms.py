"""Official image transforms: ImageNet normalisation, AVSS crop / resize geometry."""

from __future__ import annotations

import numpy as np
from PIL import Image

from avsbench.data import transforms as tr


def test_normalize_values():
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = tr.normalize_image(Image.fromarray(rgb))
    assert out.shape == (3, 5, 7) and out.dtype == np.float32
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for c in range(3):
        np.testing.assert_allclose(out[c], (rgb[..., c] / 255.0 - mean[c]) / std[c], atol=1e-6)


def test_normalize_pixels_is_the_image_normalisation_bit_for_bit():
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, 9, 11, 3), dtype=np.uint8)
    batch = tr.normalize_pixels(rgb.transpose(0, 3, 1, 2))  # [4, 3, 9, 11] at once
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    for i, frame in enumerate(rgb):
        single = tr.normalize_image(Image.fromarray(frame))
        assert single.tobytes() == batch[i].tobytes()
        by_formula = ((frame.astype(np.float32) / np.float32(255) - mean) / std).transpose(2, 0, 1)
        assert np.ascontiguousarray(by_formula).tobytes() == single.tobytes()


def test_short_edge_crop_geometry_wide():
    # 300 x 200 (w x h): short edge 200 -> 224, long 300 -> int(336.0) = 336, x1 = 56
    x = np.tile(np.arange(300, dtype=np.uint8)[None, :], (200, 1))  # column index as value
    out = tr.short_edge_resize_center_crop(Image.fromarray(x), 224, is_mask=True)
    assert out.size == (224, 224)
    a = np.asarray(out)
    # nearest: output column c samples source column floor((c + 56 + 0.5) * 300 / 336)
    expected = np.floor((np.arange(224) + 56 + 0.5) * 300 / 336).astype(np.uint8)
    np.testing.assert_array_equal(a[0], expected)


def test_short_edge_crop_geometry_tall():
    # 100 x 150: w short -> 224, h = int(150 * 224 / 100) = 336, y1 = 56
    y = np.tile(np.arange(150, dtype=np.uint8)[:, None], (1, 100))
    a = np.asarray(tr.short_edge_resize_center_crop(Image.fromarray(y), 224, is_mask=True))
    expected = np.floor((np.arange(224) + 56 + 0.5) * 150 / 336).astype(np.uint8)
    np.testing.assert_array_equal(a[:, 0], expected)


def test_avss_transform_by_split():
    img = Image.fromarray(np.zeros((120, 200, 3), np.uint8))
    assert tr.avss_transform(img, 64, "train", is_mask=False).size == (64, 64)
    assert tr.avss_transform(img, 64, "test", is_mask=False).size == (64, 64)
    same = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4))
    assert tr.resize_square(same, 4) is same  # no resampling at the native size
