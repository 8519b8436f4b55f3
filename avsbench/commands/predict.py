"""`avsbench predict VIDEO --weights CKPT`: segment the sounding objects of any video file.

Writes masks/ (one PNG per second), overlay.mp4 (every source frame with its mask, the
source's sound) and summary.json into --out (docs/PREDICT.md); `avsbench.predict.predict_video`
does the work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsbench.maskiges import add_sam_arguments
from avsbench.media.video import DEFAULT_MAX_PIXELS
from avsbench.predict import PredictError, predict_video
from avsbench.zoo import ZooError, resolve_weights

DESCRIPTION = """Segment the sounding objects of a video file with a trained model.

Writes into --out: masks/ (one PNG per second of video), overlay.mp4 (the video with its
masks drawn over it, with its sound) and summary.json (what was predicted, from which
checkpoint). Any video FFmpeg reads works; the audio track is what the model listens to.
Example: avsbench predict clip.mp4 --weights s4_best.pth --out clip_masks
(docs/PREDICT.md); --weights avsegformer-s4-pvt after avsbench download avsegformer-s4-pvt
(docs/ZOO.md)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="any video file PyAV (FFmpeg) can read")
    parser.add_argument(
        "--weights",
        required=True,
        help="checkpoint: <session>_best.pth, an official .pth, or a zoo name fetched by "
        "avsbench download (avsbench models lists them)",
    )
    parser.add_argument(
        "--setting",
        choices=("s4", "ms3", "avss"),
        default=None,
        help="optional check: the checkpoint must hold a model of this setting",
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="optional check: resnet50 | pvt_v2_b5 (or resnet | pvt)",
    )
    parser.add_argument(
        "--vggish-weights",
        default=None,
        help="vggish-10086976.pth (overrides the checkpoint config's VGGish file)",
    )
    add_sam_arguments(
        parser,
        required=False,
        weights_help="COMBO / VCT: segment-anything weights (e.g. sam_vit_b_01ec64.pth) that "
        "make the maskiges these models read (docs/MASKIGE.md)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: ./<video name>_avsbench); must not exist, be empty or "
        "hold an earlier output of predict",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier output of predict in --out (nothing else is ever deleted)",
    )
    parser.add_argument(
        "--allow-silence",
        action="store_true",
        help="predict a video without audio track with silent audio instead of failing",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--batch-clips", type=int, default=1, help="windows per forward pass (default 1)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse frames larger than this many pixels (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--masks_per_second",
        "--masks-per-second",
        type=int,
        default=1,
        help="masks per second in overlay.mp4, by sliding the window (default 1)",
    )
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    parser.add_argument("--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    """`avsbench predict`: returns 0 on success, 2 on bad input (message on stderr)."""
    out = args.out or f"{Path(args.video).stem}_avsbench"

    def log(message: str) -> None:
        if not args.quiet or message.startswith("warning"):
            print(message, file=sys.stderr)

    try:
        weights = resolve_weights(args.weights)  # a zoo name -> its verified file
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = predict_video(
            args.video,
            weights,
            setting=args.setting,
            backbone=args.backbone,
            vggish_weights=args.vggish_weights,
            out_dir=out,
            device=args.device,
            allow_silence=args.allow_silence,
            batch_clips=args.batch_clips,
            max_pixels=args.max_pixels,
            overwrite=args.overwrite,
            write_overlay=not args.no_overlay,
            keep_masks=False,
            masks_per_second=args.masks_per_second,
            log=log,
            sam_weights=args.sam_weights,
            sam_model=args.sam_model,
        )
    except PredictError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"{result.num_seconds} masks, overlay and summary written to {result.out_dir}",
            file=sys.stderr,
        )
    return 0
