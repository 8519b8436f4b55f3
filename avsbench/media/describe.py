"""What summary.json says about a prediction (docs/PREDICT.md "Outputs"): the video, the
model, the sampling rules, and per second the mask's area or classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from avsbench.config import setting_info
from avsbench.media.video import FrameSampler, VideoInfo


def prediction_summary(
    info: VideoInfo,
    model: dict[str, Any],
    sampler: FrameSampler,
    seconds: list[dict],
    *,
    warnings: list[str],
    per_second: int,
    overlay_frames: int | None,
    wrote: bool,
    elapsed: float,
) -> dict[str, Any]:
    """The content of summary.json. model: the predictor's facts (setting, frames_per_clip,
    image_size, checkpoint, VGGish); sampler: after reading the video; seconds: the
    `mask_summary` entries with `second` and `frame_time`; wrote: files were written."""
    from avsbench import __version__

    semantic = setting_info(model["setting"]).semantic
    n, per_clip = per_second, model["frames_per_clip"]
    summary: dict[str, Any] = {
        "avsbench_version": __version__,
        "video": {
            "path": info.path,
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "codec": info.codec,
            "duration": float(sampler.end_time),
            "decoded_frames": sampler.num_frames,
            "audio": dataclasses.asdict(info.audio) if info.audio else None,
        },
        "model": model,
        "sampling": {
            "frame": "the frame on screen at second + 15/16",
            "window_seconds": per_clip,
            "padding": "zero frames, frame_valid 0" if semantic else "repeat the last second",
            "mask": "argmax of bilinear logits" if semantic else "sigmoid(bilinear logit) > 0.5",
            "masks_per_second": n,
            "samples": f"sample j: the frame on screen at j/{n} + 15/16 s; phase j mod {n} "
            f"slides the {per_clip}-second window by (j mod {n})/{n} s, with its audio; "
            "phase 0 gives the per-second masks",
        },
        "audio_source": "track" if info.audio else "silence",
        "warnings": warnings,
        "num_seconds": len(seconds),
        "seconds": seconds,
    }
    if semantic:
        summary["classes_present"] = classes_present(seconds)
    if wrote:
        summary["outputs"] = {
            "masks": "masks/<second:05d>.png",
            "overlay": "overlay.mp4" if overlay_frames is not None else None,
        }
    if overlay_frames is not None:
        summary["overlay"] = {
            "frames": overlay_frames,
            "audio": "the source's first audio track, AAC" if info.audio else None,
            "mask_shown": f"the frame at t shows the mask of sample floor({n} t - 15 ({n} - 1) "
            f"/ 16), clamped to the samples: each mask is held 1/{n} s around its own frame, "
            "15/16 of it before",
        }
    summary["elapsed_s"] = round(elapsed, 3)
    return summary


def mask_summary(mask: np.ndarray, *, semantic: bool) -> dict[str, Any]:
    """summary.json's entry for a mask [H, W]: `area_fraction` (non-background share) and
    `pixels` (S4/MS3), or the `classes` present (id, name, pixels, area_fraction; largest
    first, background left out) (AVSS)."""
    total = int(mask.size)
    if not semantic:
        pixels = int(np.count_nonzero(mask))
        return {"pixels": pixels, "area_fraction": pixels / total}
    from avsbench.data.palette import CLASS_NAMES

    counts = np.bincount(mask.reshape(-1), minlength=len(CLASS_NAMES))
    classes = [
        {
            "id": int(c),
            "name": CLASS_NAMES[c],
            "pixels": int(counts[c]),
            "area_fraction": int(counts[c]) / total,
        }
        for c in np.argsort(-counts, kind="stable")
        if c != 0 and counts[c] > 0
    ]
    return {"classes": classes, "area_fraction": int(total - counts[0]) / total}


def classes_present(entries: list[dict]) -> list[dict]:
    """AVSS: per class over all `mask_summary` entries, the entries it appears in
    (`seconds`) and its total pixels, largest first."""
    totals: dict[int, dict] = {}
    for entry in entries:
        for c in entry["classes"]:
            t = totals.setdefault(
                c["id"], {"id": c["id"], "name": c["name"], "seconds": 0, "pixels": 0}
            )
            t["seconds"] += 1
            t["pixels"] += c["pixels"]
    return sorted(totals.values(), key=lambda t: -t["pixels"])
