"""The decoded-frame cache: exact samples, rebuilds on changed sources, atomic builds,
folders that are not ours, DataLoader workers and concurrent builders."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from avsbench.data import dataset_base as B
from avsbench.data import datasets as D
from avsbench.data import frame_cache as FC
from avsbench.data import frame_cache_build as FB
from avsbench.data.frame_fingerprint import source_files
from avsbench.data.layouts import AVSDataError
from avsbench.data.synthetic import make_toy_data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    """Synthetic S4 / MS3 / AVSS roots (8 + 2 + 2, 3 + 1 + 1, 3 + 3 + 3 clips)."""
    return make_toy_data(tmp_path_factory.mktemp("toy"), scale=0.05, num_categories=3)


def copy_root(root: Path, tmp_path: Path) -> Path:
    """A private copy of a dataset root, for tests that change files."""
    return Path(shutil.copytree(root, tmp_path / root.name))


def assert_same_sample(computed: dict, cached: dict) -> None:
    """Same keys, dtypes, shapes and bytes (float bits included)."""
    assert cached.keys() == computed.keys()
    for key, value in computed.items():
        if isinstance(value, torch.Tensor):
            other = cached[key]
            assert (other.dtype, other.shape) == (value.dtype, value.shape), key
            differ = value.numpy().tobytes() != other.numpy().tobytes()
            assert not differ, f"{key}: {int((value != other).sum())} elements differ"
        else:
            assert cached[key] == value, key


def assert_same_dataset(computed, cached) -> None:
    assert len(cached) == len(computed)
    for i in range(len(computed)):
        assert_same_sample(computed[i], cached[i])


def folder_listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("setting", ["s4", "ms3", "avss"])
def test_cached_samples_equal_the_computed_ones(toy, tmp_path, setting, split):
    computed = D.build_dataset(setting, toy[setting], split, image_size=64)
    cached = D.build_dataset(setting, toy[setting], split, image_size=64, frame_cache=tmp_path)
    assert isinstance(cached, FC.FrameCachedDataset) and cached.built
    assert_same_dataset(computed, cached)
    samples = [computed[i] for i in range(len(computed))]
    assert any(s["masks"].any() for s in samples)  # real masks, not all zeros
    if setting == "avss":  # padded clips (v1s, v1m) and a frame-1-only subset in train
        assert any(not s["frame_valid"].all() for s in samples)
        assert any(s["masks"].max() > 1 for s in samples)  # class ids, not a binary mask


def test_hand_written_layouts_at_the_native_size(s4_root, ms3_root, avss_root, tmp_path):
    # masks in PIL modes L / 1 / P, AVSS colour masks only, non-square v2 frames, 224 px
    for setting, root, split in [
        ("s4", s4_root, "train"),
        ("s4", s4_root, "val"),
        ("ms3", ms3_root, "train"),
        ("avss", avss_root, "train"),
    ]:
        computed = D.build_dataset(setting, root, split)
        cached = D.build_dataset(setting, root, split, frame_cache=tmp_path / "cache")
        assert_same_dataset(computed, cached)


def test_what_cannot_be_stored_exactly_is_refused(toy):
    sample = D.build_dataset("avss", toy["avss"], "train", image_size=32)[0]
    assert not sample["frame_valid"].all()
    FB.encode_sample(sample, "clip")  # the sample as computed is accepted
    bad_cases = {
        "frames": sample["frames"] + 1e-3,  # not an ImageNet-normalised uint8 pixel
        "masks": sample["masks"].float() / 2,  # not an integer
    }
    for key, value in bad_cases.items():
        with pytest.raises(FB.FrameCacheError, match="clip"):
            FB.encode_sample({**sample, key: value}, "clip")
    padded = sample["frames"].clone()
    padded[-1] = 0.5  # a padding frame that is not zero
    with pytest.raises(FB.FrameCacheError, match="frame_valid"):
        FB.encode_sample({**sample, "frames": padded}, "clip")
    with pytest.raises(FB.FrameCacheError, match="keys"):
        FB.encode_sample({**sample, "extra": 1}, "clip")


def test_sources_cover_every_file_the_datasets_read(toy, avss_root, monkeypatch):
    read: list[Path] = []

    def recording(function):
        def wrapper(path, *args, **kwargs):
            read.append(Path(path))
            return function(path, *args, **kwargs)

        return wrapper

    for module in (D, B):  # datasets.py and the base class's module
        for name in ("open_image", "load_log_mel", "wav_to_log_mel", "read_metadata"):
            if name in vars(module):
                monkeypatch.setattr(module, name, recording(getattr(module, name)))
    cases = [(s, toy[s], split) for s in ("s4", "ms3", "avss") for split in ("train", "val")]
    for setting, root, split in [*cases, ("avss", avss_root, "train")]:
        read.clear()
        dataset = D.build_dataset(setting, root, split, image_size=32)
        for i in range(len(dataset)):
            dataset[i]
        listed = set(source_files(dataset))
        assert read and set(read) <= listed, sorted(set(read) - listed)


# ---------------------------------------------------------------------------------------
# Reuse and rebuilds
# ---------------------------------------------------------------------------------------
def test_a_second_open_reuses_the_entry(toy, tmp_path):
    dataset = D.build_dataset("s4", toy["s4"], "val", image_size=32)
    first = FC.open_frame_cache(dataset, tmp_path)
    second = FC.open_frame_cache(dataset, tmp_path)
    assert first.built and not second.built and first.build_id == second.build_id
    name = FC.entry_name(dataset)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [FC.FOLDER_MARKER, name, f"{name}.lock"]
    )
    other_size = D.build_dataset("s4", toy["s4"], "val", image_size=64)
    assert FC.open_frame_cache(other_size, tmp_path).built  # one entry per image size


def _rewrite(path: Path, pixels: np.ndarray, *, keep_mtime: bool = False) -> None:
    """Write new content; optionally put the old mtime back (as cp -p / rsync -t do)."""
    before = os.stat(path)
    time.sleep(0.02)  # past the file system's timestamp granularity
    Image.fromarray(pixels).save(path)
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(path).st_mtime_ns == before.st_mtime_ns


def test_a_changed_mask_rebuilds_the_entry(toy, tmp_path):
    root = copy_root(toy["s4"], tmp_path)
    cache = tmp_path / "cache"
    dataset = D.S4Dataset(root, "val", image_size=32)
    assert FC.open_frame_cache(dataset, cache).built
    assert not FC.open_frame_cache(dataset, cache).built
    name, category = dataset.rows[1]
    mask_path = dataset.layout.mask("val", category, name, 3)
    for keep_mtime in (False, True):  # new content; new content with the old mtime
        old_sample = dataset[1]
        _rewrite(
            mask_path, 255 - np.asarray(Image.open(mask_path).convert("L")), keep_mtime=keep_mtime
        )
        cached = FC.open_frame_cache(dataset, cache)
        assert cached.built
        assert not torch.equal(cached[1]["masks"][2], old_sample["masks"][2])
        assert_same_dataset(dataset, cached)
    time.sleep(0.02)
    os.utime(mask_path)  # the same content, a new mtime: rebuilt too (no content hashing)
    assert FC.open_frame_cache(dataset, cache).built


def test_damaged_entry_is_rebuilt(toy, tmp_path):
    dataset = D.build_dataset("ms3", toy["ms3"], "val", image_size=32)
    cached = FC.open_frame_cache(dataset, tmp_path)
    (cached.entry / "frames.npy").unlink()
    rebuilt = FC.open_frame_cache(dataset, tmp_path)
    assert rebuilt.built
    assert_same_dataset(dataset, rebuilt)


def test_a_reader_never_mixes_two_builds(toy, tmp_path):
    root = copy_root(toy["s4"], tmp_path)
    dataset = D.S4Dataset(root, "val", image_size=32)
    reader = FC.open_frame_cache(dataset, tmp_path / "cache")
    before = reader[0]
    name, category = dataset.rows[0]
    frame = dataset.layout.frame("val", category, name, 1)
    _rewrite(frame, np.zeros((224, 224, 3), np.uint8))
    assert FC.open_frame_cache(dataset, tmp_path / "cache").built  # replaced under the reader
    assert_same_sample(before, reader[0])  # its open maps still show its own build
    reader._pid = -1  # as in a DataLoader worker opening the maps afresh
    with pytest.raises(FC.FrameCacheError, match="rebuilt"):
        reader[0]


# ---------------------------------------------------------------------------------------
# Safety: atomic builds, folders that are not ours
# ---------------------------------------------------------------------------------------
def test_an_interrupted_build_leaves_nothing_that_is_served(toy, tmp_path, monkeypatch):
    dataset = D.build_dataset("s4", toy["s4"], "train", image_size=32)
    original = D.S4Dataset.__getitem__

    def interrupted(self, index):
        if index == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the build
        return original(self, index)

    monkeypatch.setattr(D.S4Dataset, "__getitem__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        FC.open_frame_cache(dataset, tmp_path)
    name = FC.entry_name(dataset)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FC.FOLDER_MARKER, f"{name}.lock"]
    monkeypatch.undo()

    # a killed build leaves its temporary folder: never served, removed by the next build
    killed = tmp_path / f".{name}.building-99999-deadbeef"
    killed.mkdir()
    (killed / FB.BUILDING_MARKER).write_text("pid 99999\n")
    (killed / "frames.npy").write_bytes(b"half")
    foreign = tmp_path / f".{name}.building-by-someone-else"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cached = FC.open_frame_cache(dataset, tmp_path)
    assert cached.built and not killed.exists()
    assert (foreign / "notes.txt").read_text() == "mine"  # no marker: not ours, kept
    assert_same_dataset(dataset, cached)


def test_a_folder_that_is_not_ours_is_refused_and_left_untouched(toy, tmp_path):
    dataset = D.build_dataset("s4", toy["s4"], "val", image_size=32)
    theirs = tmp_path / "their_folder"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    with pytest.raises(FC.FrameCacheError, match="their_folder.*not a frame-cache folder"):
        FC.open_frame_cache(dataset, theirs)
    assert folder_listing(theirs) == {"notes.txt": b"keep me"}

    ours = tmp_path / "cache"
    FC.claim_folder(ours)
    squatter = ours / FC.entry_name(dataset)  # something else under an entry's name
    squatter.mkdir()
    (squatter / "frames.npy").write_bytes(b"not a cache")
    with pytest.raises(FC.FrameCacheError, match=f"{squatter.name}: exists but holds no"):
        FC.open_frame_cache(dataset, ours)
    assert (squatter / "frames.npy").read_bytes() == b"not a cache"

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(FC.FrameCacheError, match="must be a folder"):
        FC.open_frame_cache(dataset, a_file)


# ---------------------------------------------------------------------------------------
# Workers and concurrent processes
# ---------------------------------------------------------------------------------------
def _batches(dataset, workers: int) -> list[dict]:
    return list(DataLoader(dataset, batch_size=3, num_workers=workers))


def test_dataloader_workers_read_the_same_samples(toy, tmp_path):
    dataset = D.build_dataset("avss", toy["avss"], "train", image_size=32)
    cached = FC.open_frame_cache(dataset, tmp_path)
    cached[0]  # the maps are open in this process; pickling still carries none
    payload = pickle.dumps(cached)
    assert len(payload) < 0.1 * (cached.entry / "frames.npy").stat().st_size
    assert pickle.loads(payload)._arrays is None
    for expected, got in zip(_batches(dataset, 0), _batches(cached, 2), strict=True):
        assert_same_sample(expected, got)


def test_a_build_with_decoding_workers(toy, tmp_path):
    root = copy_root(toy["s4"], tmp_path)
    dataset = D.S4Dataset(root, "train", image_size=32)
    rng = torch.get_rng_state()
    cached = FC.open_frame_cache(dataset, tmp_path / "cache", build_workers=2)
    assert torch.equal(torch.get_rng_state(), rng)  # the training's seed is not moved
    assert_same_dataset(dataset, cached)

    name, category = dataset.rows[5]
    broken = dataset.layout.frame("train", category, name, 2)
    broken.write_bytes(b"not a png")
    with pytest.raises(AVSDataError, match="unreadable frame") as err:
        FC.open_frame_cache(dataset, tmp_path / "cache", build_workers=2)
    assert str(broken) in str(err.value) and "\n" not in str(err.value)  # one line
    assert not list((tmp_path / "cache").glob(".*building*"))


BUILDER = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from avsbench.data.datasets import S4Dataset
from avsbench.data.frame_cache import open_frame_cache
cached = open_frame_cache(S4Dataset(sys.argv[1], "train", image_size=32), sys.argv[2])
print(json.dumps({"built": cached.built, "build_id": cached.build_id}))
"""


@pytest.mark.slow
def test_concurrent_processes_build_once(toy, tmp_path):
    dataset = D.build_dataset("s4", toy["s4"], "train", image_size=32)
    cache = FC.claim_folder(tmp_path / "cache")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", BUILDER, str(toy["s4"]), str(cache)]
    lock = cache / f"{FC.entry_name(dataset)}.lock"
    with FC.exclusive_lock(lock, cache):  # both start while the lock is taken ...
        procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        for proc in procs:  # ... and wait until both are blocked on it
            for line in proc.stderr:
                if b"waiting for another process" in line:
                    break
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["build_id"] == results[1]["build_id"]
    assert_same_dataset(dataset, FC.open_frame_cache(dataset, cache))
