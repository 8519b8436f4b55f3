"""`avsbench make-toy-data`: write the synthetic AVSBench (`avsbench.data.synthetic`) under
--out, in the exact official layouts; scripts/demo.sh runs it."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from avsbench.data.layouts import S4_CATEGORIES
from avsbench.data.synthetic import ROOT_NAMES, WRITERS, make_toy_data
from avsbench.errors import InputError
from avsbench.owned_folder import FolderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="avsbench_data", help="folder receiving the dataset roots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the clip counts")
    parser.add_argument("--settings", default="s4,ms3,avss", help="comma separated: s4,ms3,avss")
    parser.add_argument(
        "--num-categories", type=int, default=8, help="categories used (2..23; fewer learn faster)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace synthetic data this generator wrote (only the files of its manifest)",
    )


def check_arguments(args: argparse.Namespace) -> tuple[str, ...]:
    """The settings of `args`; InputError naming the flag and the fix for a bad flag, or
    for --overwrite on a dataset root that is a link (it would replace the link's target)."""
    valid = ",".join(WRITERS)
    settings = tuple(s.strip() for s in args.settings.split(",") if s.strip())
    unknown = [s for s in settings if s not in WRITERS]
    if unknown or not settings:
        raise InputError(f"--settings {args.settings}: unknown setting(s) {unknown}; use {valid}")
    if not 2 <= args.num_categories <= len(S4_CATEGORIES):
        raise InputError(
            f"--num-categories {args.num_categories}: use 2..{len(S4_CATEGORIES)} categories"
        )
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise InputError(f"--scale {args.scale:g}: must be a positive number (1 = full size)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; pass --out a folder you can write to")
    for setting in settings:
        root = out / ROOT_NAMES[setting]
        if args.overwrite and root.is_symlink():
            raise InputError(
                f"{root} is a symbolic link (to {os.readlink(root)}); --overwrite replaces "
                "only a real folder: remove the link or pass --out another folder"
            )
    return settings


def run(args: argparse.Namespace) -> int:
    settings = check_arguments(args)
    start = time.perf_counter()
    try:
        roots = make_toy_data(
            args.out,
            seed=args.seed,
            scale=args.scale,
            settings=settings,
            num_categories=args.num_categories,
            overwrite=args.overwrite,
        )
    except FileExistsError:  # a root holding data, named with the fix: one line (cli.main)
        raise
    except FolderError as err:  # what is in the way of --overwrite is named: one line
        raise InputError(str(err)) from err
    except OSError as err:  # --out is a file, or cannot be written
        where = err.filename or args.out
        raise InputError(
            f"{where}: {err.strerror or err}; pass --out a folder you can write to"
        ) from err
    for setting, root in roots.items():
        print(f"{setting}: {root}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
