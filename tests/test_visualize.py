"""Tests of avsbench.visualize: values of overlays, PNG round trips, grids, legend, chart."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import visualize
from avsbench.data.palette import CLASS_NAMES
from avsbench.data.transforms import normalize_image


def voc_colour(j: int) -> tuple[int, int, int]:
    """The PASCAL VOC bit-interleave colour of class j, written from the spec's recipe."""
    r = g = b = 0
    i, lab = 0, j
    while lab > 0:
        r |= ((lab >> 0) & 1) << (7 - i)
        g |= ((lab >> 1) & 1) << (7 - i)
        b |= ((lab >> 2) & 1) << (7 - i)
        i += 1
        lab >>= 3
    return r, g, b


def leftovers(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.startswith("."))


def test_denormalize_inverts_the_dataset_transform():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 9, 11, 3), dtype=np.uint8)
    frames = torch.from_numpy(np.stack([normalize_image(Image.fromarray(im)) for im in images]))
    out = visualize.denormalize(frames)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, images)


def test_denormalize_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\[T, 3, H, W\]"):
        visualize.denormalize(torch.zeros(3, 4, 4))


def test_binary_overlay_blends_inside_and_draws_the_contour():
    image = np.full((7, 7, 3), 100, np.uint8)
    image[0, 0] = (10, 20, 30)
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True  # 3x3 block: 8 border pixels + 1 interior pixel
    out = visualize.overlay(image, mask, alpha=0.25)
    interior = np.rint(0.75 * 100 + 0.25 * np.array(visualize.HIGHLIGHT)).astype(np.uint8)
    np.testing.assert_array_equal(out[3, 3], interior)
    border = mask.copy()
    border[3, 3] = False
    assert np.all(out[border] == np.array(visualize.CONTOUR, np.uint8))
    np.testing.assert_array_equal(out[~mask], image[~mask])  # outside untouched
    # 0/255 and probability masks mean the same thing
    np.testing.assert_array_equal(
        visualize.overlay(image, mask.astype(np.uint8) * 255, alpha=0.25), out
    )
    np.testing.assert_array_equal(visualize.overlay(image, mask * 0.9, alpha=0.25), out)


def test_semantic_overlay_uses_the_palette_and_leaves_background():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    ids = np.zeros((6, 8), np.int64)
    ids[1:5, 1:4] = 7  # bird
    ids[1:5, 5:8] = 70  # woman
    out = visualize.overlay(image, ids, semantic=True, alpha=0.5)
    np.testing.assert_array_equal(out[ids == 0], image[ids == 0])
    # interior pixels (not on a class border): exact blend with the VOC colour
    for cls, (y, x) in ((7, (2, 2)), (70, (2, 6))):
        expected = np.rint(0.5 * image[y, x].astype(float) + 0.5 * np.array(voc_colour(cls)))
        np.testing.assert_array_equal(out[y, x], expected.astype(np.uint8))
        # border pixels of the region take the class colour
        assert tuple(out[1, 1 if cls == 7 else 5]) == voc_colour(cls)


def test_overlay_validates_inputs():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        visualize.overlay(image, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="0..70"):
        visualize.overlay(image, np.full((4, 4), 71), semantic=True)
    with pytest.raises(ValueError, match="uint8"):
        visualize.overlay(image.astype(np.float32), np.zeros((4, 4)))


def test_save_binary_mask_round_trip_and_resize(tmp_path):
    mask = np.zeros((4, 6), np.float32)
    mask[1:3, 2:5] = 1.0
    path = visualize.save_binary_mask(mask, tmp_path / "m.png")
    img = Image.open(path)
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), mask.astype(np.uint8) * 255)
    big = np.asarray(Image.open(visualize.save_binary_mask(mask, tmp_path / "b.png", size=(12, 8))))
    np.testing.assert_array_equal(big, np.kron(mask, np.ones((2, 2))).astype(np.uint8) * 255)
    assert leftovers(tmp_path) == []


def test_save_palette_mask_round_trip(tmp_path):
    ids = np.arange(71).reshape(1, 71).repeat(3, axis=0)
    path = visualize.save_palette_mask(ids, tmp_path / "p.png")
    img = Image.open(path)
    assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(img), ids)
    pal = np.asarray(img.getpalette()[: 71 * 3]).reshape(71, 3)
    assert [tuple(pal[j]) for j in (0, 1, 2, 3, 4, 70)] == [
        voc_colour(j) for j in (0, 1, 2, 3, 4, 70)
    ]
    assert all(tuple(pal[j]) == voc_colour(j) for j in range(71))
    np.testing.assert_array_equal(np.asarray(img.convert("RGB"))[0, 70], voc_colour(70))
    small = np.asarray(
        Image.open(visualize.save_palette_mask(ids, tmp_path / "s.png", size=(71, 1)))
    )
    np.testing.assert_array_equal(small, ids[:1])


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        visualize.atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_clip_grid_rows_hold_the_inputs():
    t, h, w = 3, 5, 4
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)
    pred = rng.random((t, h, w)) > 0.5
    gt = rng.random((t, h, w)) > 0.5
    grid = visualize.clip_grid(frames, gt, pred, semantic=False, labels=False)
    gap = visualize.GAP
    assert grid.shape == (4 * h + 3 * gap, t * w + (t - 1) * gap, 3)
    for c in range(t):
        x = c * (w + gap)
        np.testing.assert_array_equal(grid[0:h, x : x + w], frames[c])
        np.testing.assert_array_equal(grid[h + gap : 2 * h + gap, x : x + w, 0], gt[c] * 255)
        np.testing.assert_array_equal(
            grid[2 * (h + gap) : 3 * h + 2 * gap, x : x + w, 1], pred[c] * 255
        )
        np.testing.assert_array_equal(
            grid[3 * (h + gap) : 4 * h + 3 * gap, x : x + w], visualize.overlay(frames[c], pred[c])
        )
    assert np.all(grid[h : h + gap] == 255)  # white gap between rows
    titled = visualize.clip_grid(frames, None, pred, semantic=False, title="clip 1", labels=False)
    assert titled.shape[0] == 3 * h + 2 * gap + 20
    assert titled[:20].min() < 128  # some dark text in the title strip


def test_clip_grid_semantic_uses_palette():
    frames = np.zeros((2, 3, 3, 3), np.uint8)
    pred = np.full((2, 3, 3), 5)
    grid = visualize.clip_grid(frames, None, pred, semantic=True, labels=False)
    np.testing.assert_array_equal(grid[3 + visualize.GAP + 1, 1], voc_colour(5))
    labelled = visualize.clip_grid(frames, None, pred, semantic=True)
    top, left = visualize.HEADER_HEIGHT, visualize.LABEL_WIDTH
    np.testing.assert_array_equal(labelled[top + 3 + visualize.GAP + 1, left + 1], voc_colour(5))


def test_labelled_grid_names_rows_and_prints_each_frames_iou():
    t, h, w = 2, 40, 120
    frames = np.full((t, h, w, 3), 90, np.uint8)
    gt = np.zeros((t, h, w), bool)
    gt[:, 10:30, 20:60] = True
    pred = gt.copy()
    pred[1, 10:30, 60:100] = True  # frame 2: IoU 0.5
    grid = visualize.clip_grid(frames, gt, pred, semantic=False)
    top, left, gap = visualize.HEADER_HEIGHT, visualize.LABEL_WIDTH, visualize.GAP
    assert grid.shape == (top + 4 * h + 3 * gap, left + t * w + (t - 1) * gap, 3)
    for c in range(t):  # the cells moved right by the label column, down by the header
        x = left + c * (w + gap)
        np.testing.assert_array_equal(grid[top : top + h, x : x + w], frames[c])
        np.testing.assert_array_equal(
            grid[top + 3 * (h + gap) : top + 4 * h + 3 * gap, x : x + w],
            visualize.overlay(frames[c], pred[c]),
        )
    # the header above each column holds its text (frame k and the IoU)
    for c in range(t):
        x = left + c * (w + gap)
        assert grid[:top, x : x + w].min() < 128
        assert np.array_equal(
            grid[:top, x : x + w],
            visualize._text_strip(f"frame {c + 1}\nIoU {[1.0, 0.5][c]:.3f}", w, top),
        )
    label = visualize.ROW_LABEL_HEIGHT
    for r, name in enumerate(("frames", "ground truth", "prediction", "overlay")):
        y = top + r * (h + gap) + h // 2 - label // 2
        np.testing.assert_array_equal(
            grid[y : y + label, :left], visualize._text_strip(name, left, label)
        )


def test_a_96_pixel_tile_shows_the_whole_iou():
    """The header above a 96-px tile is "frame k" over "IoU 0.857", drawn whole: it equals the
    two lines drawn by Pillow on a canvas wide enough for any text, at some font size,
    cropped to the tile, and that canvas has no ink at or past the tile's right edge (once
    "frame 1  IoU 0.9" was all that fitted)."""
    from PIL import ImageDraw

    t, h, w = 2, 96, 96
    frames = np.full((t, h, w, 3), 90, np.uint8)
    gt = np.zeros((t, h, w), bool)
    gt[:, 0, :7] = True
    pred = gt.copy()
    pred[1, 0, 6] = False  # frame 2: IoU 6/7
    grid = visualize.clip_grid(frames, gt, pred, semantic=False)
    top, left, gap = visualize.HEADER_HEIGHT, visualize.LABEL_WIDTH, visualize.GAP
    for c, iou in enumerate((1.0, 6 / 7)):
        header = grid[:top, left + c * (w + gap) : left + c * (w + gap) + w]
        lines = [f"frame {c + 1}", f"IoU {iou:.3f}"]  # "IoU 1.000", "IoU 0.857"
        step = (top - 4) // 2
        whole = []
        for size in range(6, step - 1):
            canvas = Image.new("RGB", (4 * w, top), (255, 255, 255))
            draw = ImageDraw.Draw(canvas)
            for i, line in enumerate(lines):
                draw.text((4, 2 + i * step), line, fill=(0, 0, 0), font=visualize._font(size))
            drawn = np.asarray(canvas)
            if np.array_equal(drawn[:, :w], header):
                whole.append(drawn[:, w - 2 :].min() == 255)
        assert whole == [True], (lines, whole)


def test_frame_ious_follow_the_official_per_frame_definitions():
    gt = np.zeros((3, 4, 5), np.uint8)
    pred = np.zeros((3, 4, 5), np.uint8)
    gt[0, :2], pred[0, :1] = 1, 1  # 5 of 10 foreground pixels found
    pred[1, 0, 0] = 1  # empty ground truth: share of true-negative pixels, 19 / 20
    gt[2, 1:3, 1:3] = 1
    pred[2, 1:3, 2:4] = 1  # |p & g| = 2, |p | g| = 6
    ious = visualize.frame_ious(gt, pred, semantic=False)
    np.testing.assert_allclose(ious, [5 / (10 + 1e-7), 19 / (20 + 1e-7), 2 / (6 + 1e-7)])
    # semantic: the mean over the classes present in ground truth or prediction
    ids_gt = np.zeros((1, 4, 5), np.int64)
    ids_pred = np.zeros((1, 4, 5), np.int64)
    ids_gt[0, :2], ids_pred[0, :1], ids_pred[0, 3, 4] = 7, 7, 9
    bg = 9 / (15 + 2.220446049250313e-16)  # class 0: 9 shared of 10 + 14 - 9 pixels
    bird = 5 / (10 + 2.220446049250313e-16)
    np.testing.assert_allclose(
        visualize.frame_ious(ids_gt, ids_pred, semantic=True), [(bg + bird + 0.0) / 3]
    )


def test_legend_image_shows_each_class_colour():
    legend = visualize.legend_image([17, 41, 17], height=60)
    assert legend.shape[0] == 60 and legend.shape[1] > 20 and legend.dtype == np.uint8
    for cls in (17, 41):
        assert np.any(np.all(legend == np.array(voc_colour(cls), np.uint8), axis=-1))
    # 20 classes in 40 pixels flow into several columns: wider than one column
    many = visualize.legend_image(list(range(1, 21)), height=40)
    assert many.shape[0] == 40 and many.shape[1] > legend.shape[1]
    with pytest.raises(ValueError, match="0..70"):
        visualize.legend_image([71], height=10)


def test_per_class_iou_chart_writes_a_png(tmp_path):
    values = np.linspace(0, 1, 71)
    present = np.zeros(71, bool)
    present[[1, 5, 9]] = True
    small = visualize.per_class_iou_chart(values, CLASS_NAMES, tmp_path / "small.png", present)
    full = visualize.per_class_iou_chart(values, CLASS_NAMES, tmp_path / "full.png")
    w_small, w_full = Image.open(small).size[0], Image.open(full).size[0]
    assert w_full > w_small  # one bar per class shown
    arr = np.asarray(Image.open(small).convert("RGB"))
    assert np.any(np.all(arr == np.array(voc_colour(5), np.uint8), axis=-1))  # bar in its colour
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="must match"):
        visualize.per_class_iou_chart(values[:5], CLASS_NAMES, tmp_path / "bad.png")
