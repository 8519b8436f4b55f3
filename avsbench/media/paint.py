"""Painting a mask straight into the source's Y'CbCr 4:2:0 frames, for overlay.mp4.

`visualize.MaskOverlay` paints RGB pictures. overlay.mp4 is H.264 4:2:0 and most sources
are decoded as 4:2:0 too, so painting in RGB costs two colour conversions per frame
(decoded 4:2:0 -> RGB -> 4:2:0 for the encoder: 5 of the 14 ms a 720p frame took on this
project's CPU, BENCHMARKS.md "Predict on a long video"). `YUVOverlay` applies the same
picture to the planes instead. Every painted RGB pixel is (1 - w) v + w c: w = alpha and
c the region's colour inside a region, w = 1 and c the outline or legend colour there, w =
0 elsewhere. Y'CbCr is an affine function of R'G'B', so the painted pixel's Y'CbCr is
(1 - w) Y'CbCr(v) + w Y'CbCr(c):

- Y (one value per pixel): round((1 - w) y + w Y(c)), tabulated per region as
  MaskOverlay tabulates its RGB blend;
- Cb, Cr (one value per 2 x 2 block, which shares one source chroma value): the block
  mean of the painted pixels, (1 - mean w) cb + mean(w Cb(c)).

The result equals the RGB path up to the rounding of each conversion (a few code values;
tests/media/test_paint.py), and outside the mask the source's own Y'CbCr passes through
untouched, with its colour matrix and range tagged on the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avsbench.visualize import MaskOverlay

# luma weights (Kr, Kb) of FFmpeg's colour spaces (AVColorSpace numbers); others: BT.601
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}  # 709, 2020
BT601 = (0.299, 0.114)
FULL_RANGE = 2  # AVCOL_RANGE_JPEG: Y and C over 0..255 (else 16..235 / 16..240)


@dataclass(frozen=True)
class ColourMatrix:
    """How a frame's Y'CbCr code values encode R'G'B' (ITU-R BT.601 / 709 / 2020)."""

    kr: float
    kb: float
    full_range: bool

    @classmethod
    def of(cls, frame: Any) -> ColourMatrix:
        """The matrix a yuv420p av.VideoFrame is tagged with (untagged: BT.601, 16..235,
        as FFmpeg's converter reads it)."""
        kr, kb = LUMA_WEIGHTS.get(int(frame.colorspace), BT601)
        return cls(kr, kb, int(frame.color_range) == FULL_RANGE)

    def ycbcr(self, rgb: np.ndarray) -> np.ndarray:
        """float64 [..., 3] code values (Y, Cb, Cr) of RGB colours [..., 3] in 0..255."""
        rgb = np.asarray(rgb, np.float64) / 255.0
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        y = self.kr * r + (1.0 - self.kr - self.kb) * g + self.kb * b
        cb, cr = (b - y) / (2.0 * (1.0 - self.kb)), (r - y) / (2.0 * (1.0 - self.kr))
        luma, chroma = (255.0, 255.0) if self.full_range else (219.0, 224.0)
        low = 0.0 if self.full_range else 16.0
        return np.stack([low + luma * y, 128.0 + chroma * cb, 128.0 + chroma * cr], axis=-1)

    @property
    def black(self) -> int:
        return 0 if self.full_range else 16


def as_yuv420p(frame: Any, width: int, height: int) -> Any:
    """The frame as yuv420p at width x height (itself when it already is: no copy)."""
    if frame.format.name == "yuv420p" and (frame.width, frame.height) == (width, height):
        return frame
    return frame.reformat(width=width, height=height, format="yuv420p")


def plane(frame: Any, index: int) -> np.ndarray:
    """A writable uint8 [h, w] view of one plane of an av.VideoFrame (its line padding cut)."""
    p = frame.planes[index]
    flat = np.frombuffer(p, np.uint8)[: p.height * p.line_size]
    return flat.reshape(p.height, p.line_size)[:, : p.width]


def _block_means(values: np.ndarray) -> np.ndarray:
    """Means of the 2 x 2 blocks of values [..., 2h, 2w] -> [..., h, w]."""
    total = values[..., 0::2, 0::2] + values[..., 1::2, 0::2]
    total += values[..., 0::2, 1::2]
    total += values[..., 1::2, 1::2]
    return total * 0.25


class YUVOverlay:
    """`painter`'s picture applied to yuv420p frames of its size, in `matrix`'s colours.

    Calling it on a decoded av.VideoFrame (any format and size: converted first with
    `as_yuv420p`) gives a new yuv420p frame padded with black to even sizes (4:2:0 needs
    them), tagged as the source, ready for the encoder. The source frame is not written
    to (a decoder may still read it as a reference).
    """

    def __init__(self, painter: MaskOverlay, matrix: ColourMatrix) -> None:
        import cv2

        self.cv2 = cv2
        self.height, self.width = h, w = painter.shape
        self.matrix, alpha = matrix, painter.alpha
        even_h, even_w = h + h % 2, w + w % 2
        # per pixel: w, and w * Cb, w * Cr of its colour (regions do not overlap)
        weight, paint = (np.zeros((n, even_h, even_w), np.float32) for n in (1, 2))
        values = np.arange(256, dtype=np.float32)[:, None]
        self.regions: list[tuple[slice, slice, np.ndarray, np.ndarray]] = []
        for (rows, cols, inside, _), colour in zip(painter.regions, painter.region_colours):
            y, cb, cr = matrix.ycbcr(colour).astype(np.float32)
            table = np.clip(np.rint((1.0 - alpha) * values + alpha * y), 0, 255).astype(np.uint8)
            self.regions.append((rows, cols, inside, table))
            weight[0, rows, cols] += inside * np.float32(alpha)
            for k, c in enumerate((cb, cr)):
                paint[k, rows, cols] += inside * np.float32(alpha * c)
        self.edge = np.unravel_index(painter.edge, (h, w))
        edge_ycc = matrix.ycbcr(painter.edge_colour).T  # [3] or [3, n]
        self.edge_luma = np.clip(np.rint(edge_ycc[0]), 0, 255).astype(np.uint8)
        weight[(0, *self.edge)] = 1.0
        for k in (0, 1):
            paint[(k, *self.edge)] = edge_ycc[k + 1]
        self.legend: np.ndarray | None = None
        if painter.legend is not None:
            lh, lw = min(painter.legend.shape[0], h), min(painter.legend.shape[1], w)
            legend_ycc = np.moveaxis(matrix.ycbcr(painter.legend[:lh, :lw]), -1, 0)  # [3, lh, lw]
            self.legend = np.clip(np.rint(legend_ycc[0]), 0, 255).astype(np.uint8)
            weight[:, :lh, :lw], paint[:, :lh, :lw] = 1.0, legend_ycc[1:]
        # chroma: means over the 2 x 2 blocks, kept where anything is painted
        block_weight, block_paint = _block_means(weight[0]), _block_means(paint)
        self.chroma: tuple[slice, slice, np.ndarray, np.ndarray] | None = None
        if block_weight.any():
            rows_c = np.flatnonzero(block_weight.any(1))
            cols_c = np.flatnonzero(block_weight.any(0))
            box = slice(rows_c[0], rows_c[-1] + 1), slice(cols_c[0], cols_c[-1] + 1)
            keep = np.ascontiguousarray(1.0 - block_weight[box])  # [hb, wb]
            add = np.ascontiguousarray(block_paint[:, box[0], box[1]])  # [2, hb, wb]
            self.chroma = (*box, keep, add)

    def __call__(self, frame: Any) -> Any:
        import av

        h, w = self.height, self.width
        source = as_yuv420p(frame, w, h)
        out = av.VideoFrame(w + w % 2, h + h % 2, "yuv420p")
        out.colorspace, out.color_range = source.colorspace, source.color_range
        luma = plane(out, 0)
        luma[:h, :w] = plane(source, 0)
        luma[h:], luma[:, w:] = self.matrix.black, self.matrix.black
        for rows, cols, inside, table in self.regions:
            box = luma[rows, cols]  # a view, written through by cv2
            self.cv2.copyTo(self.cv2.LUT(box, table), inside, box)
        luma[self.edge] = self.edge_luma
        if self.legend is not None:
            luma[: self.legend.shape[0], : self.legend.shape[1]] = self.legend
        for k in (1, 2):
            chroma = plane(out, k)
            chroma[:] = plane(source, k)
            if self.chroma is not None:
                rows, cols, keep, add = self.chroma
                values = chroma[rows, cols].astype(np.float32)
                values *= keep
                values += add[k - 1]
                np.rint(values, out=values)
                np.clip(values, 0, 255, out=values)
                chroma[rows, cols] = values
        return out
