"""What `test.sh` writes besides the metrics: predicted masks as the published test scripts
write them, overlays, report grids and the AVSS per-class chart (`--save_pred_mask`,
`--report`). Masks come from `step.predicted_masks`, the one threshold. Pictures are
drawn by `avsbench.visualize` and written atomically, every path through `fileio.inside`
(nothing is written outside the run folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from avsbench import config as C
from avsbench.engine.step import predicted_masks
from avsbench.fileio import inside

AVSS_SAVE_SIZE = (360, 240)  # (w, h) of the published AVSS predicted masks


class PredictionWriter:
    """`on_batch` hook writing masks (--save_pred_mask) and report grids (--report).

    S4/MS3 masks: `<mask_dir>/<category>/<video_id>/<video_id>_<i>.png` (i = 1..5, 0/255
    PNG; MS3 has no category level), as the published test scripts. AVSS: palette PNGs
    `<mask_dir>/<uid>/<k>.png` (k = 0-based frame, real frames only) at 360 x 240.
    Overlays mirror the mask tree under `<overlay_dir>`. Report: `<report_dir>/<video_id>.png`
    (frames / truth / prediction / overlay), the first `max_videos` clips of each process.
    """

    def __init__(
        self,
        setting: str,
        *,
        mask_dir: Path | None = None,
        overlay_dir: Path | None = None,
        report_dir: Path | None = None,
        max_videos: int = 16,
    ) -> None:
        self.setting = setting
        self.semantic = C.setting_info(setting).semantic
        self.mask_dir = mask_dir
        self.overlay_dir = overlay_dir
        self.report_dir = report_dir
        self.max_videos = max_videos
        self.reported = 0

    def _mask_path(self, root: Path, category: str, video_id: str, k: int) -> Path:
        if self.semantic:  # AVSS
            return inside(root, video_id, f"{k}.png")
        return inside(root, category, video_id, f"{video_id}_{k + 1}.png")

    def __call__(self, batch: dict[str, Any], logits: torch.Tensor) -> None:
        from avsbench import visualize as V

        semantic = self.semantic
        b, t = batch["frames"].shape[:2]
        pred = predicted_masks(logits, semantic=semantic).reshape(b, t, *logits.shape[-2:])
        gts = batch["masks"].numpy()  # [B, T, S, S]
        for i in range(b):
            video_id, category = batch["video_id"][i], batch["category"][i]
            valid = batch["frame_valid"][i].numpy() > 0
            n = int(valid.sum())  # real frames come first
            want_report = self.report_dir is not None and self.reported < self.max_videos
            images = None
            if self.overlay_dir is not None or want_report:
                images = V.denormalize(batch["frames"][i, :n])  # [n, S, S, 3]
            for k in range(n):
                if self.mask_dir is not None:
                    path = self._mask_path(self.mask_dir, category, video_id, k)
                    if semantic:
                        V.save_palette_mask(pred[i, k], path, size=AVSS_SAVE_SIZE)
                    else:
                        V.save_binary_mask(pred[i, k], path)
                if self.overlay_dir is not None and images is not None:
                    path = self._mask_path(self.overlay_dir, category, video_id, k)
                    V.save_image(V.overlay(images[k], pred[i, k], semantic=semantic), path)
            if want_report and images is not None:
                title = f"{category}/{video_id}" if category else video_id
                grid = V.clip_grid(images, gts[i, :n], pred[i, :n], semantic=semantic, title=title)
                V.save_image(grid, inside(self.report_dir, f"{video_id}.png"))
                self.reported += 1


def write_class_chart(metrics: dict[str, Any], path: Path) -> None:
    """AVSS: the per-class IoU bar chart of `metrics` (classes present in the split marked)."""
    from avsbench import visualize as V
    from avsbench.data.palette import CLASS_NAMES

    present: Sequence[bool] = [c > 0 for c in metrics["class_frame_count"]]
    V.per_class_iou_chart(metrics["per_class_iou"], CLASS_NAMES, path, present=present)
