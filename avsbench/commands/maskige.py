"""`avsbench maskige VIDEO_OR_DATASET --sam_weights FILE`: make COMBO's / VCT's maskiges with
segment-anything (docs/MASKIGE.md); `avsbench.maskiges` does the work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsbench.errors import CheckpointError, FolderError, InputError, MediaError
from avsbench.maskiges import add_sam_arguments
from avsbench.maskiges.sam import GeneratorParameters

DESCRIPTION = """Make the maskiges COMBO and VCT read, with segment-anything's automatic mask
generator and the SAM weights you bring (they are NOT the published Semantic-SAM maskiges;
every output says so).

A dataset root (or a folder of roots): writes every missing maskige where the loaders read
them (pre_SAM_mask/, VCT's 384-px copies), never replacing files it did not write;
rerun to resume. A video: the maskiges of the frames predict samples, into --out.
Example: avsbench maskige avsbench_data --sam_weights sam_vit_b_01ec64.pth
(docs/MASKIGE.md)."""

_DEFAULTS = GeneratorParameters()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="VIDEO_OR_DATASET", help="a video file, or an AVSBench dataset root"
    )
    add_sam_arguments(
        parser, required=True, weights_help="segment-anything weights, e.g. sam_vit_b_01ec64.pth"
    )
    parser.add_argument(
        "--out", default=None, help="video only: output folder (default ./<video name>_maskiges)"
    )
    parser.add_argument(
        "--setting",
        choices=("s4", "ms3", "avss"),
        default="s4",
        help="video only: frames as predict prepares them for this setting (default s4: 224 px)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="remake files this command wrote before (never other files)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    for name, value in vars(_DEFAULTS).items():
        parser.add_argument(
            f"--{name}",
            type=type(value),
            default=value,
            help=f"SamAutomaticMaskGenerator's {name} (default {value})",
        )
    parser.add_argument("--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    """`avsbench maskige`: 0 on success, 2 on bad input (one line on stderr)."""
    from avsbench.maskiges.sam import MaskigeGenerator, SamWeightsError, load_sam
    from avsbench.predictor import PredictError, resolve_device

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    target = Path(args.target)
    parameters = GeneratorParameters(**{k: getattr(args, k) for k in vars(_DEFAULTS)})
    try:
        if not target.exists():
            raise InputError(f"{target}: not found; give a video file or a dataset root")
        if target.is_dir():  # the target is checked before the weights are read
            from avsbench.maskiges.dataset import find_roots

            find_roots(target)
        else:
            from avsbench.media.video import probe_video

            probe_video(target)
        device = resolve_device(args.device)
        sam = load_sam(args.sam_weights, args.sam_model, device)
        generator = MaskigeGenerator(sam, parameters)
        log(f"segment-anything {sam.model_type} from {sam.path} on {device}")
        if target.is_dir():
            from avsbench.maskiges.dataset import make_dataset_maskiges

            reports = make_dataset_maskiges(
                target, generator, overwrite=args.overwrite, show_progress=not args.quiet, log=log
            )
            for r in reports:
                log(f"{r.root}: {r.written} maskiges written, {r.kept} existing kept")
            return 0
        from tqdm import tqdm

        from avsbench.maskiges.video import make_video_maskiges

        out = args.out or f"{target.stem}_maskiges"
        with tqdm(unit="s", disable=args.quiet, desc="maskiges") as bar:
            folder = make_video_maskiges(
                target, generator, out, setting=args.setting, overwrite=args.overwrite,
                progress=bar.update,
            )  # fmt: skip
        log(f"maskiges written to {folder}")
        return 0
    except (SamWeightsError, CheckpointError, PredictError, MediaError, FolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
