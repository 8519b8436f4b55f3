"""`avsbench check-data ROOT --setting s4|ms3|avss`: check a dataset before training
(avsbench.data_check, docs/CHECK_DATA.md). Read-only: it writes nothing. Exit status 0 when
the dataset is usable (warnings allowed), 1 when it is not, 2 for a bad argument."""

from __future__ import annotations

import argparse

from avsbench.data.layouts import SPLITS
from avsbench.data_check import SOURCES, check_dataset
from avsbench.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root", metavar="ROOT", help="dataset root, e.g. avsbench_data/Single-source"
    )
    parser.add_argument("--setting", required=True, choices=("s4", "ms3", "avss"))
    parser.add_argument(
        "--source",
        default="auto",
        choices=SOURCES,
        help="release to read (auto: AVSBench-object for S4/MS3 when present, else AVSBench-"
        "semantic; vct384: VCT's 384-px copies), as --data_source of train.sh",
    )
    parser.add_argument("--splits", default=",".join(SPLITS), help="splits whose files are read")
    parser.add_argument(
        "--maskige", action="store_true", help="also check each frame's maskige (COMBO, VCT)"
    )
    parser.add_argument("--examples", type=int, default=3, help="paths shown per problem kind")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    if not splits or any(s not in SPLITS for s in splits):
        raise InputError(f"--splits {args.splits}: use a comma-separated list of {list(SPLITS)}")
    if args.examples < 1:
        raise InputError(f"--examples {args.examples}: use 1 or more")
    found = check_dataset(
        args.root,
        args.setting,
        source=args.source,
        splits=splits,
        maskige=args.maskige,
        progress=not args.no_progress,
    )
    print(found.summary(args.examples))
    return 0 if found.usable else 1
