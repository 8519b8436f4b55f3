"""`avsbench download NAME`: fetch a released checkpoint of the zoo into the models folder.

The download resumes where an earlier one stopped; the file is verified (published
sha256 if any, the sha256 recorded at its first download, and loading it as the
architecture its row names) before it is put where `--weights NAME` finds it. A file that
fails is moved to <models folder>/rejected/ and not used (docs/ZOO.md).
Example: avsbench download avsegformer-s4-pvt; then
avsbench predict clip.mp4 --weights avsegformer-s4-pvt
"""

from __future__ import annotations

import argparse
import sys

from avsbench.zoo import add_models_dir_argument, store

DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="+", help="zoo names (avsbench models)")
    add_models_dir_argument(parser)
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        default=None,
        help="verify and install a file downloaded by hand (copied; the original is kept)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="accept a file whose sha256 differs from the one recorded at its first download",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Exit status 0 when every NAME is present and verified; errors raise ZooError (the
    command line prints its one line, status 2). Hugging Face's endpoint: $HF_ENDPOINT."""
    from avsbench.zoo.fetch import download

    table = store.ZOO  # looked up on use: tests swap in their own table
    if args.from_file is not None and len(args.name) != 1:
        raise store.ZooError("--from FILE installs one NAME")
    for name in args.name:
        store.by_name(name, table)  # every name checked before anything is fetched
    for name in args.name:
        path = download(
            name,
            args.models_dir,
            table=table,
            refresh=args.refresh,
            from_file=args.from_file,
            quiet=args.quiet,
        )
        print(path, file=sys.stdout)
    return 0
