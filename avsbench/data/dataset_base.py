"""The shared part of the S4 / MS3 / AVSS datasets: file readers that name the file in
their errors, and `_AVSDataset`, the base class that checks the arguments and assembles a
sample (the sample dict is described in datasets.py and docs/ARCHITECTURE.md).

Split from datasets.py so that the modules below the datasets (semantic_object.py, the
frame cache) never import the module that builds them (`build_dataset`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from avsbench.data.audio import (
    EXAMPLE_FRAMES,
    NUM_MEL_BINS,
    clip_log_mel,
    load_log_mel,
    wav_to_log_mel,
)
from avsbench.data.extra_inputs import ExtraInput, check_extra_inputs, read_extra
from avsbench.data.layouts import OBJECT_FRAMES, AVSDataError, AVSSLayout
from avsbench.data.palette import NUM_CLASSES, decode_color_mask
from avsbench.data.transforms import normalize_image, resize_square

Sample = dict[str, Any]


# ---------------------------------------------------------------------------------------
# File readers (each names the file in its errors)
# ---------------------------------------------------------------------------------------
def open_image(path: Path, what: str) -> Image.Image:
    """Open and decode an image file; missing or unreadable -> AVSDataError."""
    if not path.is_file():
        raise AVSDataError(f"{path}: missing {what}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise AVSDataError(f"{path}: unreadable {what} ({exc})") from exc
    return image


def binary_mask_image(image: Image.Image) -> Image.Image:
    """A 0/255 mask in any PIL mode -> mode L with values {0, 255}.

    Mode 1: as is; mode P: palette index != 0 is foreground (0/1 and 0/255 index masks);
    other modes (L, RGB, ...): grey level >= 128 (the threshold of the published
    convert('1')).
    """
    if image.mode == "1":
        fg = np.asarray(image, dtype=bool)
    elif image.mode == "P":
        fg = np.asarray(image) != 0
    else:
        fg = np.asarray(image.convert("L")) >= 128
    return Image.fromarray(fg.astype(np.uint8) * 255, mode="L")


def mask_encoding_problem(image: Image.Image) -> str | None:
    """Why a binary mask's encoding looks like another convention than the published 0/255
    grey (so that the grey >= 128 threshold may read it as empty), or None.

    Caught: colour (R, G and B differ), a mask in the alpha channel (transparency varies
    while the grey is all below 128), and a non-zero mask whose maximum is below 128 (0/1
    values). Modes 1 and P are read by their own rules and never flagged."""
    if image.mode in ("1", "P"):
        return None
    grey = np.asarray(image.convert("L"))
    if "A" in image.getbands():
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() != alpha.max() and grey.max() < 128:
            return "the mask seems to be in the alpha channel (transparency varies, grey < 128)"
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB")).astype(np.int16)
        if (rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any():
            return "the mask is coloured (R, G and B differ), not grey"
    top = int(grey.max())
    if 0 < top < 128:
        return f"the mask is not all zero but its maximum is {top} < 128 (0/1 values?)"
    return None


_warned_masks: set[str] = set()  # files already warned about (once per file and process)


def check_mask_encoding(image: Image.Image, path: Path, *, strict: bool) -> None:
    """Warn once per file (strict: AVSDataError) when `mask_encoding_problem` finds one; the
    mask is still read with the published threshold, grey >= 128."""
    problem = mask_encoding_problem(image)
    if problem is None:
        return
    message = (
        f"{path}: {problem}; read with the published threshold (grey >= 128), it gives "
        f"{int((np.asarray(binary_mask_image(image)) > 0).sum())} foreground pixels. "
        "Re-encode the masks as 0/255 grey"
    )
    if strict:
        raise AVSDataError(message + " (an error because of --strict_masks)")
    if str(path) not in _warned_masks:
        _warned_masks.add(str(path))
        logging.getLogger("avsbench").warning("%s, or pass --strict_masks to stop on it", message)


def check_same_size(mask: Image.Image, frame: Image.Image, mask_path: Path) -> None:
    if mask.size != frame.size:
        raise AVSDataError(
            f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} (w x h) but its frame is "
            f"{frame.size[0]}x{frame.size[1]}; masks must have the size of their frame"
        )


def semantic_label_array(image: Image.Image, path: Path) -> np.ndarray:
    """labels_semantic PNG (single channel, class index per pixel) -> int64 [H, W]."""
    if image.mode not in ("L", "P", "I", "I;16"):
        raise AVSDataError(
            f"{path}: labels_semantic must be a single-channel image of class ids, "
            f"got PIL mode {image.mode}"
        )
    ids = np.asarray(image).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= NUM_CLASSES):
        raise AVSDataError(
            f"{path}: class id {int(ids.max())} outside 0..{NUM_CLASSES - 1} in labels_semantic"
        )
    return ids


def as_log_mel_clip(examples: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Stored log-mel [N, 1, 96, 64] or [N, 96, 64] -> [n, 1, 96, 64]; N < n is an error."""
    if examples.ndim == 3:
        examples = examples[:, None]  # [N, 96, 64] -> [N, 1, 96, 64]
    if examples.ndim != 4 or examples.shape[1:] != (1, EXAMPLE_FRAMES, NUM_MEL_BINS):
        raise AVSDataError(
            f"{path}: log-mel must be [N, 1, {EXAMPLE_FRAMES}, {NUM_MEL_BINS}], "
            f"got {tuple(examples.shape)}"
        )
    if len(examples) < n:
        raise AVSDataError(
            f"{path}: audio too short: {len(examples)} log-mel examples, the clip needs {n}"
        )
    return np.ascontiguousarray(examples[:n], dtype=np.float32)


def avss_class_ids(layout: AVSSLayout, label: str, uid: str, k: int) -> tuple[np.ndarray, Path]:
    """Class ids of AVSS frame k -> (int64 [H, W], the file read): `labels_semantic/<k>.png`
    when that folder exists, else the colour mask `labels_rgb/<k>.png` (exact palette)."""
    path = layout.label_semantic(label, uid, k)
    if path.parent.is_dir():
        return semantic_label_array(open_image(path, "mask"), path), path
    path = layout.label_rgb(label, uid, k)
    rgb = np.asarray(open_image(path, "mask").convert("RGB"))
    return decode_color_mask(rgb, path), path


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------
class _AVSDataset(Dataset):
    """Common parts: argument checks, the sample assembly, length.

    Subclasses set `layout_class` (their release layout, layouts.py), `rows` and
    `frame_cache_setting` (the setting whose files frame_fingerprint.py lists; None: the
    frame cache refuses the dataset)."""

    native_frames: int = OBJECT_FRAMES
    layout_class: ClassVar[type]
    frame_cache_setting: ClassVar[str | None] = None

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        image_size: int = 224,
        frames_per_clip: int | None = None,
        embedding_cache: str | Path | None = None,
        strict_masks: bool = False,
        extra_inputs: Sequence[ExtraInput] = (),
        eval_mask_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise AVSDataError(f"{self.root}: dataset root not found (see avsbench_data/README.md)")
        if frames_per_clip is not None and frames_per_clip != self.native_frames:
            raise ValueError(
                f"{type(self).__name__} clips have {self.native_frames} frames; "
                f"frames_per_clip={frames_per_clip} is not supported"
            )
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if eval_mask_size is not None and eval_mask_size <= 0:
            raise ValueError(f"eval_mask_size must be positive or None, got {eval_mask_size}")
        self.split = split
        self.image_size = int(image_size)
        # GT masks: val/test at eval_mask_size when given (VCT: frames 384, GT 224), else
        # at image_size like the frames
        evaluated = eval_mask_size is not None and split != "train"
        self.mask_size = int(eval_mask_size) if evaluated else self.image_size  # type: ignore[arg-type]
        self.frames_per_clip = self.native_frames
        # Frozen VGGish embeddings are cached by the engine; kept here for the contract.
        self.embedding_cache = embedding_cache
        self.strict_masks = strict_masks  # a mask in another encoding: error, not warning
        self.layout = self.layout_class(self.root)
        self.extra_inputs = check_extra_inputs(extra_inputs)
        for extra in self.extra_inputs:
            extra.folder(self.layout.name)  # ValueError now when it has none for this layout

    def _geometry(self, image: Image.Image, *, is_mask: bool) -> Image.Image:
        """The frame geometry (S4/MS3: resize to S x S; AVSSDataset overrides it)."""
        return resize_square(image, self.image_size, is_mask=is_mask)

    def _frame(self, path: Path) -> tuple[Image.Image, np.ndarray]:
        """Read a frame -> (original PIL image, normalised float32 [3, S, S])."""
        image = open_image(path, "frame").convert("RGB")
        return image, normalize_image(self._geometry(image, is_mask=False))

    def _empty_extras(self) -> dict[str, np.ndarray]:
        """{key: zeros float32 [T, 3, S, S]} for the declared extra inputs."""
        t, s = self.native_frames, self.image_size
        return {extra.key: np.zeros((t, 3, s, s), np.float32) for extra in self.extra_inputs}

    def _read_extras(
        self, frame_path: Path, frame: Image.Image, out: dict[str, np.ndarray], t: int
    ) -> None:
        """Fill out[key][t] with each extra input of the frame at `frame_path`: read as RGB,
        of a size the input allows for `frame` (else AVSDataError), the frame's geometry
        with the input's filter, then its value transform -> float32 [3, S, S]."""
        for extra in self.extra_inputs:
            path = extra.path(self.layout, frame_path)
            image = read_extra(extra, path, frame, frame_path)  # RGB, size checked
            image = self._geometry(image, is_mask=extra.resample == "nearest")
            out[extra.key][t] = extra.encode(np.asarray(image).transpose(2, 0, 1))  # [3, S, S]

    def _check_mask_size(self, mask: Image.Image, frame: Image.Image, path: Path) -> None:
        """A mask has its frame's size (VCT's 384-px copies override: vct_copies.py)."""
        check_same_size(mask, frame, path)

    def _binary_mask(self, path: Path, frame: Image.Image) -> np.ndarray:
        """Read a 0/255 mask of `frame` -> float32 [S, S] in {0, 1}."""
        image = open_image(path, "mask")
        check_mask_encoding(image, path, strict=self.strict_masks)
        mask = binary_mask_image(image)
        self._check_mask_size(mask, frame, path)
        mask = resize_square(mask, self.mask_size, is_mask=True)
        return (np.asarray(mask) > 0).astype(np.float32)

    def _object_sample(
        self,
        frame_paths: list[Path],
        mask_paths: list[Path],
        log_mel_path: Path | None,
        wav_path: Path,
        video_id: str,
        category: str,
    ) -> Sample:
        """S4/MS3: 5 frames, masks for the first len(mask_paths) frames, 5 log-mel examples
        (from `log_mel_path` or its `.npy` when one exists, else from `wav_path`)."""
        t, s = self.native_frames, self.image_size
        frames = np.zeros((t, 3, s, s), dtype=np.float32)
        masks = np.zeros((t, self.mask_size, self.mask_size), dtype=np.float32)
        gt_valid = np.zeros(t, dtype=np.float32)
        extras = self._empty_extras()
        originals = []
        for i, path in enumerate(frame_paths):
            original, frames[i] = self._frame(path)
            self._read_extras(path, original, extras, i)
            originals.append(original)
        for i, path in enumerate(mask_paths):
            masks[i] = self._binary_mask(path, originals[i])
            gt_valid[i] = 1.0
        if log_mel_path is not None and (
            log_mel_path.is_file() or log_mel_path.with_suffix(".npy").is_file()
        ):
            audio = as_log_mel_clip(load_log_mel(log_mel_path), t, log_mel_path)
        elif wav_path.is_file():
            # no precomputed log-mel: compute it like the published preprocessing
            audio = clip_log_mel(wav_to_log_mel(wav_path), t, pad="repeat")[:, None]
        else:
            if log_mel_path is None:
                raise AVSDataError(f"{wav_path}: missing audio")
            raise AVSDataError(f"{log_mel_path}: missing audio log-mel (and no {wav_path})")
        return {
            "frames": torch.from_numpy(frames),
            "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "masks": torch.from_numpy(masks),
            "frame_valid": torch.ones(t),
            "gt_valid": torch.from_numpy(gt_valid),
            "video_id": video_id,
            "category": category,
            **{key: torch.from_numpy(values) for key, values in extras.items()},
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
        )
