"""S4, MS3 and AVSS datasets reading the released AVSBench layouts, one sample type.

Follows the published AVSBench data loaders (Zhou et al., ECCV 2022 `S4Dataset`,
`MS3Dataset`; IJCV 2024 `V2Dataset`) and avsbench_data/README.md. Every dataset returns
the sample dict of docs/ARCHITECTURE.md:

    frames       float32 [T, 3, S, S]  ImageNet-normalised (zeros for AVSS padding frames)
    audio        float32 [T, 1, 96, 64] VGGish log-mel examples, one per second
    masks        S4/MS3 float32 [T, M, M] in {0, 1}; AVSS int64 [T, M, M] class ids
                 (zeros where a frame is not annotated); M = S, or `eval_mask_size` for
                 val/test when given (VCT: frames at 384, GT kept at 224); 255 where a
                 training augmentation padded (train split, `augment`, augment.py)
    frame_valid  float32 [T]  1 for real frames, 0 for padding (AVSS)
    gt_valid     float32 [T]  1 for frames whose mask is annotated (S4 train: frame 1)
    video_id     str          S4 name, MS3 video_id, AVSS uid
    category     str          S4 category, MS3 "", AVSS subset label (v1s / v1m / v2)
    <key>        float32 [T, 3, S, S] per declared extra input (extra_inputs.py), e.g.
                 "maskige"; zeros for AVSS padding frames

T = 5 for S4/MS3 and 10 for AVSS. Any missing or malformed file raises AVSDataError naming
the file and the problem; no sample is silently made up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from avsbench.data.audio import clip_log_mel, wav_to_log_mel
from avsbench.data.augment import AugmentedDataset, check_augment
from avsbench.data.dataset_base import (  # noqa: F401 (re-exported: the readers' old home)
    Sample,
    _AVSDataset,
    as_log_mel_clip,
    avss_class_ids,
    binary_mask_image,
    check_mask_encoding,
    check_same_size,
    mask_encoding_problem,
    open_image,
    semantic_label_array,
)
from avsbench.data.extra_inputs import ExtraInput
from avsbench.data.frame_cache import open_frame_cache
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
from avsbench.data.palette import NUM_CLASSES, read_label2idx
from avsbench.data.semantic_object import SemanticObjectDataset
from avsbench.data.transforms import avss_transform
from avsbench.data.vct_copies import AVSSCopies384, MS3Copies384, S4Copies384, StoredGTCopies


class S4Dataset(_AVSDataset):
    """AVSBench-object Single-source (S4); root = the `Single-source` folder.

    Train clips have a mask for frame 1 only (gt_valid = [1, 0, 0, 0, 0]); val/test have
    masks for all five frames.
    """

    layout_class = S4Layout
    frame_cache_setting = "s4"

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
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

    layout_class = MS3Layout
    frame_cache_setting = "ms3"

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
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
    layout_class = AVSSLayout
    frame_cache_setting = "avss"

    def __init__(
        self, root: str | Path, split: str, *, train_geometry: str = "crop", **kwargs: Any
    ) -> None:
        super().__init__(root, split, **kwargs)
        if train_geometry not in AVSS_TRAIN_GEOMETRIES:
            raise ValueError(
                f"unknown AVSS train geometry {train_geometry!r}; valid: {AVSS_TRAIN_GEOMETRIES}"
            )
        # "square": train frames squashed to S x S (VCT's AVSS training resizes each raw
        # frame to a square before its augmentation, augment.py); its own frame-cache entry
        self.train_geometry = train_geometry
        if train_geometry == "square" and split == "train":
            self.cache_tag = "_".join(filter(None, (getattr(self, "cache_tag", ""), "square")))
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

    def _geometry(
        self, image: Image.Image, *, is_mask: bool, size: int | None = None
    ) -> Image.Image:
        """AVSS: train = short-edge resize + centre crop (train_geometry "square": plain
        resize), val/test = plain resize (to `size`, default image_size)."""
        split = "test" if self.train_geometry == "square" else self.split
        return avss_transform(image, size or self.image_size, split, is_mask=is_mask)

    def _label(self, uid: str, label: str, k: int, frame: Image.Image) -> np.ndarray:
        """Class ids of frame k -> int64 [M, M] (M = mask_size; transformed like the frame)."""
        ids, path = avss_class_ids(self.layout, label, uid, k)
        mask = Image.fromarray(ids.astype(np.uint8), mode="L")
        self._check_mask_size(mask, frame, path)
        resized = self._geometry(mask, is_mask=True, size=self.mask_size)
        return np.asarray(resized).astype(np.int64)

    def __getitem__(self, index: int) -> Sample:
        uid, label = self.rows[index]
        lay, s, t = self.layout, self.image_size, self.native_frames
        n = AVSS_SUBSET_FRAMES[label]
        frames = np.zeros((t, 3, s, s), dtype=np.float32)
        masks = np.zeros((t, self.mask_size, self.mask_size), dtype=np.int64)
        frame_valid = np.zeros(t, dtype=np.float32)
        gt_valid = np.zeros(t, dtype=np.float32)
        extras = self._empty_extras()  # padding frames stay zero
        for k in range(n):
            image, frames[k] = self._frame(lay.frame(label, uid, k))
            self._read_extras(lay.frame(label, uid, k), image, extras, k)
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
            **{key: torch.from_numpy(values) for key, values in extras.items()},
        }


class S4Copies384Dataset(StoredGTCopies, S4Dataset):
    """S4 from VCT's 384-px copies (vct_copies.py)."""

    layout_class = S4Copies384


class MS3Copies384Dataset(StoredGTCopies, MS3Dataset):
    """MS3 from VCT's 384-px copies (vct_copies.py)."""

    layout_class = MS3Copies384


class AVSSCopies384Dataset(StoredGTCopies, AVSSDataset):
    """AVSS from VCT's 384-px val/test copies; train reads the release (vct_copies.py)."""

    layout_class = AVSSCopies384

    def __init__(self, root: str | Path, split: str, **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)
        self.layout = AVSSCopies384(self.root, split)

    def _check_mask_size(self, mask: Image.Image, frame: Image.Image, path: Path) -> None:
        if self.split == "train":  # the release's labels, of their frame's size
            check_same_size(mask, frame, path)
        else:
            super()._check_mask_size(mask, frame, path)


DATASETS = {"s4": S4Dataset, "ms3": MS3Dataset, "avss": AVSSDataset}
COPY_DATASETS = {"s4": S4Copies384Dataset, "ms3": MS3Copies384Dataset, "avss": AVSSCopies384Dataset}
AVSS_TRAIN_GEOMETRIES = ("crop", "square")  # AVSSDataset(train_geometry=...)
# DataConfig.source: which release S4/MS3 read ("vct384": VCT's 384-px copies, AVSS too)
DATA_SOURCES = ("object", "semantic", "vct384")


def build_dataset(
    setting: str,
    root: str | Path,
    split: str,
    *,
    source: str = "object",
    frame_cache: str | Path | None = None,
    extra_inputs: Sequence[ExtraInput] = (),
    augment: str = "none",
    augment_seed: int = 0,
    **kwargs: Any,
) -> Dataset:
    """The dataset of `setting` (s4 | ms3 | avss); kwargs go to its constructor.

    `extra_inputs` (extra_inputs.py, e.g. `(MASKIGE,)`): images per frame that the
    samples carry under their keys as float32 [T, 3, S, S], cached with the frames.
    `eval_mask_size` (a kwarg of the datasets): val/test masks at this size while frames
    and extra inputs are at `image_size` (VCT: `image_size=384, eval_mask_size=224`).

    source "object": the AVSBench-object layouts (Single-source, Multi-sources);
    "semantic": S4 / MS3 read from the v1s / v1m subsets of AVSBench-semantic
    (`semantic_object.SemanticObjectDataset`); "vct384": VCT's 384-px copies inside the
    same roots, S4, MS3 and AVSS (vct_copies.py). AVSS otherwise reads AVSBench-semantic.
    With `frame_cache` (a folder) the same samples come from the decoded-frame cache,
    built there on first use (frame_cache.py, docs/FRAME_CACHE.md).

    `augment` (augment.py, DataConfig.augment): the train split's samples go through that
    augmentation, drawn from `augment_seed`, the epoch and the index (after the frame cache,
    which holds the deterministic part); val/test are never augmented. AVSS with
    "mask2former" (VCT) squashes its train frames to S x S first instead of the crop."""
    if setting not in DATASETS:
        raise ValueError(f"unknown setting {setting!r}; valid: {sorted(DATASETS)}")
    if source not in DATA_SOURCES:
        raise ValueError(f"unknown data source {source!r}; valid: {list(DATA_SOURCES)}")
    check_augment(augment)
    augmented = augment != "none" and split == "train"
    dataset: Dataset
    kwargs["extra_inputs"] = extra_inputs
    if augmented and augment == "mask2former" and setting == "avss":
        kwargs["train_geometry"] = "square"
    if source == "semantic" and setting != "avss":
        dataset = SemanticObjectDataset(root, split, setting=setting, **kwargs)
    elif source == "vct384":
        dataset = COPY_DATASETS[setting](root, split, **kwargs)
    else:
        dataset = DATASETS[setting](root, split, **kwargs)
    if frame_cache is not None:
        dataset = open_frame_cache(dataset, frame_cache)
    if not augmented:
        return dataset
    image_size = int(kwargs.get("image_size", 224))
    return AugmentedDataset(dataset, augment, image_size, augment_seed)
