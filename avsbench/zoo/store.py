"""The local models folder: where zoo files live, what was verified, how a name becomes a file.

    <models folder>/                  AVSBENCH_MODELS, --models_dir, or the user cache dir
        avsegformer-s4-pvt.pth        a zoo file, verified (its row's name + .pth)
        zoo-record.json               sha256, size and verification of each zoo file
        my_finetuned.pth              any other checkpoint the user puts there
        .partial/<name>/              downloads in progress (resumed by the next download)
        rejected/<name>-<time>.pth    files that failed verification, kept aside

A zoo file is used only when its sha256 equals the one recorded when it was verified
(`resolve_weights`); a file with no record, or another sha256, is refused with the command
that fixes it. Verification (`verify_file`) = the published sha256 where the row has one,
the recorded one where a record exists, and `checkpoints.load` building the row's
architecture (method, setting, backbone) with every key of the model present.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsbench.errors import InputError
from avsbench.zoo.table import ZOO, ZooEntry

ENV_VAR = "AVSBENCH_MODELS"
RECORD_FILE = "zoo-record.json"
RECORD_FORMAT = "avsbench-zoo-record/1"
PARTIAL_DIR = ".partial"
REJECTED_DIR = "rejected"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class ZooError(InputError):
    """A zoo name, file or download that cannot be used (one line naming it and the fix)."""


def by_name(name: str, table: tuple[ZooEntry, ...] | None = None) -> ZooEntry:
    """The row called `name`; ZooError listing the names otherwise."""
    table = ZOO if table is None else table
    for entry in table:
        if entry.name == name:
            return entry
    names = ", ".join(e.name for e in table)
    raise ZooError(f"no model called {name!r} in the zoo (avsbench models lists them: {names})")


def default_models_dir() -> Path:
    """$AVSBENCH_MODELS, else <user cache dir>/avsbench/models (XDG_CACHE_HOME respected)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    try:
        import platformdirs
    except ImportError:  # requirements.txt pins it; without it, the XDG rule by hand
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(cache).expanduser() / "avsbench" / "models"
    return Path(platformdirs.user_cache_dir("avsbench", appauthor=False)) / "models"


def models_dir_of(models_dir: str | os.PathLike | None) -> Path:
    return default_models_dir() if models_dir is None else Path(models_dir).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# The record (zoo-record.json)
# ---------------------------------------------------------------------------------------
def read_record(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> {"file", "sha256", "size", "mtime_ns", "source", "verified", "recorded"}."""
    path = folder / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if data.get("format") != RECORD_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {data.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ZooError(
            f"{path} is not a zoo record ({err}): move it away; `avsbench download NAME` "
            "verifies and records each file again"
        ) from err
    return files


def write_record_entry(folder: Path, name: str, entry: dict[str, Any] | None) -> None:
    """Set (or, with None, remove) one name of the record, atomically, under a file lock."""
    from filelock import FileLock

    from avsbench.fileio import atomic_write_json

    with FileLock(str(folder / f".{RECORD_FILE}.lock")):
        files = read_record(folder)
        if entry is None:
            files.pop(name, None)
        else:
            files[name] = entry
        atomic_write_json(folder / RECORD_FILE, {"format": RECORD_FORMAT, "files": files})


def record_entry(entry: ZooEntry, path: Path, sha256: str, verified: str) -> dict[str, Any]:
    stat = path.stat()
    return {
        "file": path.name,
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "source": entry.source_url,
        "upstream_file": entry.upstream_file,
        "verified": verified,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------
def verify_file(entry: ZooEntry, path: Path, recorded_sha256: str | None = None) -> tuple[str, str]:
    """(sha256, what was loaded) of a file that is what `entry` says; ZooError otherwise.

    Checks, in this order: the row's size and published sha256 (if known), the sha256
    recorded at the first download (if any), then `checkpoints.load` (weights only, no code
    from the file runs): the detector must build the row's method, setting and backbone,
    and every tensor of that model must be in the file (the detectors refuse a missing key).
    """
    from avsbench import checkpoints

    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ZooError(f"{path}: {size} bytes, but {entry.name} is {entry.size} bytes")
    digest = sha256_of(path)
    if entry.sha256 is not None and digest != entry.sha256.lower():
        raise ZooError(
            f"{path}: sha256 {digest} is not the published {entry.sha256} of {entry.name}"
        )
    if recorded_sha256 is not None and digest != recorded_sha256:
        raise ZooError(
            f"{path}: sha256 {digest} differs from {recorded_sha256}, recorded when "
            f"{entry.name} was first downloaded (the upstream file changed, or this one is "
            f"damaged); `avsbench download {entry.name} --refresh` accepts a changed file"
        )
    try:
        loaded = checkpoints.load(path, expect_setting=entry.setting, what=f"{entry.name} file")
    except checkpoints.CheckpointError as err:
        raise ZooError(_first_line(str(err))) from err
    model = loaded.config.model
    found = (model.method, model.setting, model.backbone)
    wanted = (entry.method, entry.setting, entry.backbone)
    if found != wanted:
        raise ZooError(
            f"{path} holds a {'/'.join(found)} model, but {entry.name} is {'/'.join(wanted)}"
        )
    return digest, loaded.report.summary()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:3]) + (" ..." if len(lines) > 3 else "")


# ---------------------------------------------------------------------------------------
# What is present, and name -> file
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalState:
    """A zoo row's file in the models folder (`local_state`)."""

    path: Path
    status: str  # absent | verified | recorded | touched | changed | unrecorded
    record: dict[str, Any] | None


def local_state(entry: ZooEntry, folder: Path, *, rehash: bool = False,
                record: dict[str, dict[str, Any]] | None = None) -> LocalState:  # fmt: skip
    """Where `entry`'s file is and whether it can be used. Without `rehash` an unchanged
    size and modification time stand for the recorded sha256 ("recorded"; "touched": same
    size, another time); with it the file is hashed ("verified" or "changed")."""
    record = read_record(folder) if record is None else record
    path = folder / entry.local_name
    kept = record.get(entry.name)
    if not path.is_file():
        return LocalState(path, "absent", kept)
    if kept is None or kept.get("file") != path.name:
        return LocalState(path, "unrecorded", None)
    stat = path.stat()
    if stat.st_size != kept.get("size"):
        return LocalState(path, "changed", kept)
    if rehash:
        return LocalState(
            path, "verified" if sha256_of(path) == kept["sha256"] else "changed", kept
        )
    same_time = stat.st_mtime_ns == kept.get("mtime_ns")
    return LocalState(path, "recorded" if same_time else "touched", kept)


def available(
    models_dir: str | os.PathLike | None = None, table: tuple[ZooEntry, ...] | None = None
) -> list[tuple[str, Path, ZooEntry | None]]:
    """(name or file name, path, row or None) of the zoo files present with a record and of
    every other checkpoint file (.pth, .pt, .ckpt, .bin) directly in the models folder. A
    zoo file is listed when recorded; `resolve_weights` checks its sha256 before use."""
    folder = models_dir_of(models_dir)
    table = ZOO if table is None else table
    if not folder.is_dir():
        return []
    record = read_record(folder)
    found: list[tuple[str, Path, ZooEntry | None]] = []
    zoo_files = set()
    for entry in table:
        state = local_state(entry, folder, record=record)
        zoo_files.add(entry.local_name)
        if state.status in ("recorded", "touched", "verified"):
            found.append((entry.name, state.path, entry))
    for path in sorted(folder.iterdir()):
        if path.name in zoo_files or path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
            found.append((path.name, path, None))
    return found


def resolve_weights(
    value: str | os.PathLike,
    models_dir: str | os.PathLike | None = None,
    table: tuple[ZooEntry, ...] | None = None,
) -> Path:
    """The checkpoint file `value` names: an existing file, or anything that is not a zoo
    name, stays the path it is; a zoo name becomes its file in the models folder once its
    sha256 equals the one recorded when it was verified. ZooError (one line with the
    command that fixes it) for a zoo file not downloaded, not recorded or changed."""
    text = os.fspath(value)
    table = ZOO if table is None else table
    names = {e.name for e in table}
    if text not in names or Path(text).is_file():
        return Path(text)
    entry = by_name(text, table)
    folder = models_dir_of(models_dir)
    state = local_state(entry, folder)
    fix = f"run `avsbench download {entry.name}`" + (
        f" --models_dir {folder}" if models_dir is not None else ""
    )
    if state.status == "absent":
        raise ZooError(f"{entry.name} is not downloaded into {folder}: {fix}")
    if state.status == "unrecorded":
        raise ZooError(f"{state.path} was not verified by avsbench download: {fix}")
    digest = sha256_of(state.path)
    if state.record is None or digest != state.record["sha256"]:
        raise ZooError(
            f"{state.path} changed since it was verified (sha256 {digest}, recorded "
            f"{state.record and state.record['sha256']}): {fix} to fetch it again"
        )
    return state.path
