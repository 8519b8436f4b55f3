"""`avsbench preprocess --setting s4|ms3 [--root ROOT]`: raw AVSBench-object videos -> the
official layouts (frames, 16 kHz wav, log-mel `.pkl` and `.npy`), as `avsbench.preprocess`
describes."""

from __future__ import annotations

import argparse

from avsbench.data.layouts import SPLITS
from avsbench.errors import InputError
from avsbench.preprocess import JOB_BUILDERS, preprocess

DEFAULT_ROOTS = {"s4": "avsbench_data/Single-source", "ms3": "avsbench_data/Multi-sources"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", choices=sorted(JOB_BUILDERS), required=True)
    parser.add_argument(
        "--root",
        default=None,
        help="dataset root (default: avsbench_data/Single-source or /Multi-sources)",
    )
    parser.add_argument("--splits", default="train,val,test", help="comma separated")
    parser.add_argument("--overwrite", action="store_true", help="redo clips already processed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    root = args.root or DEFAULT_ROOTS[args.setting]
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise InputError(f"--splits {args.splits}: unknown split(s) {bad}; use {','.join(SPLITS)}")
    report = preprocess(
        args.setting, root, splits=splits, overwrite=args.overwrite, progress=not args.quiet
    )
    print(
        f"{len(report['done'])} processed, {len(report['skipped'])} already done, "
        f"{len(report['failed'])} failed"
    )
    for video, reason in report["failed"]:
        print(f"FAILED {video}: {reason}")
    return 1 if report["failed"] else 0
