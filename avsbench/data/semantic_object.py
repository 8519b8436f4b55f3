"""S4 and MS3 read from the AVSBench-semantic release: its v1s and v1m subsets.

The AVSBench-semantic release (IJCV 2024) carries copies of the AVSBench-object clips with
updated labels: `v1s` (from Single-source, S4) and `v1m` (from Multi-sources, MS3). Newer
papers (CAVP, Stepping Stones) train and test S4 and MS3 on these copies. This dataset
reads them for the S4 / MS3 recipes (`--data_source semantic`, `DataConfig.source`),
in the AVSS layout of avsbench_data/README.md:

- clips: the rows of `metadata.csv` whose `label` is v1s (S4) or v1m (MS3), split from
  its `split` column;
- frames `<label>/<uid>/frames/<k>.jpg`, k = 0..4 (0-based), resized to the square as the
  S4/MS3 loaders do (no AVSS crop);
- binary masks from the semantic labels: object = any class but background (class 0),
  from `labels_semantic/<k>.png` when present, else the colour masks `labels_rgb/<k>.png`
  decoded by exact palette match (a colour outside the palette is an error);
- supervision as the published loaders flag it: S4 train uses frame 0 only (gt_valid
  [1, 0, 0, 0, 0], the S4 loss reads that frame; further label files, if a copy has them,
  are not read), val/test all five; MS3 all five in every split;
- audio: log-mel of `audio.wav` (any rate, resampled to 16 kHz), 5 examples, the last one
  repeated if the audio is shorter, as the S4/MS3 preprocessing.

Samples are those of docs/ARCHITECTURE.md with `category` = the subset label (v1s / v1m).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avsbench.data.dataset_base import Sample, _AVSDataset, avss_class_ids, check_same_size
from avsbench.data.layouts import (
    AVSS_COLUMNS,
    OBJECT_FRAMES,
    AVSDataError,
    AVSSLayout,
    DataNotFoundError,
    read_metadata,
    select_split,
)
from avsbench.data.transforms import resize_square

# setting -> the AVSBench-semantic subset holding its clips
SEMANTIC_SUBSETS = {"s4": "v1s", "ms3": "v1m"}


class SemanticObjectDataset(_AVSDataset):
    """S4 (v1s) or MS3 (v1m) clips of AVSBench-semantic; root = the `AVSBench_semantic`
    folder. Returns 5-frame binary samples, like `S4Dataset` / `MS3Dataset`."""

    layout_class = AVSSLayout

    def __init__(self, root: str | Path, split: str, *, setting: str, **kwargs: Any) -> None:
        if setting not in SEMANTIC_SUBSETS:
            raise ValueError(
                f"SemanticObjectDataset serves {sorted(SEMANTIC_SUBSETS)}, not {setting!r} "
                "(AVSS reads the semantic release with AVSSDataset)"
            )
        super().__init__(root, split, **kwargs)
        self.setting = setting
        self.subset = SEMANTIC_SUBSETS[setting]
        csv_path = self.layout.meta_csv
        if not csv_path.is_file():
            raise DataNotFoundError(
                f"{csv_path}: metadata CSV not found. --data_source semantic reads the "
                "AVSBench-semantic release: point the data root at its AVSBench_semantic folder"
            )
        meta = read_metadata(csv_path, AVSS_COLUMNS, ("uid", "split", "label"))
        subset_rows = meta[meta["label"] == self.subset]
        if len(subset_rows) == 0:
            found = sorted(set(meta["label"]))
            raise AVSDataError(
                f"{csv_path}: no clip with label == {self.subset!r}, the {setting.upper()} "
                f"subset (labels found: {found})"
            )
        self.rows = list(select_split(subset_rows, split, csv_path)["uid"])

    def annotated_frames(self) -> int:
        """Leading frames with a supervised mask: S4 train 1 (as published), else 5."""
        return 1 if (self.setting == "s4" and self.split == "train") else OBJECT_FRAMES

    def _binary_mask(self, path: Path, frame: Image.Image) -> np.ndarray:
        """Label file of `frame` -> float32 [S, S], 1 where the class is not background.

        `path` is the frame's labels_semantic or labels_rgb file (see `avss_class_ids`)."""
        k = int(path.stem)
        ids, read = avss_class_ids(self.layout, self.subset, path.parent.parent.name, k)
        mask = Image.fromarray((ids != 0).astype(np.uint8) * 255, mode="L")
        check_same_size(mask, frame, read)
        mask = resize_square(mask, self.mask_size, is_mask=True)
        return (np.asarray(mask) > 0).astype(np.float32)

    def __getitem__(self, index: int) -> Sample:
        uid = self.rows[index]
        lay, subset = self.layout, self.subset
        return self._object_sample(
            frame_paths=[lay.frame(subset, uid, k) for k in range(OBJECT_FRAMES)],
            mask_paths=[lay.label_rgb(subset, uid, k) for k in range(self.annotated_frames())],
            log_mel_path=None,  # the semantic release has no log-mel files
            wav_path=lay.wav(subset, uid),
            video_id=uid,
            category=subset,
        )
