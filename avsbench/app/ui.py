"""The page of `avsbench app` (gradio Blocks): the inputs, the run with its progress, and
the results (docs/APP.md). The work is `avsbench.app.results`; errors reach the page as
one line (gr.Error with the project's message), never a traceback.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from avsbench.app import folders, results
from avsbench.errors import CheckpointError, InputError, PredictError, error_line

KEPT_RUNS = 8  # run folders kept for download; older ones are deleted
CSS = """
.avs-legend { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; }
.avs-swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px;
  border: 1px solid #0003; margin-right: 4px; vertical-align: middle; }
"""
USER_ERRORS = (PredictError, InputError, CheckpointError, FileNotFoundError)


@dataclass
class AppConfig:
    """Where the app reads and writes: models_dir and video_dir (read only inside them),
    work_dir (the app's own folder: uploads and runs), device (None: cuda if any),
    vggish_weights (for official checkpoints without VGGish; default: the models folder's
    vggish-10086976.pth)."""

    models_dir: Path
    video_dir: Path | None
    work_dir: Path
    device: str | None = None
    vggish_weights: Path | None = None
    max_file_size: int = 500 * 1024 * 1024


def _one_line_error(exc: BaseException, upload: Path | None = None) -> gr.Error:
    """gr.Error with the exception's message on one line; anything unexpected is logged
    with its traceback on the server's stderr and named in one line on the page."""
    if isinstance(exc, USER_ERRORS):
        message = error_line(exc)
    else:
        traceback.print_exception(exc, file=sys.stderr)
        message = f"unexpected {type(exc).__name__}: {error_line(exc)} (details in the app's log)"
    line = results.short_path_messages(message, upload)
    return gr.Error(line, duration=None, print_exception=False)


def model_choices(config: AppConfig) -> list[str]:
    return [name for name, _path in folders.list_checkpoints(config.models_dir)]


def build(config: AppConfig) -> gr.Blocks:
    """The gradio app for `config` (not launched)."""
    from avsbench.data.palette import CLASS_NAMES

    vggish = folders.vggish_file(config.models_dir, config.vggish_weights)
    cache = results.ModelCache(config.device, vggish)
    runs_dir = config.work_dir / "runs"

    def refresh(model: str | None, picked: str | None):
        models, videos = model_choices(config), folders.list_videos(config.video_dir)
        return (
            gr.update(choices=models, value=model if model in models else _first(models)),
            gr.update(choices=videos, value=picked if picked in videos else None),
        )

    def describe_model(model: str | None):
        """The picked checkpoint loaded (a wrong file fails here already); the controls
        that fit its setting shown."""
        if not model:
            return "No checkpoint in the models folder yet.", gr.update(), gr.update()
        try:
            predictor = cache.get(folders.checkpoint_file(config.models_dir, model))
        except Exception as exc:  # noqa: BLE001 (every failure becomes one line)
            raise _one_line_error(exc) from None
        cfg = predictor.config
        text = (
            f"**{model}**: {cfg.model.method} · {predictor.setting.upper()} · "
            f"{cfg.model.backbone} · {predictor.frames_per_clip}-second windows"
        )
        semantic = predictor.semantic
        return text, gr.update(visible=not semantic), gr.update(visible=semantic)

    def predict(
        upload: str | None,
        picked: str | None,
        model: str | None,
        masks_per_second: float,
        threshold: float,
        classes: list[str] | None,
        allow_silence: bool,
        progress=gr.Progress(),  # noqa: B008 (gradio's way to ask for progress)
    ):
        upload_path = Path(upload) if upload else None
        try:
            if upload_path is not None:  # gradio's upload folder is inside the app's folder
                video = folders.resolve_inside(config.work_dir, str(upload_path), "upload")
            elif picked and config.video_dir is not None:
                video = folders.resolve_inside(config.video_dir, picked, "video")
            else:
                raise InputError("no video: drop a video file in, or pick one from the list")
            checkpoint = folders.checkpoint_file(config.models_dir, model or "")
            progress(0.0, desc="loading the model")
            predictor = cache.get(checkpoint)
            duration = _duration(video)
            progress(0.0, desc="predicting")

            def seconds_done(done: int) -> None:
                if duration:
                    progress(min(done / duration, 1.0), desc=f"{done} s of {duration:.0f} s")
                else:
                    progress(None, desc=f"{done} s predicted")

            outcome = results.run_prediction(
                video,
                predictor,
                runs_dir,
                masks_per_second=int(masks_per_second),
                threshold=float(threshold),
                shown_classes=classes or (),
                allow_silence=allow_silence,
                progress=seconds_done,
            )
        except Exception as exc:  # noqa: BLE001 (every failure becomes one line)
            raise _one_line_error(exc, upload_path) from None
        results.remove_old_runs(runs_dir, KEPT_RUNS)
        summary = outcome.summary
        status = (
            f"{summary['num_seconds']} s of video · {int(masks_per_second)} mask(s) per "
            f"second · {summary['elapsed_s']:.1f} s"
        )
        if summary["warnings"]:
            status += " · warning: " + "; ".join(summary["warnings"])
        figure = results.timeline_figure(
            outcome.timeline, outcome.legend, int(summary["num_seconds"])
        )
        return (
            str(outcome.overlay) if outcome.overlay else None,
            figure,
            results.legend_html(outcome.legend),
            str(outcome.masks_zip),
            str(outcome.summary_path),
            status,
        )

    with gr.Blocks(title="avsbench: segment the sounding objects of a video") as demo:
        gr.Markdown(
            "## Segment the sounding objects of a video\n"
            "Drop a video with sound in (or pick one), pick a model, press **Segment**. "
            f"Models folder: `{config.models_dir}`."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Video (drop a file here)", elem_id="upload")
                picked = gr.Dropdown(
                    choices=folders.list_videos(config.video_dir),
                    value=None,
                    label=f"…or a video from {config.video_dir} (when none is dropped in)"
                    if config.video_dir
                    else "",
                    visible=config.video_dir is not None,
                    elem_id="picked_video",
                )
                models = model_choices(config)
                with gr.Row():
                    model = gr.Dropdown(
                        choices=models,
                        value=_first(models),
                        label="Model (checkpoint files in the models folder)",
                        elem_id="model",
                        scale=5,
                    )
                    rescan = gr.Button("↻", scale=1, min_width=40, elem_id="rescan")
                model_info = gr.Markdown(elem_id="model_info")
                per_second = gr.Slider(
                    1, 10, value=1, step=1, label="Masks per second", elem_id="per_second"
                )
                threshold = gr.Slider(
                    0.05, 0.95, value=0.5, step=0.05, label="Threshold (S4/MS3)",
                    elem_id="threshold",
                )  # fmt: skip
                classes = gr.Dropdown(
                    choices=list(CLASS_NAMES[1:]),
                    value=[],
                    multiselect=True,
                    label="Classes to show (AVSS; empty: all)",
                    visible=False,
                    elem_id="classes",
                )
                silence = gr.Checkbox(
                    label="Predict a video without sound with silence (--allow-silence)"
                )
                run = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                overlay = gr.Video(
                    label="Overlay (with its sound)",
                    interactive=False,
                    elem_id="overlay",
                )
                timeline = gr.Plot(
                    label="Timeline", show_label=False, format="png", elem_id="timeline"
                )
                legend_box = gr.HTML(elem_id="legend")
                with gr.Row():
                    masks_zip = gr.File(label="Masks (PNG zip)", elem_id="masks_zip")
                    summary_file = gr.File(label="summary.json", elem_id="summary_file")
        rescan.click(refresh, [model, picked], [model, picked])
        model.change(lambda m: f"loading **{m}**…" if m else "", model, model_info).then(
            describe_model, model, [model_info, threshold, classes]
        )
        demo.load(refresh, [model, picked], [model, picked]).then(
            describe_model, model, [model_info, threshold, classes]
        )
        run.click(
            predict,
            [upload, picked, model, per_second, threshold, classes, silence],
            [overlay, timeline, legend_box, masks_zip, summary_file, status],
        )
    return demo


def _first(items: list[str]) -> str | None:
    return items[0] if items else None


def _duration(video: Path) -> float | None:
    """The video's length from its header (s), for the progress bar; None if unknown."""
    from avsbench.media.video import MediaError, probe_video

    try:
        return probe_video(video).header_duration
    except MediaError:  # predict_video names what is wrong with the file
        return None
