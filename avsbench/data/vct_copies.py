"""VCT's 384-px copies of AVSBench: their layouts and their GT size check; datasets.py reads
them (`build_dataset(..., source="vct384")`, avsbench_data/README.md, "VCT's 384-px copies").

VCT (spyflying/VCT_AVS c1bb925) trains and tests at 384 x 384 on copies that
`avs_tools/generate_data_384/{s4,ms3,ss}_process.py` make from the AVSBench-semantic release
(frames PIL bilinear, maskiges NEAREST, GT NEAREST after `labels_rgb` -> grey -> != 0 ->
255) and that `models/data/datasets/register_*_sem.py` read:

    S4   <root>/s4_data_384/visual_frames_384/<split>/<category>/<name>/<name>_<i>.png
         <root>/s4_data_384/pre_SAM_mask_384/<split>/<category>/<name>/<name>_<i>_mask_color.png
         <root>/s4_data_384/gt_masks_384/<split>/...    (train)
         <root>/s4_data_384/gt_masks_224/<split>/...    (val, test: evaluated at 224)
         audio: <root>/s4_data/audio_log_mel/... (the release's)
    MS3  <root>/ms3_data_384/visual_frames_384/<video_id>/<video_id>_<i>.png   (no ".mp4_")
         <root>/ms3_data_384/pre_SAM_mask_384/<video_id>/<video_id>_<i>_mask_color.png
         <root>/ms3_data_384/gt_masks_{384,224}/<split>/<video_id>/<video_id>_<i>.png
    AVSS val/test: <root>/<label>/<uid>/processed_frames_384/<k>.jpg,
         <root>/pre_SAM_mask/AVSBench_semantic/<label>/<uid>/processed_frames_384/
         <k>_mask_color.png, GT <root>/<label>/<uid>/processed_labels_semantic/<k>.png (224,
         COMBO's process_avssimg2fixsize.py); train: the release's frames and labels.

The GT is read at the size it is stored (384 train, 224 val/test), not at its frame's; the
datasets are those of datasets.py otherwise (use image_size=384, eval_mask_size=224).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from PIL import Image

from avsbench.data.layouts import AVSDataError, AVSSLayout, MS3Layout, S4Layout

COPY_SIZE = 384  # frames and maskiges of the copies
EVAL_GT_SIZE = 224  # `gt_masks_224`, `processed_labels_semantic`: val/test GT


def gt_size(split: str) -> int:
    """Size of the stored GT of the copies: 384 for train, 224 for val/test."""
    return COPY_SIZE if split == "train" else EVAL_GT_SIZE


@dataclass(frozen=True)
class S4Copies384(S4Layout):
    """`<root>/s4_data_384` beside the Single-source release (root = Single-source)."""

    name: ClassVar[str] = "s4_384"

    @property
    def copies(self) -> Path:
        return self.root / "s4_data_384"

    @property
    def frames_root(self) -> Path:
        return self.copies / "visual_frames_384"

    def frame(self, split: str, category: str, name: str, i: int) -> Path:
        return self.frames_root / split / category / name / f"{name}_{i}.png"

    def mask(self, split: str, category: str, name: str, i: int) -> Path:
        folder = self.copies / f"gt_masks_{gt_size(split)}"
        return folder / split / category / name / f"{name}_{i}.png"


@dataclass(frozen=True)
class MS3Copies384(MS3Layout):
    """`<root>/ms3_data_384` beside the Multi-sources release (root = Multi-sources)."""

    name: ClassVar[str] = "ms3_384"

    @property
    def copies(self) -> Path:
        return self.root / "ms3_data_384"

    @property
    def frames_root(self) -> Path:
        return self.copies / "visual_frames_384"

    def frame(self, video_id: str, i: int) -> Path:
        return self.frames_root / video_id / f"{video_id}_{i}.png"

    def mask(self, split: str, video_id: str, i: int) -> Path:
        folder = self.copies / f"gt_masks_{gt_size(split)}"
        return folder / split / video_id / f"{video_id}_{i}.png"


@dataclass(frozen=True)
class AVSSCopies384(AVSSLayout):
    """The AVSBench_semantic root with VCT's val/test copies inside each clip's folder; train
    reads the release's files."""

    split: str = "test"

    def frame(self, label: str, uid: str, k: int) -> Path:
        if self.split == "train":
            return super().frame(label, uid, k)
        return self.video_dir(label, uid) / "processed_frames_384" / f"{k}.jpg"

    def label_semantic(self, label: str, uid: str, k: int) -> Path:
        if self.split == "train":
            return super().label_semantic(label, uid, k)
        return self.video_dir(label, uid) / "processed_labels_semantic" / f"{k}.png"


class StoredGTCopies:
    """Mixin of the copies' datasets: their GT has its stored size (`gt_size`), not its
    frame's."""

    split: str
    cache_tag: ClassVar[str] = "vct384"  # frame-cache entries of the copies are their own

    def _check_mask_size(self, mask: Image.Image, frame: Image.Image, path: Path) -> None:
        size = gt_size(self.split)
        if mask.size != (size, size):
            raise AVSDataError(
                f"{path}: mask is {mask.size[0]}x{mask.size[1]} (w x h) but VCT's {self.split} "
                f"GT copies are {size}x{size}; make them as VCT does (avsbench_data/README.md, "
                "'VCT's 384-px copies')"
            )
