"""One prediction as `avsbench app` runs it, without the page: the model with the page's
threshold and class choice applied to its logits, `avsbench.predict.predict_video` into a
folder the app owns, then what the page shows (the per-second timeline, the AVSS colour
legend) and offers for download (the masks as a PNG zip, summary.json).

The threshold and the hidden classes act on the model's logits (`ShownMasks`), so the
overlay, the mask PNGs and summary.json all show the same masks:
- S4/MS3: sigmoid(logit) > t  <=>  logit - log(t / (1 - t)) > 0, so the logits are shifted
  and predict's own rule (sigmoid > 0.5) applies; t = 0.5 leaves them untouched.
- AVSS: a hidden class's pixels go to the background: the background logit becomes the
  largest of itself and the hidden classes' logits, and each hidden logit sits 1 below
  it, so after predict's bilinear upsampling (linear) a hidden class never wins; a shown
  class keeps its pixels, but for a few on its borders with a hidden class (the upsampled
  maximum can exceed the maximum of the upsampled logits there).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsbench.fileio import atomic_write
from avsbench.predict import (
    PredictError,
    PredictionResult,
    Predictor,
    load_predictor,
    predict_video,
)

HIGHLIGHT_HEX = "#ff3030"  # avsbench.visualize.HIGHLIGHT, the binary masks' colour
SOUNDING = "sounding object"  # the one series and legend entry of S4/MS3
PROGRESS_LINE = re.compile(r"predicted (\d+) s of video")  # predict's progress log line


class ShownMasks(nn.Module):
    """The predictor's model with the page's threshold (S4/MS3) or hidden classes (AVSS)
    applied to its output logits [B*T, K, S, S] (module docstring)."""

    def __init__(
        self, model: nn.Module, *, semantic: bool, threshold: float, hidden: Sequence[int]
    ) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.model, self.semantic = model, semantic
        self.shift = math.log(threshold / (1.0 - threshold))
        self.hidden = sorted(set(hidden) - {0})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        output = self.model(*args, **kwargs)
        logits = output.logits  # [B*T, K, S, S]
        if not self.semantic:
            if self.shift == 0.0:
                return output
            return dataclasses.replace(output, logits=logits - self.shift)
        if not self.hidden:
            return output
        hidden = torch.tensor(self.hidden, device=logits.device)
        background = torch.maximum(
            logits[:, :1], logits.index_select(1, hidden).amax(1, keepdim=True)
        )  # [B*T, 1, S, S]
        changed = logits.clone()
        changed[:, :1] = background
        changed[:, self.hidden] = background - 1.0
        return dataclasses.replace(output, logits=changed)


class ModelCache:
    """The last loaded checkpoint's Predictor, reused while the file is unchanged.

    vggish_file: VGGish weights (vggish-10086976.pth) for the checkpoints that need them
    (an official file without VGGish tensors): used only when loading without them fails
    for want of VGGish weights, so a checkpoint's own VGGish is never replaced."""

    def __init__(self, device: str | None = None, vggish_file: Path | None = None) -> None:
        self.device, self.vggish_file = device, vggish_file
        self._key: tuple | None = None
        self._predictor: Predictor | None = None

    def get(self, path: Path) -> Predictor:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key != self._key or self._predictor is None:
            self._predictor, self._key = None, None
            self._predictor = self._load(path)
            self._key = key
        return self._predictor

    def _load(self, path: Path) -> Predictor:
        try:
            return load_predictor(path, device=self.device)
        except PredictError as exc:
            if self.vggish_file is None or "VGGish" not in str(exc):
                raise
        return load_predictor(path, device=self.device, vggish_weights=self.vggish_file)


@dataclass
class AppResult:
    """What one run gives the page: files inside the run folder and what to draw."""

    folder: Path
    overlay: Path | None
    masks_zip: Path
    summary_path: Path
    summary: dict[str, Any]
    timeline: list[dict[str, Any]]  # rows: second, series, percent (of the frame)
    legend: list[tuple[str, str]]  # (name, "#rrggbb") of what the overlay paints


def run_prediction(
    video: Path,
    predictor: Predictor,
    runs_dir: Path,
    *,
    masks_per_second: int = 1,
    threshold: float = 0.5,
    shown_classes: Sequence[str] = (),
    allow_silence: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AppResult:
    """Predict `video` into a new folder under `runs_dir`; shown_classes: AVSS class names
    drawn (empty: all). progress receives the seconds predicted so far. Raises
    PredictError / InputError with predict's one-line messages."""
    from avsbench.data.palette import CLASS_NAMES

    wanted = set(shown_classes)
    hidden = [i for i, name in enumerate(CLASS_NAMES) if wanted and i > 0 and name not in wanted]
    shown = dataclasses.replace(
        predictor,
        model=ShownMasks(
            predictor.model, semantic=predictor.semantic, threshold=threshold, hidden=hidden
        ),
    )

    def log(message: str) -> None:
        found = PROGRESS_LINE.search(message)
        if found and progress is not None:
            progress(int(found.group(1)))

    runs_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=runs_dir))
    result = predict_video(
        video,
        shown,
        out_dir=folder / "prediction",
        allow_silence=allow_silence,
        keep_masks=False,
        masks_per_second=masks_per_second,
        log=log,
    )
    summary = _record_choices(result, threshold, shown_classes)
    return AppResult(
        folder=folder,
        overlay=result.paths.get("overlay"),
        masks_zip=zip_masks(result.paths["masks"], folder / f"{video.stem}_masks.zip"),
        summary_path=result.paths["summary"],
        summary=summary,
        timeline=timeline_rows(summary),
        legend=legend(summary),
    )


def _record_choices(
    result: PredictionResult, threshold: float, shown_classes: Sequence[str]
) -> dict[str, Any]:
    """summary.json with the page's choices: the mask rule with the threshold used, the
    classes drawn. Rewritten atomically in place."""
    summary = result.summary
    if result.semantic:
        summary["app"] = {"classes_shown": list(shown_classes) or "all"}
    else:
        summary["app"] = {"threshold": threshold}
        summary["sampling"]["mask"] = f"sigmoid(bilinear logit) > {threshold:g}"
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(result.paths["summary"], lambda t: t.write_text(text))
    return summary


def zip_masks(masks: Sequence[Path], target: Path) -> Path:
    """The mask PNGs in one zip (stored: PNGs are compressed already), written atomically."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for png in masks:
                archive.write(png, f"masks/{png.name}")

    return atomic_write(target, write)


def timeline_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per second, the percent of the frame that sounds: one series SOUNDING (S4/MS3),
    or one per class present (AVSS; they add up to the sounding part)."""
    rows = []
    for entry in summary["seconds"]:
        second = entry["second"]
        if "classes" not in entry:
            percent = 100 * entry["area_fraction"]
            rows.append({"second": second, "series": SOUNDING, "percent": percent})
            continue
        found = {c["name"]: c["area_fraction"] for c in entry["classes"]}
        rows += [
            {"second": second, "series": c["name"], "percent": 100 * found.get(c["name"], 0.0)}
            for c in summary["classes_present"]
        ]
    return rows


def timeline_figure(rows: list[dict[str, Any]], colours: list[tuple[str, str]], seconds: int):
    """A matplotlib Figure of the timeline: per second a bar of the sounding percent,
    stacked by class in the overlay's colours (AVSS). No pyplot: no GUI backend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    bottom = [0.0] * seconds
    for name, colour in colours:
        heights = [0.0] * seconds
        for row in rows:
            if row["series"] == name and 0 <= row["second"] < seconds:
                heights[row["second"]] = row["percent"]
        axes.bar(
            range(seconds), heights, bottom=bottom, width=0.9, align="edge",
            color=colour, edgecolor="#00000055", linewidth=0.5, label=name,
        )  # fmt: skip
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_xlim(0, max(seconds, 1))
    axes.set_ylim(0, 100)
    axes.set_xlabel("second of the video")
    axes.set_ylabel("% of the frame")
    axes.set_title("How much of the frame sounds, per second", fontsize=10)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(axis="y", alpha=0.3)
    if 1 < len(colours) <= 12:
        axes.legend(fontsize=7, loc="upper right", ncols=min(len(colours), 4))
    return figure


def legend(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, colour) of what the overlay paints: the AVSS classes found (largest first,
    in the release's palette), or the one highlight of S4/MS3."""
    if "classes_present" not in summary:
        return [(SOUNDING, HIGHLIGHT_HEX)]
    from avsbench.data.palette import palette

    colours = palette()
    return [
        (c["name"], "#{:02x}{:02x}{:02x}".format(*(int(v) for v in colours[c["id"]])))
        for c in summary["classes_present"]
    ]


def legend_html(entries: list[tuple[str, str]]) -> str:
    """The legend as HTML swatches (names escaped)."""
    if not entries:
        return "<p class='avs-legend'>No sounding object found.</p>"
    items = "".join(
        f"<span class='avs-swatch' style='background:{colour}'></span>"
        f"<span class='avs-name'>{html.escape(name)}</span>"
        for name, colour in entries
    )
    return f"<div class='avs-legend'>{items}</div>"


def remove_old_runs(runs_dir: Path, keep: int) -> None:
    """Delete all but the `keep` newest run folders (their files have been served)."""
    import shutil

    if not runs_dir.is_dir():
        return
    runs = sorted(runs_dir.glob("run-*"), key=lambda p: p.stat().st_mtime_ns)
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def short_path_messages(message: str, upload: Path | None) -> str:
    """An error line with an upload's temporary path replaced by its file name, one line."""
    if upload is not None:  # as given and as resolved (a /tmp that is a link)
        for shown in {str(upload.resolve()), str(upload)}:
            message = message.replace(shown, upload.name)
    return " ".join(message.split())


__all__ = [
    "AppResult",
    "ModelCache",
    "ShownMasks",
    "legend",
    "legend_html",
    "run_prediction",
    "timeline_figure",
    "timeline_rows",
    "zip_masks",
]
