"""`paint.YUVOverlay` paints what `visualize.MaskOverlay` paints, in the frame's Y'CbCr.

- Against a loop written from the definition (paint.py's docstring), in float64: every
  luma value is round((1 - w) y + w Y(c)) and every chroma value the rounded 2 x 2 block
  mean of the painted pixels, for binary and semantic masks, with an independent BT.601 /
  BT.709 matrix (equal, but within 1e-3 of a rounding tie, where float32 may differ by 1).
- Against the RGB path: the painted frame, converted to RGB by FFmpeg, shows the RGB
  painter's picture of the same frame within the rounding of the conversions.
- The source frame is not written to; odd sizes are padded with black; full-range and
  BT.709 sources keep their tags (on the frame and in overlay.mp4).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from avsbench import visualize
from avsbench.media import paint
from avsbench.media.writers import OverlayWriter

# ITU-R coefficients written out (BT.601 and BT.709), independent of paint.LUMA_WEIGHTS
KR_KB = {"601": (0.299, 0.114), "709": (0.2126, 0.0722)}


def ycbcr(rgb, standard="601", full=False):
    kr, kb = KR_KB[standard]
    r, g, b = (np.asarray(rgb, np.float64)[..., i] / 255 for i in range(3))
    y = kr * r + (1 - kr - kb) * g + kb * b
    if full:
        return 255 * y, 128 + 255 * (b - y) / (2 - 2 * kb), 128 + 255 * (r - y) / (2 - 2 * kr)
    return 16 + 219 * y, 128 + 224 * (b - y) / (2 - 2 * kb), 128 + 224 * (r - y) / (2 - 2 * kr)


def source_frame(height, width, seed, fmt="yuv420p", colorspace=None, color_range=None):
    """A decoded-like frame of smooth colours (FFmpeg's conversion of an RGB picture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [(127 + 100 * np.sin(xx / 7 + k) * np.cos(yy / 5 - k)) for k in range(3)], -1
    ) + rng.normal(0, 3, (height, width, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if colorspace is not None:  # converted with, and tagged as, that matrix / range
        frame = frame.reformat(
            format=fmt, dst_colorspace=colorspace, dst_color_range=color_range or "MPEG"
        )
        frame.colorspace = av.video.reformatter.Colorspace[colorspace]
        if color_range is not None:
            frame.color_range = av.video.reformatter.ColorRange[color_range]
        return frame
    return frame.reformat(format=fmt)


def planes(frame):
    return [paint.plane(frame, k).copy() for k in range(3)]


def painted_by_definition(source, painter, standard, full):
    """Y, Cb, Cr of the painted frame: per pixel w and colour c (region: alpha and its
    colour; outline, legend: 1 and theirs), luma per pixel, chroma per 2 x 2 block."""
    h, w = painter.shape
    y_src, cb_src, cr_src = planes(source)
    weight = np.zeros((h, w))
    colour = np.zeros((h, w, 3))
    for (rows, cols, inside, _), c in zip(painter.regions, painter.region_colours):
        sub = inside.astype(bool)
        weight[rows, cols][sub] = painter.alpha
        colour[rows, cols][sub] = c
    ey, ex = np.unravel_index(painter.edge, (h, w))
    weight[ey, ex], colour[ey, ex] = 1.0, painter.edge_colour
    if painter.legend is not None:
        lh, lw = min(painter.legend.shape[0], h), min(painter.legend.shape[1], w)
        weight[:lh, :lw], colour[:lh, :lw] = 1.0, painter.legend[:lh, :lw]
    cy, ccb, ccr = ycbcr(colour, standard, full)
    luma = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            luma[i, j] = (1 - weight[i, j]) * y_src[i, j] + weight[i, j] * cy[i, j]
    chroma = []
    for src, paint_c in ((cb_src, ccb), (cr_src, ccr)):
        out = src.astype(np.float64)
        for bi in range(src.shape[0]):
            for bj in range(src.shape[1]):
                pixels = [(i, j) for i in (2 * bi, 2 * bi + 1) for j in (2 * bj, 2 * bj + 1)]
                pixels = [(i, j) for i, j in pixels if i < h and j < w]
                if all(weight[p] == 0 for p in pixels):
                    continue
                values = [(1 - weight[p]) * src[bi, bj] + weight[p] * paint_c[p] for p in pixels]
                values += [float(src[bi, bj])] * (4 - len(pixels))  # padding keeps its chroma
                out[bi, bj] = np.mean(values)
        chroma.append(out)
    return luma, chroma


def assert_rounds_to(got, exact):
    """got (uint8) is exact (float64) rounded, but for values within 1e-3 of a tie, where
    the painter's float32 arithmetic may round the other way."""
    exact = np.clip(exact, 0, 255)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    diff = got.astype(np.float64) - np.rint(exact)
    assert (diff[~tie] == 0).all(), np.argwhere((diff != 0) & ~tie)[:5]
    assert (np.abs(diff[tie]) <= 1).all()


def binary_mask(h, w):
    mask = np.zeros((h, w), np.uint8)
    mask[3:17, 30:49] = 1
    mask[20:33, 2:9] = 1
    mask[26, 25] = 1
    mask[10:14, 11:13] = 1
    return mask


def semantic_ids(h, w):
    ids = np.zeros((h, w), np.int64)
    ids[2:12, 5:25] = 7
    ids[h - 10 : h - 2, w - 20 : w - 2] = 7
    ids[15:28, 20:45] = 33
    ids[30:33, 1:4] = 70
    return ids


@pytest.mark.parametrize(
    "standard, full, semantic",
    [("601", False, False), ("709", False, True), ("601", True, False), ("709", True, True)],
)
def test_planes_equal_the_definition(standard, full, semantic):
    h, w = 36, 52
    colorspace = {"601": "ITU601", "709": "ITU709"}[standard]
    source = source_frame(h, w, 0, colorspace=colorspace, color_range="JPEG" if full else None)
    matrix = paint.ColourMatrix.of(source)
    assert matrix.full_range == full
    mask = semantic_ids(h, w) if semantic else binary_mask(h, w)
    painter = visualize.MaskOverlay(mask, semantic=semantic, legend=semantic)
    before = planes(source)
    out = paint.YUVOverlay(painter, matrix)(source)
    luma, (cb, cr) = painted_by_definition(source, painter, standard, full)
    assert_rounds_to(paint.plane(out, 0), luma)
    assert_rounds_to(paint.plane(out, 1), cb)
    assert_rounds_to(paint.plane(out, 2), cr)
    for a, b in zip(before, planes(source)):  # the decoder's frame is left as it was
        np.testing.assert_array_equal(a, b)
    assert (out.colorspace, out.color_range) == (source.colorspace, source.color_range)


@pytest.mark.parametrize("semantic", [False, True])
@pytest.mark.parametrize("colorspace", [None, "ITU709"])
def test_the_picture_is_the_rgb_painters_within_rounding(semantic, colorspace):
    """FFmpeg's RGB of the painted frame vs MaskOverlay on FFmpeg's RGB of the source."""
    h, w = 96, 160
    source = source_frame(h, w, 1, colorspace=colorspace)
    mask = semantic_ids(h, w) if semantic else binary_mask(h, w)
    painter = visualize.MaskOverlay(mask, semantic=semantic, legend=semantic)
    expected = painter(source.to_ndarray(format="rgb24")).astype(int)
    got = paint.YUVOverlay(painter, paint.ColourMatrix.of(source))(source)
    diff = np.abs(got.to_ndarray(format="rgb24").astype(int) - expected).max(-1)
    # away from colour changes (chroma is shared by 2 x 2 blocks) only rounding differs
    changes = np.zeros((h, w), bool)
    edges = np.zeros(h * w, bool)
    edges[painter.edge] = True
    changes |= edges.reshape(h, w)
    if painter.legend is not None:
        changes[: painter.legend.shape[0] + 2, : painter.legend.shape[1] + 2] = True
    near = changes.copy()
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            near |= np.roll(changes, (dy, dx), (0, 1))
    assert diff[~near].max() <= 4 and diff[~near].mean() < 1.5
    # next to the outline and the legend, 4:2:0 shares one chroma value between them and
    # their neighbours; a good part of the frame is compared all the same
    assert (~near).sum() > 0.4 * h * w


def test_an_odd_frame_of_another_format_is_converted_and_padded():
    h, w = 37, 53
    source = source_frame(h, w, 2, fmt="yuv444p")
    painter = visualize.MaskOverlay(binary_mask(h, w))
    matrix = paint.ColourMatrix.of(paint.as_yuv420p(source, w, h))
    out = paint.YUVOverlay(painter, matrix)(source)
    assert (out.format.name, out.width, out.height) == ("yuv420p", 54, 38)
    luma = paint.plane(out, 0)
    assert (luma[37] == 16).all() and (luma[:, 53] == 16).all()  # black padding
    converted = paint.as_yuv420p(source, w, h)
    luma, (cb, cr) = painted_by_definition(converted, painter, "601", False)
    assert_rounds_to(paint.plane(out, 0)[:h, :w], luma)
    assert_rounds_to(paint.plane(out, 1), cb)
    assert_rounds_to(paint.plane(out, 2), cr)


def test_nothing_to_paint_passes_the_planes_through():
    source = source_frame(20, 30, 3)
    nothing = visualize.MaskOverlay(np.zeros((20, 30)))
    out = paint.YUVOverlay(nothing, paint.ColourMatrix.of(source))(source)
    for a, b in zip(planes(source), planes(out)):
        np.testing.assert_array_equal(a, b)


def test_overlay_video_keeps_the_sources_colour_tags(tmp_path):
    """A BT.709, full-range source: overlay.mp4's stream says so, and reads back as painted."""
    h, w = 48, 64
    source = source_frame(h, w, 4, colorspace="ITU709", color_range="JPEG")
    painter = visualize.MaskOverlay(binary_mask(h, w))
    painted = paint.YUVOverlay(painter, paint.ColourMatrix.of(source))
    writer = OverlayWriter(tmp_path / "o.mp4", w, h, rate=Fraction(10))
    for i in range(5):
        writer.write_frame(painted(source), Fraction(i, 10))
    writer.close()
    with av.open(str(tmp_path / "o.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 5
    assert int(frames[0].colorspace) == 1 and int(frames[0].color_range) == 2  # 709, full
    expected = painted(source).to_ndarray(format="rgb24").astype(float)  # H.264 is lossy
    assert np.abs(frames[-1].to_ndarray(format="rgb24") - expected).mean() < 3
