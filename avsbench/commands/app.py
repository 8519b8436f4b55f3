"""`avsbench app`: a local web page to segment the sounding objects of a video.

Drop a video in (or pick one from --video_dir), pick a checkpoint of --models_dir, and
watch the overlay with its sound, a per-second timeline, and download the masks and
summary.json (docs/APP.md). Serves on 127.0.0.1 (this machine only) unless --host says
otherwise; `avsbench.app.server` does the work (gradio is imported only when it runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """A local web app: segment the sounding objects of your own videos.

Open the printed address in a browser, drop a video with sound in, pick a model from the
checkpoint files in --models_dir, press Segment: the overlay plays with its sound, a
timeline shows how much of each second sounds, and the masks (PNG zip) and summary.json
can be downloaded. Example: avsbench app --models_dir ~/avs_models (docs/APP.md)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from avsbench.app.folders import default_models_dir

    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it "
        "to the network)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--models_dir",
        type=Path,
        default=None,
        help=f"folder of checkpoint files (.pth, .pt, .safetensors) the page offers; the app "
        f"reads no checkpoint outside it (default {default_models_dir()})",
    )
    parser.add_argument(
        "--video_dir",
        type=Path,
        default=None,
        help="optional folder of videos the page offers besides uploads",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--vggish_weights",
        type=Path,
        default=None,
        help="vggish-10086976.pth, for official checkpoints that hold no VGGish (default: "
        "that file in --models_dir, if there)",
    )
    parser.add_argument(
        "--max_upload_mb",
        type=int,
        default=500,
        help="largest video the page accepts, in MB (default 500)",
    )


def run(args: argparse.Namespace) -> int:
    """`avsbench app`: serves until Ctrl-C or SIGTERM."""
    from avsbench.app.folders import default_models_dir
    from avsbench.app.server import serve
    from avsbench.errors import InputError
    from avsbench.predict import PredictError, resolve_device

    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: must be 1..65535")
    if args.max_upload_mb < 1:
        raise InputError(f"--max_upload_mb {args.max_upload_mb}: must be >= 1")
    try:
        resolve_device(args.device)  # a bad --device fails before the server starts
    except PredictError as exc:
        raise InputError(str(exc)) from None
    return serve(
        models_dir=args.models_dir or default_models_dir(),
        video_dir=args.video_dir,
        host=args.host,
        port=args.port,
        device=args.device,
        vggish_weights=args.vggish_weights,
        max_upload_mb=args.max_upload_mb,
    )
