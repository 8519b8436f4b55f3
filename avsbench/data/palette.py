"""AVSBench-semantic classes, `label2idx.json` and the 71-colour palette of its masks.

The colour masks of AVSBench-semantic (`labels_rgb/<k>.png`) paint class j with the
PASCAL VOC bit-interleave colour: bits 0, 1, 2 of j go to the top bit of R, G, B, bits
3, 4, 5 to the next bit, and so on (avsbench_data/README.md, "Classes and colours"). A
colour mask is decoded by exact match to one of the 71 colours; any other colour is bad
input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avsbench.data.layouts import AVSDataError

# The 71 AVSS classes; class index = position = label2idx.json value - 1.
CLASS_NAMES = (
    "background",
    "accordion",
    "airplane",
    "axe",
    "baby",
    "bassoon",
    "bell",
    "bird",
    "boat",
    "boy",
    "bus",
    "car",
    "cat",
    "cello",
    "clarinet",
    "clipper",
    "clock",
    "dog",
    "donkey",
    "drum",
    "duck",
    "elephant",
    "emergency-car",
    "erhu",
    "flute",
    "frying-food",
    "girl",
    "goose",
    "guitar",
    "gun",
    "guzheng",
    "hair-dryer",
    "handpan",
    "harmonica",
    "harp",
    "helicopter",
    "hen",
    "horse",
    "keyboard",
    "leopard",
    "lion",
    "man",
    "marimba",
    "missile-rocket",
    "motorcycle",
    "mower",
    "parrot",
    "piano",
    "pig",
    "pipa",
    "saw",
    "saxophone",
    "sheep",
    "sitar",
    "sorna",
    "squirrel",
    "tabla",
    "tank",
    "tiger",
    "tractor",
    "train",
    "trombone",
    "truck",
    "trumpet",
    "tuba",
    "ukulele",
    "utv",
    "vacuum-cleaner",
    "violin",
    "wolf",
    "woman",
)
NUM_CLASSES = len(CLASS_NAMES)  # 71, background included


def palette(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The VOC bit-interleave palette, uint8 [num_classes, 3] (RGB).

    For class j: r = g = b = 0, i = 0; while j > 0: r |= bit0(j) << (7 - i),
    g |= bit1(j) << (7 - i), b |= bit2(j) << (7 - i), i += 1, j >>= 3.
    """
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for j in range(num_classes):
        lab, i, rgb = j, 0, [0, 0, 0]
        while lab > 0:
            for channel in range(3):
                rgb[channel] |= ((lab >> channel) & 1) << (7 - i)
            i += 1
            lab >>= 3
        colours[j] = rgb
    return colours


PALETTE = palette()  # uint8 [71, 3]


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> int64 [...] with value R << 16 | G << 8 | B."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_PACKED_PALETTE = _pack_rgb(PALETTE)  # int64 [71]
_PALETTE_ORDER = np.argsort(_PACKED_PALETTE)
_PALETTE_SORTED = _PACKED_PALETTE[_PALETTE_ORDER]


def decode_color_mask(rgb: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Colour mask uint8 [H, W, 3] -> class ids int64 [H, W] (exact palette match).

    Raises AVSDataError naming `path` and the first unknown colour if a pixel's colour is
    not one of the 71 palette colours.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        where = f"{path}: " if path is not None else ""
        raise AVSDataError(f"{where}colour mask must be [H, W, 3] RGB, got shape {rgb.shape}")
    packed = _pack_rgb(rgb)  # [H, W]
    pos = np.searchsorted(_PALETTE_SORTED, packed)  # [H, W]
    pos = np.minimum(pos, len(_PALETTE_SORTED) - 1)
    matched = _PALETTE_SORTED[pos] == packed
    if not matched.all():
        ys, xs = np.nonzero(~matched)
        colour = tuple(int(v) for v in rgb[ys[0], xs[0]])
        where = f"{path}" if path is not None else "colour mask"
        raise AVSDataError(
            f"{where}: pixel (x={xs[0]}, y={ys[0]}) has colour {colour}, which is not in the "
            f"71-colour AVSS palette ({int((~matched).sum())} such pixels); the mask must be "
            "saved losslessly (PNG) with palette colours only"
        )
    return _PALETTE_ORDER[pos].astype(np.int64)


def encode_color_mask(ids: np.ndarray) -> np.ndarray:
    """Class ids int [H, W] in 0..70 -> colour mask uint8 [H, W, 3]."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= NUM_CLASSES):
        raise ValueError(
            f"class ids must lie in 0..{NUM_CLASSES - 1}, got {ids.min()}..{ids.max()}"
        )
    return PALETTE[ids]


def read_label2idx(path: str | Path) -> dict[str, int]:
    """Read `label2idx.json` -> {class name: class index (0-based; background 0)}.

    The JSON values are 1-based (background = 1); they must be 1..N without gaps.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AVSDataError(f"{path}: not found; it ships with AVSBench-semantic") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AVSDataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise AVSDataError(f"{path}: expected an object {{class name: 1-based index}}")
    values = sorted(raw.values())
    if values != list(range(1, len(values) + 1)):
        raise AVSDataError(f"{path}: values must be 1..{len(values)} without gaps or repeats")
    return {name: value - 1 for name, value in raw.items()}


def write_label2idx(path: str | Path, names: tuple[str, ...] = CLASS_NAMES) -> None:
    """Write `label2idx.json` as released: {name: 1-based index}."""
    Path(path).write_text(json.dumps({n: i + 1 for i, n in enumerate(names)}, indent=1))
