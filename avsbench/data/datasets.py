"""S4, MS3 and AVSS datasets reading the released AVSBench layouts, one sample type.

Follows the published AVSBench data loaders (Zhou et al., ECCV 2022 `S4Dataset`,
`MS3Dataset`; IJCV 2024 `V2Dataset`) and avsbench_data/README.md. Every dataset returns
the sample dict of docs/ARCHITECTURE.md:

    frames       float32 [T, 3, S, S]  ImageNet-normalised (zeros for AVSS padding frames)
    audio        float32 [T, 1, 96, 64] VGGish log-mel examples, one per second
    masks        S4/MS3 float32 [T, S, S] in {0, 1}; AVSS int64 [T, S, S] class ids
                 (zeros where a frame is not annotated)
    frame_valid  float32 [T]  1 for real frames, 0 for padding (AVSS)
    gt_valid     float32 [T]  1 for frames whose mask is annotated (S4 train: frame 1)
    video_id     str          S4 name, MS3 video_id, AVSS uid
    category     str          S4 category, MS3 "", AVSS subset label (v1s / v1m / v2)

T = 5 for S4/MS3 and 10 for AVSS. Any missing or malformed file raises AVSDataError naming
the file and the problem; no sample is silently made up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
from avsbench.data.layouts import (
    AVSS_COLUMNS,
    AVSS_MAX_FRAMES,
    AVSS_SUBSET_FRAMES,
    MS3_COLUMNS,
    OBJECT_FRAMES,
    S4_COLUMNS,
    AVSDataError,
    AVSSLayout,
    MS3Layout,
    S4Layout,
    read_metadata,
    select_split,
)
from avsbench.data.palette import NUM_CLASSES, decode_color_mask, read_label2idx
from avsbench.data.transforms import avss_transform, normalize_image, resize_square

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
    """Common parts: argument checks, the sample assembly, length."""

    native_frames: int = OBJECT_FRAMES

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        image_size: int = 224,
        frames_per_clip: int | None = None,
        embedding_cache: str | Path | None = None,
        strict_masks: bool = False,
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
        self.split = split
        self.image_size = int(image_size)
        self.frames_per_clip = self.native_frames
        # Frozen VGGish embeddings are cached by the engine; kept here for the contract.
        self.embedding_cache = embedding_cache
        self.strict_masks = strict_masks  # a mask in another encoding: error, not warning

    def _frame(self, path: Path) -> tuple[Image.Image, np.ndarray]:
        """Read a frame -> (original PIL image, normalised float32 [3, S, S])."""
        image = open_image(path, "frame").convert("RGB")
        return image, normalize_image(resize_square(image, self.image_size))

    def _binary_mask(self, path: Path, frame: Image.Image) -> np.ndarray:
        """Read a 0/255 mask of `frame` -> float32 [S, S] in {0, 1}."""
        image = open_image(path, "mask")
        check_mask_encoding(image, path, strict=self.strict_masks)
        mask = binary_mask_image(image)
        check_same_size(mask, frame, path)
        mask = resize_square(mask, self.image_size, is_mask=True)
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
        masks = np.zeros((t, s, s), dtype=np.float32)
        gt_valid = np.zeros(t, dtype=np.float32)
        originals = []
        for i, path in enumerate(frame_paths):
            original, frames[i] = self._frame(path)
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
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
        )


class S4Dataset(_AVSDataset):
    """AVSBench-object Single-source (S4); root = the `Single-source` folder.

    Train clips have a mask for frame 1 only (gt_valid = [1, 0, 0, 0, 0]); val/test have
    masks for all five frames.
    """

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
        self.layout = S4Layout(self.root)
        meta = read_metadata(self.layout.meta_csv, S4_COLUMNS, ("name", "category", "split"))
        rows = select_split(meta, split, self.layout.meta_csv)
        self.rows = list(zip(rows["name"], rows["category"]))

    def __getitem__(self, index: int) -> Sample:
        name, category = self.rows[index]
        lay, split = self.layout, self.split
        num_masks = 1 if split == "train" else OBJECT_FRAMES
        return self._object_sample(
            frame_paths=[lay.frame(split, category, name, i) for i in range(1, 6)],
            mask_paths=[lay.mask(split, category, name, i) for i in range(1, num_masks + 1)],
            log_mel_path=lay.log_mel(split, category, name),
            wav_path=lay.wav(split, category, name),
            video_id=name,
            category=category,
        )


class MS3Dataset(_AVSDataset):
    """AVSBench-object Multi-sources (MS3); root = the `Multi-sources` folder.

    All five frames have masks in every split; frames live outside the split folders and
    carry the literal `.mp4_` in their names.
    """

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
        self.layout = MS3Layout(self.root)
        meta = read_metadata(self.layout.meta_csv, MS3_COLUMNS, ("video_id", "split"))
        self.rows = list(select_split(meta, split, self.layout.meta_csv)["video_id"])

    def __getitem__(self, index: int) -> Sample:
        video_id = self.rows[index]
        lay, split = self.layout, self.split
        return self._object_sample(
            frame_paths=[lay.frame(video_id, i) for i in range(1, 6)],
            mask_paths=[lay.mask(split, video_id, i) for i in range(1, 6)],
            log_mel_path=lay.log_mel(split, video_id),
            wav_path=lay.wav(split, video_id),
            video_id=video_id,
            category="",
        )


class AVSSDataset(_AVSDataset):
    """AVSBench-semantic (AVSS); root = the `AVSBench_semantic` folder.

    Clips are padded to 10 frames (zero frames, zero labels, frame_valid 0). gt_valid
    follows the published flags in train (v1s: frame 1 only; v1m: 5; v2: 10); in val/test
    every real frame is annotated. Labels come from `labels_semantic/<k>.png` when that
    folder exists, else from the colour masks `labels_rgb/<k>.png` (exact palette match).
    Audio: log-mel of `audio.wav` (any rate, resampled to 16 kHz), zero-padded to 10
    examples as the published VGGish wrapper does.
    """

    native_frames = AVSS_MAX_FRAMES

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
        self.layout = AVSSLayout(self.root)
        if self.layout.label2idx.is_file():
            label2idx = read_label2idx(self.layout.label2idx)
            if len(label2idx) != NUM_CLASSES:
                raise AVSDataError(
                    f"{self.layout.label2idx}: {len(label2idx)} classes, expected {NUM_CLASSES}"
                )
        csv_path = self.layout.meta_csv
        meta = read_metadata(csv_path, AVSS_COLUMNS, ("uid", "split", "label"))
        rows = select_split(meta, split, csv_path)
        unknown = sorted(set(rows["label"]) - set(AVSS_SUBSET_FRAMES))
        if unknown:
            raise AVSDataError(
                f"{csv_path}: unknown subset label(s) {unknown} in column 'label'; "
                f"valid: {sorted(AVSS_SUBSET_FRAMES)}"
            )
        self.rows = list(zip(rows["uid"], rows["label"]))

    def annotated_frames(self, label: str) -> int:
        """How many leading frames carry a supervised label in this split."""
        if self.split == "train" and label == "v1s":
            return 1
        return AVSS_SUBSET_FRAMES[label]

    def _label(self, uid: str, label: str, k: int, frame: Image.Image) -> np.ndarray:
        """Class ids of frame k -> int64 [S, S] (transformed like the frame)."""
        ids, path = avss_class_ids(self.layout, label, uid, k)
        mask = Image.fromarray(ids.astype(np.uint8), mode="L")
        check_same_size(mask, frame, path)
        mask = avss_transform(mask, self.image_size, self.split, is_mask=True)
        return np.asarray(mask).astype(np.int64)

    def __getitem__(self, index: int) -> Sample:
        uid, label = self.rows[index]
        lay, s, t = self.layout, self.image_size, self.native_frames
        n = AVSS_SUBSET_FRAMES[label]
        frames = np.zeros((t, 3, s, s), dtype=np.float32)
        masks = np.zeros((t, s, s), dtype=np.int64)
        frame_valid = np.zeros(t, dtype=np.float32)
        gt_valid = np.zeros(t, dtype=np.float32)
        for k in range(n):
            image = open_image(lay.frame(label, uid, k), "frame").convert("RGB")
            frames[k] = normalize_image(avss_transform(image, s, self.split, is_mask=False))
            frame_valid[k] = 1.0
            if k < self.annotated_frames(label):
                masks[k] = self._label(uid, label, k, image)
                gt_valid[k] = 1.0
        audio = clip_log_mel(wav_to_log_mel(lay.wav(label, uid)), t, pad="zeros")
        return {
            "frames": torch.from_numpy(frames),
            "audio": torch.from_numpy(np.ascontiguousarray(audio[:, None])),  # [10, 1, 96, 64]
            "masks": torch.from_numpy(masks),
            "frame_valid": torch.from_numpy(frame_valid),
            "gt_valid": torch.from_numpy(gt_valid),
            "video_id": uid,
            "category": label,
        }


DATASETS = {"s4": S4Dataset, "ms3": MS3Dataset, "avss": AVSSDataset}
DATA_SOURCES = ("object", "semantic")  # DataConfig.source: which release S4/MS3 read


def build_dataset(
    setting: str,
    root: str | Path,
    split: str,
    *,
    source: str = "object",
    frame_cache: str | Path | None = None,
    **kwargs: Any,
) -> Dataset:
    """The dataset of `setting` (s4 | ms3 | avss); kwargs go to its constructor.

    source "object": the AVSBench-object layouts (Single-source, Multi-sources);
    "semantic": S4 / MS3 read from the v1s / v1m subsets of AVSBench-semantic
    (`semantic_object.SemanticObjectDataset`). AVSS always reads AVSBench-semantic.
    With `frame_cache` (a folder) the same samples come from the decoded-frame cache,
    built there on first use (frame_cache.py, docs/FRAME_CACHE.md)."""
    if setting not in DATASETS:
        raise ValueError(f"unknown setting {setting!r}; valid: {sorted(DATASETS)}")
    if source not in DATA_SOURCES:
        raise ValueError(f"unknown data source {source!r}; valid: {list(DATA_SOURCES)}")
    dataset: Dataset
    if source == "semantic" and setting != "avss":
        from avsbench.data.semantic_object import SemanticObjectDataset

        dataset = SemanticObjectDataset(root, split, setting=setting, **kwargs)
    else:
        dataset = DATASETS[setting](root, split, **kwargs)
    if frame_cache is None:
        return dataset
    from avsbench.data.frame_cache import open_frame_cache

    return open_frame_cache(dataset, frame_cache)
