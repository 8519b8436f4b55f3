"""Decoded-frame cache: the samples of an S4 / MS3 / AVSS dataset decoded once into uint8
memory maps and served bit for bit as the dataset computes them (docs/FRAME_CACHE.md).

Decoding and resizing the PNG/JPEG frames and masks is most of a dataset's cost (about
300 frames/s at 224 px in one process). `open_frame_cache(dataset, folder)` returns a
dataset with the same samples read from `<folder>/<setting>_<split>_<S>px_<root hash>/`
(layout in frame_cache_build.py). The entry is built on first use and rebuilt when its
fingerprint changes (frame_fingerprint.py: size, mtime and ctime of every source file,
the decoding code, library versions). Builders take turns on a file lock, so torchrun
ranks and concurrent runs build an entry once; a folder that is not ours is never
written to or deleted. Serving normalises with `transforms.normalize_pixels`, the
function the datasets use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avsbench.data import frame_fingerprint
from avsbench.data.extra_inputs import ExtraInput
from avsbench.data.frame_cache_build import (
    ARRAYS,
    BUILDING_MARKER,
    FORMAT,
    FORMAT_FAMILY,
    MANIFEST,
    FrameCacheError,
    build_entry,
    default_build_workers,
    extra_array,
)
from avsbench.data.transforms import normalize_pixels

logger = logging.getLogger(__name__)

FOLDER_MARKER = "avsbench_frame_cache.json"  # marks a --frame_cache folder as ours

__all__ = ["FrameCacheError", "FrameCachedDataset", "open_frame_cache"]


# ---------------------------------------------------------------------------------------
# The cache folder, its entries and their locks
# ---------------------------------------------------------------------------------------
def claim_folder(folder: str | os.PathLike[str]) -> Path:
    """`folder` as a frame-cache folder: created (with its marker) if missing or empty;
    an existing folder without our marker is refused and left untouched."""
    root = Path(folder).expanduser()
    marker = root / FOLDER_MARKER
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise FrameCacheError(f"{root}: --frame_cache must be a folder, this is a file") from exc
    except OSError as exc:
        raise FrameCacheError(f"{root}: cannot create the frame-cache folder ({exc})") from exc
    if not marker.is_file():
        others = [p.name for p in root.iterdir() if p.name != FOLDER_MARKER]
        if others and not marker.is_file():  # re-check: our marker is always created first
            raise FrameCacheError(
                f"{root}: not a frame-cache folder (it holds {sorted(others)[:3]} and no "
                f"{FOLDER_MARKER}); nothing in it is touched. Give --frame_cache an empty "
                "or new folder"
            )
        with contextlib.suppress(FileExistsError):  # another process may create it too
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps({"format": FORMAT, "about": "docs/FRAME_CACHE.md"}) + "\n")
    try:
        text = marker.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameCacheError(
            f"{marker}: unreadable ({exc}); the folder is left untouched"
        ) from exc
    if text and FORMAT_FAMILY not in text:
        raise FrameCacheError(f"{marker}: not written by avsbench; the folder is left untouched")
    return root


def entry_name(dataset: Any) -> str:
    """`<setting>_<split>_<S>px_<hash of the resolved dataset root>`, followed by
    `_m<mask size>` when the masks have another size than the frames, `_<cache_tag>` for
    datasets reading other files of the root (`vct384`: VCT's copies), and by
    `_x<hash of the declarations>` when the dataset declares extra inputs (so that runs
    with and without them keep their own entries)."""
    setting = frame_fingerprint.setting_of(dataset)
    where = hashlib.sha1(str(Path(dataset.root).resolve()).encode()).hexdigest()[:10]
    name = f"{setting}_{dataset.split}_{dataset.image_size}px_{where}"
    if dataset.mask_size != dataset.image_size:  # e.g. VCT: frames 384, test masks 224
        name += f"_m{dataset.mask_size}"
    if getattr(dataset, "cache_tag", ""):  # other files of the same root (VCT's copies)
        name += f"_{dataset.cache_tag}"
    if dataset.extra_inputs:
        declared = json.dumps([extra.describe() for extra in dataset.extra_inputs])
        name += "_x" + hashlib.sha1(declared.encode()).hexdigest()[:8]
    return name


@contextlib.contextmanager
def exclusive_lock(path: Path, what: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (released on exit, also when the process dies)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise FrameCacheError(
            f"{path}: cannot open the lock file ({exc}); the frame-cache folder must be writable"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("frame cache: waiting for another process working on %s", what)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_manifest(entry: Path) -> dict[str, Any] | None:
    """The manifest of `entry`; None when there is no entry; FrameCacheError when something
    that is not ours stands there."""
    if not entry.exists() and not entry.is_symlink():
        return None
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith(
        FORMAT_FAMILY + "/"
    ):
        raise FrameCacheError(
            f"{entry}: exists but holds no avsbench frame-cache {MANIFEST}; it is left "
            "untouched. Remove it yourself or give --frame_cache another folder"
        )
    return manifest


def _arrays_intact(entry: Path, manifest: dict[str, Any]) -> bool:
    try:
        return all(
            list(np.load(entry / f"{name}.npy", mmap_mode="r").shape) == spec["shape"]
            for name, spec in manifest["arrays"].items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _is_ours(path: Path) -> bool:
    """A leftover of an interrupted build (marker inside) or of a swap (our manifest)."""
    if (path / BUILDING_MARKER).is_file():
        return True
    with contextlib.suppress(FrameCacheError):
        return read_manifest(path) is not None
    return False


def _remove_leftovers(root: Path, name: str) -> None:
    """Temporary folders of `name` left by killed builds (call with the entry's lock held)."""
    for path in [*root.glob(f".{name}.building-*"), *root.glob(f".{name}.stale-*")]:
        if path.is_dir() and not path.is_symlink() and _is_ours(path):
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------
class FrameCachedDataset(Dataset):
    """The samples of a built entry (same dict, same values as the dataset it was built
    from). Memory maps are opened lazily, once per process (DataLoader workers included);
    pickling carries only paths and the clip list."""

    def __init__(self, entry: Path, manifest: dict[str, Any], *, built: bool) -> None:
        self.entry = Path(entry)
        self.build_id = manifest["build_id"]
        self.clips = [tuple(c) for c in manifest["clips"]]
        self.mask_dtype = np.dtype(manifest["mask_dtype"])
        self.shapes = {k: tuple(v["shape"]) for k, v in manifest["arrays"].items()}
        self.extra_inputs = tuple(
            ExtraInput.from_description(d) for d in manifest.get("extra_inputs", [])
        )
        self.built = built  # True when this process built the entry
        self._arrays: dict[str, np.ndarray] | None = None
        self._pid: int | None = None

    def _current_build_id(self) -> str | None:
        try:
            return json.loads((self.entry / MANIFEST).read_text()).get("build_id")
        except (OSError, ValueError):
            return None

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is not None and self._pid == os.getpid():
            return self._arrays
        before = self._current_build_id()
        names = (*ARRAYS, *map(extra_array, self.extra_inputs))
        arrays = {k: np.load(self.entry / f"{k}.npy", mmap_mode="r") for k in names}
        if (
            before != self.build_id
            or self._current_build_id() != self.build_id
            or any(arrays[k].shape != self.shapes[k] for k in names)
        ):
            raise FrameCacheError(
                f"{self.entry}: rebuilt or changed by another process while this one uses it; "
                "start this run again"
            )
        self._arrays, self._pid = arrays, os.getpid()
        return arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        arrays = self._open()
        video_id, category = self.clips[index]
        frame_valid = np.array(arrays["frame_valid"][index])  # [T]

        def values(name: str, encode: Any) -> torch.Tensor:
            pixels = arrays[name][index]  # uint8 [T, 3, S, S], a view of the map
            if frame_valid.all():
                return torch.from_numpy(encode(pixels))
            valid = frame_valid > 0  # AVSS padding frames are zeros, not encoded zeros
            out = np.zeros(pixels.shape, dtype=np.float32)
            out[valid] = encode(pixels[valid])
            return torch.from_numpy(out)

        return {
            "frames": values("frames", normalize_pixels),
            "audio": torch.from_numpy(np.array(arrays["audio"][index])),
            "masks": torch.from_numpy(arrays["masks"][index].astype(self.mask_dtype)),
            "frame_valid": torch.from_numpy(frame_valid),
            "gt_valid": torch.from_numpy(np.array(arrays["gt_valid"][index])),
            "video_id": video_id,
            "category": category,
            **{e.key: values(extra_array(e), e.encode) for e in self.extra_inputs},
        }

    def __repr__(self) -> str:
        return f"FrameCachedDataset({str(self.entry)!r}, n={len(self)})"


def open_frame_cache(
    dataset: Any,
    folder: str | os.PathLike[str],
    *,
    build_workers: int | None = None,
    progress: bool = True,
) -> FrameCachedDataset:
    """`dataset` (S4Dataset / MS3Dataset / AVSSDataset) served from the cache in `folder`,
    building its entry first when it is missing or outdated.

    Processes that open the same entry at once (torchrun ranks, two runs) take turns on a
    file lock: one builds, the others wait and then use its entry. `build_workers`:
    decoding processes while building (None: `default_build_workers`).
    """
    root = claim_folder(folder)
    entry = root / entry_name(dataset)
    fp = frame_fingerprint.fingerprint(dataset)  # outside the lock: it only reads the sources
    with exclusive_lock(root / f"{entry.name}.lock", entry):
        manifest = read_manifest(entry)
        if manifest is not None:
            old = manifest.get("fingerprint") or {}
            current = manifest["format"] == FORMAT and old == fp
            if current and _arrays_intact(entry, manifest):
                logger.info("frame cache: using %s", entry)
                return FrameCachedDataset(entry, manifest, built=False)
            if manifest["format"] != FORMAT:
                reason = f"format {manifest['format']}"
            elif old != fp:
                reason = f"{frame_fingerprint.what_changed(old, fp)} changed"
            else:
                reason = "arrays missing or damaged"
            logger.info("frame cache: rebuilding %s (%s)", entry, reason)
        _remove_leftovers(root, entry.name)
        workers = default_build_workers(len(dataset)) if build_workers is None else build_workers
        manifest = build_entry(dataset, entry, fp, workers, progress)
    return FrameCachedDataset(entry, manifest, built=True)
