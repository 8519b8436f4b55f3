"""Extra per-frame inputs: an image per frame that a method needs beside the frame itself.

A method declares each such input as an `ExtraInput`; the datasets (`build_dataset(...,
extra_inputs=...)`) then return it in the sample under its key, float32 [T, 3, S, S], and
the frame cache stores it with the frames. The one input declared here is COMBO's and
VCT's "maskige" (`MASKIGE`, avsbench_data/README.md, "Extra per-frame inputs"): a colour PNG
per frame, the Semantic-SAM masks of the frame painted with the ADE20K palette.

Where the file of a frame lives (avsbench_data/README.md, "Extra per-frame inputs"): the
frame's path relative to its layout's frames root (`S4Layout.frames_root`, ...), under
`<root>/<folder>/` instead, its stem followed by `suffix` and `extension`:

    S4   <root>/s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png
      -> <root>/s4_data/pre_SAM_mask/<split>/<category>/<name>/<name>_<i>_mask_color.png
    MS3  <root>/ms3_data/visual_frames/<video_id>/<video_id>.mp4_<i>.png
      -> <root>/ms3_data/pre_SAM_mask/<video_id>/<video_id>.mp4_<i>_mask_color.png
    AVSS <root>/<label>/<uid>/frames/<k>.jpg
      -> <root>/pre_SAM_mask/AVSBench_semantic/<label>/<uid>/frames/<k>_mask_color.png

The file must have the size of its frame, or (inputs that declare `short_edge`) that size
scaled to the short edge given, as Semantic-SAM's masks come (`short_edge_size`);
it gets the frame's geometry (the S4/MS3 resize or the AVSS crop, datasets.py) on its own
size with its own resampling filter, then its own value transform (`VALUE_TRANSFORMS`). A
missing or mis-sized file is an AVSDataError naming it and the fix (`read_extra`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from avsbench.data.layouts import LAYOUT_NAMES, AVSDataError
from avsbench.data.maskige import SEMANTIC_SAM_SHORT_EDGE
from avsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels
from avsbench.fileio import is_plain_name

# Keys of the base sample (datasets.py); an extra input may not take one of them.
BASE_SAMPLE_KEYS = frozenset(
    {"frames", "audio", "masks", "frame_valid", "gt_valid", "video_id", "category"}
)
KINDS = ("rgb",)  # "rgb": a colour image, read as RGB (palette PNGs through their palette)
RESAMPLES = ("nearest", "bilinear")  # PIL filter of the resize to the sample size


def unit_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels [..., 3, H, W] -> float32 in [0, 1] (p / 255)."""
    out = np.asarray(pixels).astype(np.float32, order="C")
    out /= np.float32(255.0)
    return out


def imagenet_to_pixels(values: np.ndarray) -> np.ndarray:
    """Inverse of `normalize_pixels` (nearest uint8; the caller checks it is exact)."""
    mean = IMAGENET_MEAN.astype(np.float64)[:, None, None]
    std = IMAGENET_STD.astype(np.float64)[:, None, None]
    return np.clip(np.rint((values.astype(np.float64) * std + mean) * 255.0), 0, 255).astype(
        np.uint8
    )


def unit_to_pixels(values: np.ndarray) -> np.ndarray:
    """Inverse of `unit_pixels` (nearest uint8; the caller checks it is exact)."""
    return np.clip(np.rint(values.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


# value transform name -> (uint8 [..., 3, H, W] -> float32, its inverse for the frame cache)
VALUE_TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ...]] = {
    "imagenet": (normalize_pixels, imagenet_to_pixels),  # as the frames
    "unit": (unit_pixels, unit_to_pixels),
}


@dataclass(frozen=True)
class ExtraInput:
    """One extra image per frame, declared by a method.

    key:       sample key (an identifier, not one of BASE_SAMPLE_KEYS), e.g. "maskige"
    folders:   (layout name, folder) pairs: for each release layout ("s4" Single-source,
               "ms3" Multi-sources, "avss" AVSBench-semantic, which also serves S4/MS3
               with data source "semantic"; "s4_384", "ms3_384" VCT's copies) the folder,
               relative to the dataset root, that mirrors the layout's frames root. A
               mapping is accepted and stored sorted as pairs.
    suffix:    appended to the frame's file stem, e.g. "_mask_color"
    extension: of the file, e.g. ".png" (replaces the frame's)
    kind:      "rgb": a colour image read as RGB (`KINDS`)
    values:    value transform, a name in VALUE_TRANSFORMS ("imagenet" as the frames,
               "unit" = p / 255)
    resample:  filter of the resize to the sample size, "nearest" or "bilinear" (the
               geometry itself is the frame's)
    short_edge: None, or a short edge (e.g. 640): the file may also come at its frame's
               size scaled to it (short edge, long edge int(short_edge * long / short))
    fix:       what the user does about a missing or mis-sized file (ends the error line)
    """

    key: str
    folders: tuple[tuple[str, str], ...]
    suffix: str = ""
    extension: str = ".png"
    kind: str = "rgb"
    values: str = "imagenet"
    resample: str = "nearest"
    short_edge: int | None = None
    fix: str = "see avsbench_data/README.md, 'Extra per-frame inputs'"

    def __post_init__(self) -> None:
        folders = self.folders
        pairs = tuple(sorted(folders.items() if isinstance(folders, Mapping) else folders))
        object.__setattr__(self, "folders", tuple((str(a), str(b)) for a, b in pairs))
        name = f"extra input {self.key!r}"
        if not (isinstance(self.key, str) and self.key.isidentifier()):
            raise ValueError(f"{name}: the key must be a Python identifier")
        if self.key in BASE_SAMPLE_KEYS:
            raise ValueError(f"{name}: the key is a base sample key {sorted(BASE_SAMPLE_KEYS)}")
        layouts = [layout for layout, _ in self.folders]
        if not layouts or len(set(layouts)) != len(layouts) or set(layouts) - set(LAYOUT_NAMES):
            raise ValueError(
                f"{name}: folders must name each layout once, from {list(LAYOUT_NAMES)}; "
                f"got {layouts}"
            )
        for layout, folder in self.folders:
            parts = PurePosixPath(folder).parts
            if not parts or not all(is_plain_name(p) for p in parts) or "\\" in folder:
                raise ValueError(
                    f"{name}: folder {folder!r} of layout {layout!r} must be a relative path "
                    "under the dataset root (no '..', no absolute path)"
                )
        if "/" in self.suffix or "\\" in self.suffix:
            raise ValueError(f"{name}: suffix {self.suffix!r} may not hold a path separator")
        if not (self.extension.startswith(".") and is_plain_name(self.extension[1:])):
            raise ValueError(f"{name}: extension {self.extension!r} must look like '.png'")
        for field, value, valid in [
            ("kind", self.kind, KINDS),
            ("values", self.values, tuple(VALUE_TRANSFORMS)),
            ("resample", self.resample, RESAMPLES),
        ]:
            if value not in valid:
                raise ValueError(f"{name}: unknown {field} {value!r}; valid: {list(valid)}")
        if self.short_edge is not None and not (
            isinstance(self.short_edge, int) and self.short_edge > 0
        ):
            raise ValueError(f"{name}: short_edge must be a positive int or None")

    def folder(self, layout_name: str) -> str:
        """The folder of `layout_name`; ValueError when this input declares none."""
        for layout, folder in self.folders:
            if layout == layout_name:
                return folder
        declared = [layout for layout, _ in self.folders]
        raise ValueError(
            f"extra input {self.key!r} has no folder for the {layout_name!r} layout "
            f"(it declares {declared})"
        )

    def path(self, layout: Any, frame: Path) -> Path:
        """The file of `frame` (a path from `layout`: S4Layout, MS3Layout, AVSSLayout)."""
        relative = Path(frame).relative_to(layout.frames_root)
        name = f"{relative.stem}{self.suffix}{self.extension}"
        return Path(layout.root) / self.folder(layout.name) / relative.parent / name

    def sizes(self, frame_size: tuple[int, int]) -> list[tuple[int, int]]:
        """The (w, h) sizes this input's file may have for a frame of `frame_size`."""
        sizes = [tuple(frame_size)]
        if self.short_edge is not None:
            sizes.append(short_edge_size(frame_size, self.short_edge))
        return sizes  # type: ignore[return-value]

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels [..., 3, H, W] -> float32 [..., 3, H, W] (the value transform)."""
        return VALUE_TRANSFORMS[self.values][0](pixels)

    def to_pixels(self, values: np.ndarray) -> np.ndarray:
        """Inverse of `encode` to the nearest uint8 (exactness is the caller's check)."""
        return VALUE_TRANSFORMS[self.values][1](values)

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON values (lists, not tuples): fingerprints and manifests."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> ExtraInput:
        return cls(**{**description, "folders": tuple(map(tuple, description["folders"]))})


def check_extra_inputs(extra_inputs: Sequence[ExtraInput]) -> tuple[ExtraInput, ...]:
    """`extra_inputs` as a tuple; ValueError for a non-ExtraInput or a repeated key."""
    extras = tuple(extra_inputs)
    for extra in extras:
        if not isinstance(extra, ExtraInput):
            raise TypeError(f"extra_inputs holds {type(extra).__name__}, not ExtraInput")
    keys = [extra.key for extra in extras]
    if len(set(keys)) != len(keys):
        raise ValueError(f"extra_inputs: repeated keys {keys}")
    return extras


def short_edge_size(size: tuple[int, int], short_edge: int) -> tuple[int, int]:
    """(w, h) scaled to `short_edge`: the long edge int(short_edge * long / short), as
    torchvision's Resize of an int computes it."""
    w, h = size
    long = int(short_edge * max(w, h) / min(w, h))
    return (short_edge, long) if w <= h else (long, short_edge)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def read_extra(extra: ExtraInput, path: Path, frame: Image.Image, frame_path: Path) -> Image.Image:
    """The RGB image of `extra` at `path` for `frame` (read from `frame_path`); a missing,
    unreadable or mis-sized file is one AVSDataError line naming it and `extra.fix`."""
    key = extra.key
    if not path.is_file():
        raise AVSDataError(f"{path}: missing {key} of frame {frame_path}; {extra.fix}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise AVSDataError(f"{path}: unreadable {key} ({exc}); {extra.fix}") from exc
    check_extra_size(image, frame, path, extra)
    return image.convert("RGB")  # palette images through their palette


def check_extra_size(image: Image.Image, frame: Image.Image, path: Path, extra: ExtraInput) -> None:
    """AVSDataError naming `path` when the extra image's size is none of `extra.sizes`."""
    sizes = extra.sizes(frame.size)
    if image.size not in sizes:
        allowed = " or ".join(_wxh(s) for s in sizes)
        raise AVSDataError(
            f"{path}: {extra.key} is {_wxh(image.size)} (w x h) but its frame is "
            f"{_wxh(frame.size)}, so it must be {allowed}: it was made from other frames; "
            f"{extra.fix}"
        )


# COMBO's / VCT's maskige: Semantic-SAM masks painted with the ADE20K palette (maskige.py),
# read as RGB and normalised like a frame (spec "The network" 1 and "Inputs"). The folders
# and names are those COMBO's code writes and reads (yannqi/COMBO-AVS cb8af1c):
# - s4: `mask_precess_s4.py` writes `.../Single-source/s4_data/pre_SAM_mask/<split>/...`
#   and `register_avss4_sem.py` reads `s4_data/pre_SAM_mask/<split>/<category>/<video>/`
#   + the frame's name with ".png" -> "_mask_color.png";
# - ms3: `mask_precess_ms3.py` writes, `register_avsms3_sem.py` reads
#   `ms3_data/pre_SAM_mask/<video>/` + `<video>.mp4_<i>_mask_color.png` (no split);
# - avss: `mask_precess_ss.py` writes `<root>/pre_SAM_mask/AVSBench_semantic/<label>/<uid>/
#   frames/<k>_mask_color.png` (the README's `AVSBench_semantic/pre_SAM_mask/`; training
#   reads the `processed_frames` 224-px copies `process_avssimg2fixsize.py` makes of them,
#   which this reader makes on the fly from these).
# - s4_384, ms3_384 (VCT's copies, vct_copies.py): `generate_data_384/{s4,ms3}_process.py`
#   write `s4_data_384/pre_SAM_mask_384/<split>/<category>/<name>/<name>_<i>_mask_color.png`
#   and `ms3_data_384/pre_SAM_mask_384/<video>/<video>_<i>_mask_color.png`, next to the
#   frames `.../visual_frames_384/...<name>_<i>.png` that `register_avs*_sem.py` read; the
#   AVSS copies `ss_process.py` writes lie in the avss folder (`processed_frames_384/`).
# Sizes: S4/MS3 maskiges are resized to 224 (NEAREST) by `mask_precess_{s4,ms3}.py`; AVSS
# ones keep Semantic-SAM's size, the frame at a short edge of 640 (`short_edge`). Resized
# with NEAREST, as COMBO's and VCT's preparation does (224, VCT's 384 copies).
MASKIGE = ExtraInput(
    key="maskige",
    folders=(
        ("avss", "pre_SAM_mask/AVSBench_semantic"),
        ("ms3", "ms3_data/pre_SAM_mask"),
        ("ms3_384", "ms3_data_384/pre_SAM_mask_384"),
        ("s4", "s4_data/pre_SAM_mask"),
        ("s4_384", "s4_data_384/pre_SAM_mask_384"),
    ),
    suffix="_mask_color",
    extension=".png",
    kind="rgb",
    values="imagenet",
    resample="nearest",
    short_edge=SEMANTIC_SAM_SHORT_EDGE,
    fix="get COMBO's maskiges (Hugging Face YannQi/COMBO-AVS-checkpoints) into the layout of "
    "avsbench_data/README.md ('Extra per-frame inputs'); synthetic data: run make-toy-data again",
)
