"""Building a frame-cache entry: decode every clip once, store it as uint8 `.npy` arrays,
check it is exact, and rename the finished folder into place (docs/FRAME_CACHE.md).

An entry folder holds one `.npy` file per array (N clips, T frames, S pixels):

    frames.npy       uint8   [N, T, 3, S, S]   resized RGB pixels (0 for AVSS padding)
    masks.npy        uint8   [N, T, M, M]      S4/MS3 {0, 1}; AVSS class ids (M: mask_size)
    audio.npy        float32 [N, T, 1, 96, 64] log-mel examples
    frame_valid.npy  float32 [N, T]
    gt_valid.npy     float32 [N, T]
    extra_<key>.npy  uint8   [N, T, 3, S, S]   per declared extra input (extra_inputs.py):
                                               its resized RGB pixels (0 for AVSS padding)
    manifest.json    format, fingerprint, clips [[video_id, category], ...], extra
                     inputs, build id

The pixels are recovered from the dataset's normalised frames (and extra inputs) and
accepted only if the value transform (`transforms.normalize_pixels` for frames, the
input's own for extra inputs) gives those values back bit for bit, so the builder trusts
no assumption about how the dataset decodes: whatever it returns is stored exactly, or the
build stops naming the clip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avsbench.data.extra_inputs import BASE_SAMPLE_KEYS, ExtraInput, imagenet_to_pixels
from avsbench.data.transforms import normalize_pixels
from avsbench.errors import FrameCacheError  # noqa: F401 (defined in errors.py)
from avsbench.fileio import atomic_write

logger = logging.getLogger("avsbench.data.frame_cache")

FORMAT = "avsbench-frame-cache/2"  # bump when the stored layout changes (2: extra inputs)
FORMAT_FAMILY = FORMAT.split("/")[0]
MANIFEST = "manifest.json"
BUILDING_MARKER = ".avsbench-building"  # inside a temporary build folder
SAMPLE_KEYS = set(BASE_SAMPLE_KEYS)  # and one key per declared extra input
ARRAYS = ("frames", "masks", "audio", "frame_valid", "gt_valid")  # and extra_<key> per input


def extra_array(extra: ExtraInput) -> str:
    """Name of the array (and `.npy` file) holding an extra input's pixels."""
    return f"extra_{extra.key}"


class _NpyFile:
    """A `.npy` file of a known shape written piece by piece with plain writes (a full
    disk is an OSError, not the SIGBUS of a written memory map); unwritten parts stay
    zero and, in a sparse file, take no disk space."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.dtype, self.shape = np.dtype(dtype), shape
        self.file = open(path, "wb")  # noqa: SIM115 (closed in close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self.file, {**header, "shape": shape})
        self.offset = self.file.tell()
        self.file.truncate(self.offset + int(np.prod(shape)) * self.dtype.itemsize)
        self.row_bytes = [int(np.prod(shape[k + 1 :])) * self.dtype.itemsize for k in range(2)]

    def write(self, clip: int, value: np.ndarray, frame: int | None = None) -> None:
        """Write `value` at [clip] or at [clip, frame]."""
        pos = self.offset + clip * self.row_bytes[0]
        if frame is not None:
            pos += frame * self.row_bytes[1]
        self.file.seek(pos)
        self.file.write(np.ascontiguousarray(value, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _pixels(
    frames: np.ndarray,
    valid: np.ndarray,
    where: str,
    *,
    key: str = "frames",
    encode: Any = normalize_pixels,
    to_pixels: Any = imagenet_to_pixels,
) -> np.ndarray:
    """float32 values [T, 3, S, S] (frames, or an extra input) -> the uint8 pixels they
    were made from, checked: encode(pixels) gives `frames` back bit for bit (zeros where
    not valid)."""
    pixels = to_pixels(frames)
    pixels[~valid] = 0
    served = np.zeros_like(frames)
    served[valid] = encode(pixels[valid])
    if frames.dtype != np.float32 or not np.array_equal(
        served.view(np.uint32), frames.view(np.uint32)
    ):
        transform = "ImageNet-normalised" if encode is normalize_pixels else "value-transformed"
        raise FrameCacheError(
            f"{where}: its {key} are not {transform} uint8 pixels (zeros where "
            "frame_valid is 0), so the frame cache cannot store them exactly"
        )
    return pixels


def encode_sample(
    sample: dict[str, Any], where: str, extras: tuple[ExtraInput, ...] = ()
) -> dict[str, Any]:
    """A dataset sample -> the arrays stored (frames, masks and `extras` as uint8),
    checked exact."""
    keys = SAMPLE_KEYS | {extra.key for extra in extras}
    if set(sample) != keys:
        raise FrameCacheError(
            f"{where}: sample keys {sorted(sample)}, the frame cache stores {sorted(keys)}"
        )
    arrays = {k: np.asarray(sample[k]) for k in ARRAYS}
    for key in ("audio", "frame_valid", "gt_valid"):
        if arrays[key].dtype != np.float32:
            raise FrameCacheError(f"{where}: {key} is {arrays[key].dtype}, expected float32")
    valid = arrays["frame_valid"] > 0
    arrays["frames"] = _pixels(arrays["frames"], valid, where)
    for extra in extras:
        values = np.asarray(sample[extra.key])
        if values.shape != arrays["frames"].shape:
            raise FrameCacheError(
                f"{where}: {extra.key} is {list(values.shape)}, the frames "
                f"{list(arrays['frames'].shape)}"
            )
        arrays[extra_array(extra)] = _pixels(
            values, valid, where, key=extra.key, encode=extra.encode, to_pixels=extra.to_pixels
        )
    masks = arrays["masks"]
    stored = masks.astype(np.uint8)
    if not np.array_equal(stored.astype(masks.dtype), masks):
        raise FrameCacheError(f"{where}: mask values are not integers in 0..255")
    arrays["masks"] = stored
    return {
        **arrays,
        "mask_dtype": masks.dtype.name,
        "clip": [sample["video_id"], sample["category"]],
    }


def default_build_workers(num_clips: int) -> int:
    """Decoding processes for a build: none for tiny splits (start-up would dominate)."""
    return 0 if num_clips < 64 else min(8, len(os.sched_getaffinity(0)))


def _samples(dataset: Dataset, workers: int) -> Iterator[dict[str, Any]]:
    """The samples in order; a worker's error is raised again as the dataset's own."""
    if workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))  # type: ignore[arg-type]
        return
    # its own generator: building must not move the global RNG that seeds the training
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, generator=torch.Generator())
    index = 0  # the clip being loaded
    try:
        for sample in loader:
            yield sample
            index += 1
    except Exception:
        dataset[index]  # the failing clip again, in this process: its one-line error
        raise


def _write_arrays(
    dataset: Any, folder: Path, entry_name: str, workers: int, progress: bool
) -> dict[str, Any]:
    """Decode every clip into `folder`; returns the manifest's array and clip parts."""
    n = len(dataset)
    extras = tuple(dataset.extra_inputs)
    names = (*ARRAYS, *map(extra_array, extras))
    pixel_arrays = ("frames", *map(extra_array, extras))  # written per real frame
    files: dict[str, _NpyFile] = {}
    clips, mask_dtype = [], None
    bar = _progress_bar(n, f"frame cache {dataset.split}", progress)
    try:
        for index, sample in enumerate(_samples(dataset, workers)):
            where = f"{dataset!r} clip {index} ({sample.get('video_id')})"
            enc = encode_sample(sample, where, extras)
            if not files:
                mask_dtype = enc["mask_dtype"]
                for name in names:
                    shape = (n, *enc[name].shape)
                    files[name] = _NpyFile(folder / f"{name}.npy", enc[name].dtype, shape)
                logger.info(
                    "frame cache: building %s (%d clips, at most %.2f GB)",
                    entry_name, n, sum(f.row_bytes[0] for f in files.values()) * n / 1e9,
                )  # fmt: skip
            elif any(enc[k].shape != files[k].shape[1:] for k in names) or (
                enc["mask_dtype"] != mask_dtype
            ):
                raise FrameCacheError(f"{where}: shapes or mask dtype differ from clip 0")
            for t in np.flatnonzero(enc["frame_valid"] > 0):  # padding stays zero (sparse)
                for name in pixel_arrays:
                    files[name].write(index, enc[name][t], int(t))
            for t in np.flatnonzero(enc["masks"].reshape(len(enc["masks"]), -1).any(1)):
                files["masks"].write(index, enc["masks"][t], int(t))
            for name in ("audio", "frame_valid", "gt_valid"):
                files[name].write(index, enc[name])
            clips.append(enc["clip"])
            bar.update()
    finally:
        bar.close()
        for f in files.values():
            f.close()
    if not files:
        raise FrameCacheError(f"{dataset!r}: no clips to cache")
    arrays = {k: {"shape": list(f.shape), "dtype": f.dtype.name} for k, f in files.items()}
    return {
        "arrays": arrays,
        "mask_dtype": mask_dtype,
        "clips": clips,
        "extra_inputs": [extra.describe() for extra in extras],
    }


def _progress_bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", disable=not (progress and sys.stderr.isatty()))


def build_entry(
    dataset: Any, entry: Path, fp: dict[str, Any], workers: int, progress: bool
) -> dict[str, Any]:
    """Build into a temporary folder next to `entry`, then rename it into place; a crash
    or Ctrl-C leaves only a temporary folder, never an entry that would be served."""
    tmp = entry.parent / f".{entry.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        (tmp / BUILDING_MARKER).write_text(f"pid {os.getpid()}\n")
        manifest = {
            "format": FORMAT,
            "build_id": uuid.uuid4().hex,
            "fingerprint": fp,
            "dataset_root": str(Path(dataset.root).resolve()),
            **_write_arrays(dataset, tmp, entry.name, workers, progress),
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        atomic_write(tmp / MANIFEST, lambda p: p.write_text(json.dumps(manifest)))
        (tmp / BUILDING_MARKER).unlink()
        if entry.exists():  # an outdated entry of ours (checked by read_manifest)
            stale = entry.parent / f".{entry.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(entry, stale)
            os.rename(tmp, entry)
            shutil.rmtree(stale, ignore_errors=True)  # open memory maps stay valid
        else:
            os.rename(tmp, entry)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FrameCacheError(f"{entry}: building the frame cache failed ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("frame cache: built %s in %.1f s", entry, manifest["build_seconds"])
    return manifest
