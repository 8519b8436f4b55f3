"""The folders `avsbench app` reads from: the models folder (checkpoints) and the optional
video folder. Only files inside them can be picked: a name from the page is resolved
(symbolic links followed) and refused unless it lands inside its folder, so neither a
crafted request nor a link pointing elsewhere makes the app read another file.
"""

from __future__ import annotations

import os
from pathlib import Path

from avsbench.errors import InputError
from avsbench.zoo.store import REJECTED_DIR  # files that failed verification: never offered

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
    ".ogv", ".3gp",
)  # fmt: skip
VGGISH_FILE = "vggish-10086976.pth"  # the audio backbone's release file, not a model
MAX_LISTED = 1000  # files offered in a picker (a huge folder is cut, not walked forever)


def default_models_dir() -> Path:
    """The zoo's models folder: $AVSBENCH_MODELS, else <user cache>/avsbench/models."""
    from avsbench.zoo import default_models_dir as zoo_default

    return zoo_default()


def _files_inside(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Names (relative, '/'-separated, sorted) of the files under `folder` with one of
    `suffixes` whose real path stays inside it; hidden entries skipped."""
    root = folder.resolve()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != REJECTED_DIR)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            real = path.resolve()
            if real.is_relative_to(root) and real.is_file():
                found.append(path.relative_to(root).as_posix())
                if len(found) >= MAX_LISTED:
                    return found
    return found


def list_checkpoints(models_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(name shown, path) of every checkpoint file in the models folder (.pth, .pt,
    .safetensors, subfolders included; VGGish files left out); [] when the folder does
    not exist."""
    folder = Path(models_dir)
    if not folder.is_dir():
        return []
    names = _files_inside(folder, CHECKPOINT_SUFFIXES)
    return [(n, folder / n) for n in names if not Path(n).name.lower().startswith("vggish")]


def checkpoint_file(models_dir: str | os.PathLike[str], name: str) -> Path:
    """The checkpoint `name` picked in the page, resolved inside the models folder; a file
    `avsbench download` fetched is used only while its sha256 equals the one recorded when
    it was verified (ZooError, one line, otherwise)."""
    from avsbench.zoo import ZOO, resolve_weights

    path = resolve_inside(models_dir, name, "checkpoint")
    for entry in ZOO:
        if Path(name).as_posix() == entry.local_name:
            return resolve_weights(entry.name, models_dir)
    return path


def vggish_file(models_dir: str | os.PathLike[str], flag: Path | None) -> Path | None:
    """The VGGish weights for checkpoints that need them: the --vggish_weights file, else
    VGGISH_FILE in the models folder if it is there."""
    if flag is not None:
        return flag
    candidate = Path(models_dir) / VGGISH_FILE
    return candidate if candidate.is_file() else None


def list_videos(video_dir: str | os.PathLike[str] | None) -> list[str]:
    """Names of the video files in the video folder ([] without one)."""
    if video_dir is None or not Path(video_dir).is_dir():
        return []
    return _files_inside(Path(video_dir), VIDEO_SUFFIXES)


def resolve_inside(folder: str | os.PathLike[str], name: str, what: str) -> Path:
    """The real path of `name` in `folder`; InputError when it is empty, leads outside the
    folder (.., an absolute path, a symbolic link elsewhere) or is not a file."""
    root = Path(folder).resolve()
    if not name:
        raise InputError(f"no {what} chosen: pick one from the list ({root})")
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InputError(f"{name}: the app reads {what}s only inside {root}; copy the file there")
    if not path.is_file():
        raise InputError(f"{name}: no such {what} file in {root} (refresh the list)")
    return path
