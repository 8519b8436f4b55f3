"""Every missing maskige of an AVSBench dataset root, where the loaders read them.

`make_dataset_maskiges(path, generator)` takes a dataset root (Single-source,
Multi-sources or AVSBench_semantic, found by its metadata CSV) or a folder holding such
roots, and writes the maskige of each frame that has none, in the layout of
`avsbench.data.extra_inputs.MASKIGE` (avsbench_data/README.md, "Extra per-frame inputs"):

    S4    s4_data/visual_frames/...            -> s4_data/pre_SAM_mask/..._mask_color.png
          s4_data_384/visual_frames_384/...    -> s4_data_384/pre_SAM_mask_384/...
    MS3   ms3_data/visual_frames/...           -> ms3_data/pre_SAM_mask/...
          ms3_data_384/visual_frames_384/...   -> ms3_data_384/pre_SAM_mask_384/...
    AVSS  <label>/<uid>/frames/<k>.jpg         -> pre_SAM_mask/AVSBench_semantic/<label>/...
          <label>/<uid>/processed_frames_384/  -> the same, under processed_frames_384/

A maskige has its frame's size (S4/MS3 frames are the release's 224 x 224). VCT's 384-px
copies get the maskige of the frame they copy, resized NEAREST to their size, as
`generate_data_384/*.py` makes them (the copy itself is segmented when its source frame is
absent).

Safety (docs/MASKIGE.md): each file is written atomically (`fileio.atomic_write`), so
Ctrl-C, SIGTERM or a crash leaves whole files only, and a new run resumes with the frames
still missing. The root's manifest (`MANIFEST`, one JSON line per file, written before the
file: its path, the `settings_id` it was made with, its sha256) lists what this command
wrote; an existing file is replaced only with `overwrite` and only if listed there and not
what this run would write (made with other settings, or changed since), so an interrupted
`overwrite` run resumes too. `PROVENANCE` records the generator, the SAM weights' sha256 and
the parameters; while listed files made with other settings remain, a run is refused unless
`overwrite`. `dataset_mark(root)` is what test.sh's metrics.json reports of a root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avsbench import stop_signals
from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.layouts import AVSSLayout, MS3Layout, S4Layout
from avsbench.data.maskige import maskige_image
from avsbench.data.vct_copies import MS3Copies384, S4Copies384
from avsbench.errors import InputError
from avsbench.fileio import WriteError, atomic_write, atomic_write_json, failure_reason

PROVENANCE = "MASKIGES_SAM.json"  # at the dataset root: what made the maskiges listed below
MANIFEST = ".avsbench-maskige.jsonl"  # at the dataset root: {"file": <relative path>} lines
FORMAT = "avsbench-maskige/1"
SETTINGS_KEYS = ("generator", "sam_model", "sam_weights_sha256", "parameters")


@dataclass
class FrameJob:
    """One frame to segment and the maskige files (path, frame giving its size) made from it."""

    source: Path
    targets: list[tuple[Path, Path]] = field(default_factory=list)


def dataset_roots(path: Path) -> list[tuple[str, Path]]:
    """(layout name, root) of each dataset root at `path` or directly under it."""
    layouts = {"s4": S4Layout, "ms3": MS3Layout, "avss": AVSSLayout}
    found = []
    for folder in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        for name, layout in layouts.items():
            if layout(folder).meta_csv.is_file():
                found.append((name, folder))
    return found


def find_roots(path: str | Path) -> list[tuple[str, Path]]:
    """`dataset_roots`, InputError (one line) when there is none."""
    path = Path(path)
    roots = dataset_roots(path) if path.is_dir() else []
    if not roots:
        raise InputError(
            f"{path}: no AVSBench dataset root here (a folder with s4_meta_data.csv, "
            "ms3_meta_data.csv or metadata.csv, or one holding such folders); give a video "
            "file or a dataset root (avsbench_data/README.md)"
        )
    return roots


def frame_jobs(name: str, root: Path) -> list[FrameJob]:
    """The frames of a root (and of VCT's copies inside it) with their maskige files."""
    jobs: dict[Path, FrameJob] = {}

    def add(layout: Any, frames: Iterator[Path], source: Callable[[Path], Path]) -> None:
        for frame in sorted(frames):
            origin = source(frame)
            key = origin if origin.is_file() else frame
            jobs.setdefault(key, FrameJob(key)).targets.append((MASKIGE.path(layout, frame), frame))

    if name == "s4":
        lay, copies = S4Layout(root), S4Copies384(root)
        add(lay, lay.frames_root.glob("*/*/*/*.png"), lambda f: f)
        add(
            copies,
            copies.frames_root.glob("*/*/*/*.png"),
            lambda f: lay.frames_root / f.relative_to(copies.frames_root),
        )
    elif name == "ms3":
        lay, copies = MS3Layout(root), MS3Copies384(root)
        add(lay, lay.frames_root.glob("*/*.png"), lambda f: f)
        add(
            copies,
            copies.frames_root.glob("*/*.png"),
            lambda f: (
                lay.frame(f.parent.name, int(f.stem.rsplit("_", 1)[-1]))
                if f.stem.rsplit("_", 1)[-1].isdigit()
                else f
            ),
        )
    else:
        lay = AVSSLayout(root)
        add(lay, root.glob("*/*/frames/*.jpg"), lambda f: f)
        add(
            lay,
            root.glob("*/*/processed_frames_384/*.jpg"),
            lambda f: f.parent.parent / "frames" / f.name,
        )
    return list(jobs.values())


def read_frame(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a frame file; InputError (one line) when it is unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path}: unreadable frame ({err}); check the dataset (avsbench check-data) and "
            "run avsbench maskige again (the maskiges made so far are kept)"
        ) from err


def read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: its last entry} of the files this command wrote under `root`; an entry
    holds the `settings_id` it was made with and the file's sha256 (a torn line is skipped)."""
    path = root / MANIFEST
    listed: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                listed[entry["file"]] = entry
    return listed


def settings_id(provenance: dict[str, Any]) -> str:
    """A short hash of what decides the maskiges (generator, model, weights, parameters)."""
    text = json.dumps({k: provenance.get(k) for k in SETTINGS_KEYS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_provenance(root: Path) -> dict[str, Any] | None:
    path = root / PROVENANCE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path}: unreadable maskige provenance ({err}); it is written by `avsbench "
            "maskige`: restore it, or delete it together with the maskiges it describes"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a provenance file of `avsbench maskige` ({FORMAT})")
    return data


def dataset_mark(root: str | Path) -> dict[str, Any]:
    """Where the maskiges of a dataset root come from, for metrics.json."""
    root = Path(root)
    try:
        provenance = read_provenance(root)
    except InputError as err:
        return {"source": f"unknown ({err})"}
    if provenance is not None:
        keys = ("source", *SETTINGS_KEYS, "sam_weights", "complete")
        current = settings_id(provenance)
        made = [e.get("settings") == current for e in read_manifest(root).values()]
        return {
            **{k: provenance.get(k) for k in keys},
            "files_made": sum(made),
            "files_made_with_other_settings": len(made) - sum(made),
            "provenance": str(root / PROVENANCE),
            "note": "files not listed in the manifest (an earlier set) keep their own origin",
        }
    from avsbench.data.synthetic import TOY_DATA

    if (root / TOY_DATA.manifest).is_file():
        return {"source": "make-toy-data's synthetic maskiges"}
    return {
        "source": "the dataset's own files (no avsbench maskige provenance at the root: the "
        "published Semantic-SAM maskiges if they are COMBO's)"
    }


@dataclass
class RootReport:
    """What one root got: files written, kept (the user's or earlier ones), frames segmented."""

    root: Path
    layout: str
    written: int = 0
    kept: int = 0
    segmented: int = 0
    to_write: int = 0


class DatasetMaskiges:
    """The maskiges of one dataset root (`run()` writes what is missing)."""

    def __init__(self, name: str, root: Path, generator: Any, overwrite: bool) -> None:
        self.name, self.root, self.generator, self.overwrite = name, root, generator, overwrite
        self.provenance = {"format": FORMAT, **generator.provenance(), "layout": name}
        self.settings = settings_id(self.provenance)
        earlier = read_provenance(root) or {}
        self.listed = read_manifest(root)
        stale = [
            rel
            for rel, entry in self.listed.items()
            if entry.get("settings") != self.settings and (root / rel).is_file()
        ]
        if stale and not overwrite:
            differ = [k for k in SETTINGS_KEYS if earlier.get(k) != self.provenance.get(k)]
            raise InputError(
                f"{root / PROVENANCE}: {len(stale)} maskiges here were made with other settings "
                f"({', '.join(differ) or 'see the manifest'} differ); run with the same "
                "--sam_weights and parameters, or pass --overwrite to remake them"
            )
        self.report = RootReport(root, name)
        self.todo: list[FrameJob] = []
        for job in frame_jobs(name, root):
            targets = [(path, frame) for path, frame in job.targets if self._writable(path)]
            self.report.kept += len(job.targets) - len(targets)
            if targets:
                self.todo.append(FrameJob(job.source, targets))
        self.report.to_write = sum(len(job.targets) for job in self.todo)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _writable(self, path: Path) -> bool:
        """Missing, or (with overwrite) listed and not what this run would write: made with
        other settings or changed since (a resumed --overwrite run skips what it made)."""
        if not path.exists() and not path.is_symlink():
            return True
        entry = self.listed.get(self._relative(path))
        if not self.overwrite or entry is None or path.is_symlink() or not path.is_file():
            return False
        return entry.get("settings") != self.settings or entry.get("sha256") != _sha256(path)

    def _write_provenance(self, complete: bool) -> None:
        made = sum(e.get("settings") == self.settings for e in self.listed.values())
        data = {**self.provenance, "complete": complete, "files_made": made}
        with stop_signals.held():
            atomic_write_json(self.root / PROVENANCE, data)

    def _list(self, relative: str, data: bytes) -> None:
        """Append `relative` (made with these settings, holding `data`) to the manifest, on
        disk before its file is written."""
        entry = {"file": relative, "settings": self.settings}
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        try:
            with stop_signals.held(), open(self.root / MANIFEST, "a") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise WriteError(f"cannot write {self.root / MANIFEST}: {failure_reason(err)}") from err
        self.listed[relative] = entry

    def run(self, progress: Callable[[int], None] = lambda n: None) -> RootReport:
        if not self.todo:
            if (self.root / PROVENANCE).exists():
                self._write_provenance(complete=True)
            return self.report
        self._write_provenance(complete=False)
        for job in self.todo:
            ids = self.generator.ids(read_frame(job.source))
            self.report.segmented += 1
            for path, frame in job.targets:
                with Image.open(frame) as image:
                    size = image.size
                out = maskige_image(ids)
                if out.size != size:
                    out = out.resize(size, Image.NEAREST)
                buffer = io.BytesIO()
                out.save(buffer, format="PNG")
                data = buffer.getvalue()
                self._list(self._relative(path), data)
                atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
                self.report.written += 1
            progress(1)
        self._write_provenance(complete=True)
        return self.report


def make_dataset_maskiges(
    path: str | Path,
    generator: Any,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> list[RootReport]:
    """Write the missing maskiges of every dataset root at `path` (see the module doc);
    InputError (one line) for a path that holds none or a root made with other settings."""
    from tqdm import tqdm

    roots = find_roots(path)
    runs = [DatasetMaskiges(name, root, generator, overwrite) for name, root in roots]
    for run in runs:
        log(
            f"{run.root}: {run.report.to_write} maskiges to write from {len(run.todo)} frames, "
            f"{run.report.kept} kept"
        )
    total = sum(len(run.todo) for run in runs)
    with tqdm(total=total, unit="frame", disable=not show_progress, desc="maskiges") as bar:
        return [run.run(bar.update) for run in runs]
