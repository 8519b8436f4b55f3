"""What a frame-cache entry depends on: the files each S4 / MS3 / AVSS sample is decoded
from, the decoding code and the libraries (docs/FRAME_CACHE.md).

Paths come from the official layouts (layouts.py) and the dataset's declared extra inputs
(extra_inputs.py). Files a sample may read are all listed, present or not (S4 train masks
2-5, the `.npy` / `.pkl` / `.wav` audio alternatives, AVSS `labels_semantic` and
`labels_rgb`): a file that appears or disappears changes the fingerprint as surely as one
that is rewritten. Each file contributes its size, mtime and ctime (nanoseconds); ctime is
set by the kernel on every write, so even a rewrite that restores the old mtime (`cp -p`,
`rsync -t`, `touch -d`) is seen, without reading contents.

The dataset is used through its attributes only (`frame_cache_setting` of its class,
`layout`, `split`, `rows`, `extra_inputs`), so this module never imports datasets.py (which
imports the frame cache).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from avsbench.data import (
    audio,
    dataset_base,
    extra_inputs,
    frame_cache_build,
    layouts,
    palette,
    transforms,
    vct_copies,
)
from avsbench.data.layouts import AVSS_SUBSET_FRAMES, OBJECT_FRAMES, AVSSLayout, MS3Layout, S4Layout

# Modules whose code decides a sample's values (their source is hashed into the fingerprint),
# besides the module of the dataset's own class (`code_digest`).
DECODING_MODULES = (
    audio,
    dataset_base,
    extra_inputs,
    layouts,
    palette,
    transforms,
    vct_copies,
    frame_cache_build,
)
LIBRARIES = ("numpy", "pillow", "soundfile", "torch")  # they decode, resize or compute log-mel

ClipFiles = tuple[list[Path], list[Path]]  # (frames, the other files a clip may read)


def _audio_files(pkl: Path, wav: Path) -> list[Path]:
    return [pkl, pkl.with_suffix(".npy"), wav]


def s4_clip_files(lay: S4Layout, split: str, row: tuple[str, str]) -> ClipFiles:
    name, category = row
    frames = range(1, OBJECT_FRAMES + 1)
    return [lay.frame(split, category, name, i) for i in frames], [
        *(lay.mask(split, category, name, i) for i in frames),
        *_audio_files(lay.log_mel(split, category, name), lay.wav(split, category, name)),
    ]


def ms3_clip_files(lay: MS3Layout, split: str, video_id: str) -> ClipFiles:
    frames = range(1, OBJECT_FRAMES + 1)
    return [lay.frame(video_id, i) for i in frames], [
        *(lay.mask(split, video_id, i) for i in frames),
        *_audio_files(lay.log_mel(split, video_id), lay.wav(split, video_id)),
    ]


def avss_clip_files(lay: AVSSLayout, split: str, row: tuple[str, str]) -> ClipFiles:
    uid, label = row
    frames = range(AVSS_SUBSET_FRAMES[label])
    return [lay.frame(label, uid, k) for k in frames], [
        lay.label_semantic(label, uid, 0).parent,  # its existence chooses the label source
        *(lay.label_semantic(label, uid, k) for k in frames),
        *(lay.label_rgb(label, uid, k) for k in frames),
        lay.wav(label, uid),
    ]


# setting (`frame_cache_setting` of the dataset class) -> (files of the whole split, files
# of one clip); both take the dataset's layout
SOURCES: dict[str, tuple[Callable[[Any], list[Path]], Callable[[Any, str, Any], ClipFiles]]] = {
    "s4": (lambda lay: [lay.meta_csv], s4_clip_files),
    "ms3": (lambda lay: [lay.meta_csv], ms3_clip_files),
    "avss": (lambda lay: [lay.meta_csv, lay.label2idx], avss_clip_files),
}


def setting_of(dataset: Any) -> str:
    """The setting whose files `dataset` reads; TypeError for a dataset the cache does not
    serve (SemanticObjectDataset, FrameCachedDataset, anything else)."""
    setting = getattr(type(dataset), "frame_cache_setting", None)
    if setting not in SOURCES:
        raise TypeError(
            "the frame cache serves S4Dataset, MS3Dataset and AVSSDataset, "
            f"not {type(dataset).__name__}"
        )
    return setting


def source_files(dataset: Any) -> Iterator[Path]:
    """Every file the samples of `dataset` may read, split files first, then clip by clip:
    frames, the declared extra inputs of each frame, then masks and audio."""
    split_files, clip_files = SOURCES[setting_of(dataset)]
    yield from split_files(dataset.layout)
    for row in dataset.rows:
        frames, others = clip_files(dataset.layout, dataset.split, row)
        yield from frames
        for extra in dataset.extra_inputs:
            yield from (extra.path(dataset.layout, frame) for frame in frames)
        yield from others


def sources_digest(dataset: Any) -> tuple[str, int]:
    """(sha256 of `relative path, size, mtime_ns, ctime_ns` of every source file, count)."""
    digest = hashlib.sha256()
    prefix, count = os.path.join(str(dataset.root), ""), 0
    for path in source_files(dataset):
        try:
            st = os.stat(path)
            state = f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
        except (FileNotFoundError, NotADirectoryError):
            state = "missing"
        name = str(path).removeprefix(prefix)  # relative: the root may be given either way
        digest.update(f"{name}\t{state}\n".encode())
        count += 1
    return digest.hexdigest(), count


def _library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def code_digest(dataset: Any) -> str:
    """Hash of the modules that decode a sample of `dataset` (DECODING_MODULES and the
    module of its class): a code change may change the arrays."""
    digest = hashlib.sha256()
    for module in (*DECODING_MODULES, sys.modules[type(dataset).__module__]):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(dataset: Any) -> dict[str, Any]:
    """What the cached arrays depend on; an entry is served only when this is unchanged."""
    sources, count = sources_digest(dataset)
    return {
        "dataset": type(dataset).__name__,
        "split": dataset.split,
        "image_size": dataset.image_size,
        "mask_size": dataset.mask_size,
        "clips": len(dataset),
        "sources": sources,
        "source_files": count,
        "extra_inputs": [extra.describe() for extra in dataset.extra_inputs],
        "code": code_digest(dataset),
        "libraries": {name: _library_version(name) for name in LIBRARIES},
    }


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The parts of the fingerprint that differ, in words (for the rebuild message)."""
    words = {
        "sources": "source files (size, mtime or ctime)",
        "code": "decoding code",
        "extra_inputs": "declared extra inputs",
    }
    changed = [words.get(k, k) for k in new if old.get(k) != new[k] and k != "source_files"]
    return ", ".join(changed) or "fingerprint"
