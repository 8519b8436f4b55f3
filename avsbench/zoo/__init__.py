"""The model zoo: released checkpoints by name, fetched and verified into a local folder.

    avsbench models                      # the table, and which files are here
    avsbench download avsegformer-s4-pvt # fetch, verify, record its sha256
    avsbench predict clip.mp4 --weights avsegformer-s4-pvt

`ZOO` (avsbench/zoo/table.py) is the table, gathered from each method package's
releases.py; `resolve_weights` turns a `--weights` value into a file (a zoo name into its
verified local file); `available` lists what the models folder holds (for the web app);
`download` fetches. Nothing is fetched at import.
docs/ZOO.md describes the folder, the record and the checks.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from avsbench.zoo.store import (
    ENV_VAR,
    ZooError,
    available,
    by_name,
    default_models_dir,
    resolve_weights,
)
from avsbench.zoo.table import ZOO, ZooEntry

__all__ = [
    "ENV_VAR",
    "ZOO",
    "ZooEntry",
    "ZooError",
    "add_models_dir_argument",
    "available",
    "by_name",
    "default_models_dir",
    "download",
    "resolve_weights",
    "weights_argument",
]


def download(name: str, models_dir: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """`avsbench.zoo.fetch.download` (imported on use: huggingface_hub and gdown load then)."""
    from avsbench.zoo.fetch import download as fetch

    return fetch(name, models_dir, **kwargs)


def add_models_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The `--models_dir` flag of the zoo's commands (default: $AVSBENCH_MODELS, else the
    user cache dir)."""
    parser.add_argument(
        "--models_dir",
        "--models-dir",
        default=None,
        help=f"the models folder (default: ${ENV_VAR}, else the user cache dir)",
    )


def weights_argument(value: str) -> str:
    """argparse `type` of the --weights flags of train.sh / test.sh: a zoo name becomes its
    verified file in the models folder ($AVSBENCH_MODELS or the default); a path stays."""
    try:
        path = resolve_weights(value)
    except ZooError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return value if path == Path(value) else str(path)  # a path is left as typed
