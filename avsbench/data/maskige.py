"""Maskiges: the class-agnostic masks of a frame painted into one palette image (COMBO, VCT).

The rule of `avs_tools/pre_mask2rgb/mask_precess_*.py` (yannqi/COMBO-AVS cb8af1c; layout
in avsbench_data/README.md): the masks are sorted by area, smallest first; mask
k of that order gets id k + 1 wherever no smaller mask is; pixels under no mask get id 0.
The ids are saved as a palette PNG with the ADE20K palette (`ade20k_palette.py`) and read
back as RGB, so a model sees the colour of each id.

- `paint_maskige(masks)`: bool [N, H, W] -> uint8 ids [H, W]
- `maskige_colours(ids)`: ids -> uint8 RGB [H, W, 3] (what reading the PNG as RGB gives)
- `maskige_image(ids)` / `write_maskige(path, ids)`: the palette PNG

Ties in area keep the input order (a stable sort; the published `np.argsort` is not stable,
so equal-area masks may be ordered either way there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from avsbench.data.ade20k_palette import ADE20K_PALETTE

MAX_MASKS = 255  # ids are uint8 (the published script stops above 255 as well)
# Semantic-SAM's `prepare_image` resizes a frame to a short edge of 640 (torchvision
# Resize(640), bicubic) before making its masks (UX-Decoder/Semantic-SAM
# semantic_sam/build_semantic_sam.py; used by COMBO's make_SAM_mask.py since cb8af1c)
SEMANTIC_SAM_SHORT_EDGE = 640

# palette of 256 entries: ids past the 150 ADE20K colours read as black, as Pillow reads them
_COLOURS = np.zeros((256, 3), dtype=np.uint8)
_COLOURS[: len(ADE20K_PALETTE)] = ADE20K_PALETTE


def paint_maskige(masks: np.ndarray) -> np.ndarray:
    """Masks bool [N, H, W] -> uint8 ids [H, W]: 1 + the area rank (smallest first) of the
    smallest mask covering each pixel, 0 where none does. N = 0 gives no ids; N > 255 is a
    ValueError."""
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    if len(masks) > MAX_MASKS:
        raise ValueError(f"{len(masks)} masks: a maskige holds at most {MAX_MASKS} (uint8 ids)")
    if len(masks) == 0:
        return np.zeros(masks.shape[1:], dtype=np.uint8)
    order = np.argsort(masks.sum(axis=(1, 2)), kind="stable")  # smallest area first
    ranked = masks[order]  # [N, H, W]
    first = ranked.argmax(axis=0)  # [H, W]: rank of the first (smallest) covering mask
    return np.where(ranked.any(axis=0), first + 1, 0).astype(np.uint8)


def maskige_colours(ids: np.ndarray) -> np.ndarray:
    """uint8 ids [H, W] -> uint8 RGB [H, W, 3] through the ADE20K palette."""
    return _COLOURS[np.asarray(ids, dtype=np.uint8)]


def maskige_image(ids: np.ndarray) -> Image.Image:
    """uint8 ids [H, W] -> a mode-P PIL image carrying the 150-colour ADE20K palette."""
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="L")
    image.putpalette(ADE20K_PALETTE.tobytes())  # mode L -> P
    return image


def write_maskige(path: str | Path, ids: np.ndarray) -> None:
    """Save uint8 ids [H, W] as the palette PNG `path` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    maskige_image(ids).save(path, format="PNG")
