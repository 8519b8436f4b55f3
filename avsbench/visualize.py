"""Pictures of predictions: overlays, mask PNGs, per-clip grids, the AVSS per-class IoU chart.

Used by the engine (test-time reports, `save_pred_mask`) and by `avsbench predict`.
Binary masks (S4/MS3) are drawn in one highlight colour with a contour; semantic masks
(AVSS) in the 71-colour PASCAL VOC palette of the release (avsbench_data/README.md,
"Classes and colours"), background untouched. Every file is written atomically: to a
temporary file in the destination folder first, then moved into place with `os.replace`,
so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from avsbench.fileio import atomic_write

# ImageNet statistics used by every AVSBench image transform (torchvision Normalize).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HIGHLIGHT = (255, 48, 48)  # binary masks: fill colour blended over the frame
CONTOUR = (255, 255, 0)  # binary masks: 1-pixel outline drawn at full strength
GAP = 2  # pixels of white between the cells of a grid
LABEL_WIDTH = 96  # pixels of the row-name column on the left of a labelled grid
HEADER_HEIGHT = 32  # pixels of the two-line "frame k" / "IoU x.xxx" strip above each column
ROW_LABEL_HEIGHT = 20  # pixels of a row name's strip in the label column
TEXT_INDENT = 4  # pixels left of a text strip's text (and at least as many right of it)


# ----------------------------------------------------------------------------- helpers


def _palette() -> np.ndarray:
    """The AVSS palette, uint8 [71, 3] (from avsbench.data.palette, the one definition)."""
    from avsbench.data.palette import palette

    return np.asarray(palette(), dtype=np.uint8)


def _class_names() -> Sequence[str]:
    from avsbench.data.palette import CLASS_NAMES

    return CLASS_NAMES


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels (scalable when FreeType is available)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return image


def _check_mask(mask: np.ndarray, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (the image's H, W), got {mask.shape}")
    return mask


def _binary(mask: np.ndarray) -> np.ndarray:
    """bool [H, W]: foreground where mask > 0.5 (accepts bool, 0/1, probabilities, 0/255)."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    return mask > (127 if mask.dtype == np.uint8 and mask.max(initial=0) > 1 else 0.5)


def _class_ids(ids: np.ndarray) -> np.ndarray:
    """int64 [H, W] class ids, checked against the palette size."""
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        if not np.all(np.equal(np.mod(ids, 1), 0)):
            raise ValueError("a semantic mask must hold integer class ids")
        ids = ids.astype(np.int64)
    num_colours = len(_palette())
    if ids.size and (ids.min() < 0 or ids.max() >= num_colours):
        raise ValueError(
            f"class ids must lie in 0..{num_colours - 1}, got {ids.min()}..{ids.max()}"
        )
    return ids.astype(np.int64, copy=False)


def _boundary(labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels of a labelled region with a 4-neighbour of a different label."""
    edge = np.zeros(labels.shape, dtype=bool)
    diff_v = labels[1:, :] != labels[:-1, :]
    diff_h = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge & (labels != 0)


# ----------------------------------------------------------------------------- public API


def denormalize(frames: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised frames -> displayable images.

    frames: float [T, 3, H, W] with x = (rgb / 255 - mean) / std (the dataset transform).
    Returns uint8 [T, H, W, 3], rgb = round(255 * (x * std + mean)) clipped to 0..255.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
    x = frames.detach().to("cpu", torch.float32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (x * std + mean) * 255.0  # [T, 3, H, W]
    rgb = rgb.round().clamp(0, 255).to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).contiguous().numpy()  # [T, H, W, 3]


class MaskOverlay:
    """A mask prepared once for blending over many images (the frames of a video).

    mask: [H, W]; binary (bool, 0/1, probabilities or 0/255) when `semantic` is False,
    integer class ids 0..70 when True. Calling it on an image uint8 [H, W, 3] gives
    the same picture as `overlay(image, mask, ...)`. legend: (semantic) draw the names and
    colours of the classes present in the top-left corner. The blend of a pixel value v
    with a colour c, round((1 - alpha) v + alpha c) in float32, is tabulated once per
    colour (256 values per channel) and applied inside each colour's bounding box.
    """

    def __init__(
        self, mask: np.ndarray, *, semantic: bool = False, alpha: float = 0.5, legend: bool = False
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be [H, W], got {mask.shape}")
        self.shape, self.alpha = mask.shape, alpha
        self.legend: np.ndarray | None = None
        values = np.arange(256, dtype=np.float32)[:, None]  # [256, 1]
        # (rows, columns, pixels of the region inside them uint8 [h, w], table [256, 1, 3])
        self.regions: list[tuple[slice, slice, np.ndarray, np.ndarray]] = []
        self.region_colours: list[np.ndarray] = []  # RGB uint8 [3] of each region
        if semantic:
            ids = _class_ids(mask)
            edge = _boundary(ids)
            self.edge_colour = _palette()[ids[edge]]  # [n, 3]
            present = [int(c) for c in np.unique(ids) if c != 0]
            regions = [(ids == c, _palette()[c]) for c in present]
            if legend and present:
                self.legend = legend_image(present, min(mask.shape[0], 18 * len(present) + 2))
        else:
            fg = _binary(mask)
            edge = _boundary(fg.astype(np.uint8))
            self.edge_colour = np.asarray(CONTOUR, np.uint8)
            regions = [(fg, np.asarray(HIGHLIGHT))] if fg.any() else []
        for inside, colour in regions:
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            blend = (1.0 - alpha) * values + alpha * colour.astype(np.float32)  # [256, 3]
            table = np.clip(np.rint(blend), 0, 255).astype(np.uint8)[:, None]  # [256, 1, 3]
            self.regions.append((*box, inside[box].astype(np.uint8), table))
            self.region_colours.append(np.asarray(colour, np.uint8))
        self.edge = np.flatnonzero(edge)

    def __call__(self, image: np.ndarray, *, in_place: bool = False) -> np.ndarray:
        """The blended picture (a new array; in_place: painted into `image` itself)."""
        import cv2

        image = _check_image(image)
        if image.shape[:2] != self.shape:
            raise ValueError(f"mask has shape {self.shape} but the image {image.shape[:2]}")
        out = image if in_place and image.flags.c_contiguous else image.copy()
        for rows, cols, inside, table in self.regions:
            box = out[rows, cols]  # [h, w, 3] view, written through by cv2
            cv2.copyTo(cv2.LUT(box, table), inside, box)
        out.reshape(-1, 3)[self.edge] = self.edge_colour
        if self.legend is not None:
            h, w = min(self.legend.shape[0], out.shape[0]), min(self.legend.shape[1], out.shape[1])
            out[:h, :w] = self.legend[:h, :w]
        return out


def overlay(
    image: np.ndarray, mask: np.ndarray, *, semantic: bool = False, alpha: float = 0.5
) -> np.ndarray:
    """Blend a mask over an image.

    image: uint8 [H, W, 3]. mask: [H, W]; binary (bool, 0/1, probabilities or 0/255) when
    `semantic` is False, integer class ids 0..70 when True.
    Binary: out = (1 - alpha) * image + alpha * HIGHLIGHT inside the mask, and the mask's
    outline in CONTOUR. Semantic: the same blend with palette[class] for every non-background
    pixel, class borders in their class colour; background pixels are returned unchanged.
    Returns uint8 [H, W, 3] (a new array).
    """
    image = _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    mask = _check_mask(mask, image.shape[:2])
    return MaskOverlay(mask, semantic=semantic, alpha=alpha)(image)


def save_binary_mask(
    mask: np.ndarray, path: str | os.PathLike[str], size: tuple[int, int] | None = None
) -> Path:
    """Write a binary mask as a mode-L PNG with values 0 / 255 (the release's format).

    mask: [H, W] bool, 0/1, probabilities (> 0.5) or 0/255. size: optional (width, height)
    to resize to, nearest neighbour. Returns the path written.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got {mask.shape}")
    img = Image.fromarray(_binary(mask).astype(np.uint8) * 255, mode="L")
    if size is not None and tuple(size) != img.size:
        img = img.resize(tuple(size), Image.Resampling.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def palette_image(ids: np.ndarray) -> Image.Image:
    """A mode-P PIL image of class ids [H, W] carrying the 71-colour AVSS palette."""
    ids = _class_ids(ids)
    if ids.ndim != 2:
        raise ValueError(f"class-id mask must be [H, W], got {ids.shape}")
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(_palette().reshape(-1).tolist())
    return img


def save_palette_mask(
    ids: np.ndarray, path: str | os.PathLike[str], size: tuple[int, int] | None = None
) -> Path:
    """Write class ids [H, W] as a mode-P PNG whose palette is the AVSS palette.

    Reading it back with PIL gives the ids (np.array(Image.open(path))), and any viewer
    shows the release's colours. size: optional (width, height), nearest neighbour.
    """
    img = palette_image(ids)
    if size is not None and tuple(size) != img.size:
        img = img.resize(tuple(size), Image.Resampling.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def colorize(mask: np.ndarray, *, semantic: bool) -> np.ndarray:
    """A mask as an RGB picture: binary -> white on black; semantic -> palette colours.

    mask: [H, W]. Returns uint8 [H, W, 3].
    """
    if semantic:
        return _palette()[_class_ids(mask)]
    grey = _binary(mask).astype(np.uint8) * 255
    return np.repeat(grey[:, :, None], 3, axis=2)


def _fitting_font(
    lines: Sequence[str], width: int, size: int
) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The largest font of at most `size` pixels in which every line is at most `width`
    pixels wide (the smallest tried, 6 px, if none is)."""
    for candidate in range(size, 5, -1):
        font = _font(candidate)
        if all(font.getbbox(line)[2] <= width for line in lines if line):
            return font
    return _font(6)


def _text_strip(text: str, width: int, height: int = ROW_LABEL_HEIGHT) -> np.ndarray:
    """uint8 [height, width, 3]: black text on white, one line per "\n"-separated part, each
    (height - 4) / lines pixels high, the font shrunk so that no line is cut at the right."""
    lines = text.split("\n")
    step = (height - 4) // len(lines)  # pixels per line
    font = _fitting_font(lines, width - 2 * TEXT_INDENT, step - 2)
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((TEXT_INDENT, 2 + i * step), line, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def column_header(c: int, iou: float | None) -> str:
    """The text above column c of a labelled grid: "frame c+1" and, below, its IoU."""
    return f"frame {c + 1}" + (f"\nIoU {iou:.3f}" if iou is not None else "")


def frame_ious(gt: np.ndarray, pred: np.ndarray, *, semantic: bool) -> np.ndarray:
    """IoU of each frame's prediction with its ground truth, float64 [T].

    gt, pred: [T, H, W]. Binary: the official S4/MS3 per-frame Jaccard
    (`avsbench.metrics.binary_frame_stats`: |p & g| / (|p | g| + 1e-7), and for an empty
    ground truth the share of true-negative pixels). Semantic: the mean, over the classes
    present in the frame's ground truth or prediction (background included), of the
    official per-class IoU (`avsbench.metrics.semantic_frame_stats`).
    """
    from avsbench import metrics

    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"gt and pred must both be [T, H, W], got {gt.shape} and {pred.shape}")
    if not semantic:
        logits = torch.where(torch.from_numpy(_binary(pred)), 1.0, -1.0)  # sigmoid > 0.5 = pred
        stats = metrics.binary_frame_stats(logits, torch.from_numpy(_binary(gt)))
        return stats["iou"].numpy()
    num_classes = len(_palette())
    out = np.zeros(len(gt))
    for i, (g, p) in enumerate(zip(gt, pred)):  # one frame at a time: K x H x W scores
        ids = torch.from_numpy(_class_ids(p))
        scores = F.one_hot(ids, num_classes).permute(2, 0, 1)[None].float()  # [1, K, H, W]
        stats = metrics.semantic_frame_stats(scores, torch.from_numpy(_class_ids(g))[None])
        out[i] = stats["iou"][0][stats["present"][0]].mean().item()
    return out


def clip_grid(
    frames: np.ndarray,
    gt: np.ndarray | None,
    pred: np.ndarray,
    *,
    semantic: bool,
    title: str = "",
    labels: bool = True,
) -> np.ndarray:
    """One picture of a clip: rows frames / ground truth / prediction / overlay.

    frames: uint8 [T, H, W, 3]; gt: [T, H, W] or None (the row is left out); pred:
    [T, H, W] (binary or class ids, as `semantic` says). Cells are separated by GAP white
    pixels; a `title` adds a text strip on top. labels: a LABEL_WIDTH column on the left
    names the rows, and a HEADER_HEIGHT strip above each column says "frame k" and, with a
    ground truth, on a second line the frame's IoU to 3 decimals (`frame_ious`; the font
    shrinks for narrow tiles rather than cut it). Returns uint8 [rows*H + ..., T*W + ..., 3].
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    pred = np.asarray(pred)
    if pred.shape != (t, h, w):
        raise ValueError(f"pred must be [T, H, W] = {(t, h, w)}, got {pred.shape}")
    rows = [("frames", list(frames))]
    if gt is not None:
        gt = np.asarray(gt)
        if gt.shape != (t, h, w):
            raise ValueError(f"gt must be [T, H, W] = {(t, h, w)}, got {gt.shape}")
        rows.append(("ground truth", [colorize(m, semantic=semantic) for m in gt]))
    rows.append(("prediction", [colorize(m, semantic=semantic) for m in pred]))
    rows.append(("overlay", [overlay(f, m, semantic=semantic) for f, m in zip(frames, pred)]))

    left, top = (LABEL_WIDTH, HEADER_HEIGHT) if labels else (0, 0)
    grid_h = top + len(rows) * h + (len(rows) - 1) * GAP
    grid_w = left + t * w + (t - 1) * GAP
    grid = np.full((grid_h, grid_w, 3), 255, dtype=np.uint8)
    for r, (_, cells) in enumerate(rows):
        for c, cell in enumerate(cells):
            y, x = top + r * (h + GAP), left + c * (w + GAP)
            grid[y : y + h, x : x + w] = cell
    if labels:
        ious = frame_ious(gt, pred, semantic=semantic) if gt is not None else None
        for c in range(t):
            text = column_header(c, None if ious is None else float(ious[c]))
            x = left + c * (w + GAP)
            grid[:top, x : x + w] = _text_strip(text, w, top)
        for r, (name, _) in enumerate(rows):
            y = top + r * (h + GAP) + max(h // 2 - ROW_LABEL_HEIGHT // 2, 0)
            fits = min(ROW_LABEL_HEIGHT, grid_h - y)
            grid[y : y + fits, :left] = _text_strip(name, left, ROW_LABEL_HEIGHT)[:fits]
    if title:
        grid = np.concatenate([_text_strip(title, grid_w), grid], axis=0)
    return grid


def legend_image(class_ids: Sequence[int], height: int) -> np.ndarray:
    """Colour swatches with class names, for AVSS overlays.

    class_ids: classes to show (in this order; duplicates dropped). height: pixels of the
    returned image; entries flow into more columns when they do not fit in one.
    Returns uint8 [height, W, 3] on a white background (W >= 1).
    """
    if height < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    ids = list(dict.fromkeys(int(i) for i in class_ids))
    colours, names = _palette(), _class_names()
    for i in ids:
        if not 0 <= i < len(colours):
            raise ValueError(f"class id {i} outside 0..{len(colours) - 1}")
    row_h = max(8, min(18, height // max(len(ids), 1)))
    font = _font(max(row_h - 4, 6))
    per_col = max(height // row_h, 1)
    columns = [ids[k : k + per_col] for k in range(0, len(ids), per_col)] or [[]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col_widths = [
        row_h + 4 + max((int(measure.textlength(names[i], font=font)) for i in col), default=0)
        for col in columns
    ]
    width = max(sum(w + 6 for w in col_widths), 1)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x = 2
    for col, col_w in zip(columns, col_widths):
        for row, i in enumerate(col):
            y = row * row_h
            draw.rectangle(
                [x, y + 1, x + row_h - 3, y + row_h - 2],
                fill=tuple(int(v) for v in colours[i]),
                outline=(0, 0, 0),
            )
            draw.text((x + row_h + 1, y + 1), names[i], fill=(0, 0, 0), font=font)
        x += col_w + 6
    return np.asarray(img)


def per_class_iou_chart(
    per_class_iou: Sequence[float],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    present: Sequence[bool] | None = None,
) -> Path:
    """Bar chart of per-class IoU (AVSS), one bar per class in its palette colour.

    per_class_iou: one value in [0, 1] per class (71 for AVSS; NaN = undefined); class_names:
    as many names; present: optional flags, classes with False are left out (e.g. absent
    from the test set). A dashed line marks the mean over the bars shown. Written as PNG with
    matplotlib's Agg canvas (no display needed). Returns the path written.
    """
    values = np.asarray(per_class_iou, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(class_names):
        raise ValueError(
            f"per_class_iou ({values.shape}) and class_names ({len(class_names)}) must match"
        )
    keep = np.ones(len(values), dtype=bool) if present is None else np.asarray(present, bool)
    if keep.shape != values.shape:
        raise ValueError(f"present must have {len(values)} entries, got {keep.shape}")
    keep &= ~np.isnan(values)
    idx = np.flatnonzero(keep)

    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: heavy import
    from matplotlib.figure import Figure

    colours = _palette()
    fig = Figure(figsize=(max(6.0, 0.22 * len(idx) + 1.5), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bar_colours = [tuple(colours[i % len(colours)] / 255.0) for i in idx]
    ax.bar(range(len(idx)), values[idx], color=bar_colours, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(idx)))
    ax.set_xticklabels([class_names[i] for i in idx], rotation=90, fontsize=7)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("IoU")
    if len(idx):
        mean = float(values[idx].mean())
        ax.axhline(mean, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"per-class IoU ({len(idx)} classes, mean {mean:.4f})")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def save_image(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB uint8 [H, W, 3] image as PNG (or JPEG by suffix), atomically."""
    image = _check_image(image)
    fmt = "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"
    return atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt))
