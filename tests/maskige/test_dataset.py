"""`avsbench maskige` on a dataset root (avsbench.maskiges): the files equal the spec's painting
of segment-anything's masks, land where the loaders read them, never replace the user's
files, survive SIGTERM and resume; SAM weights are read safely and refused in one line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import sam_model_registry

from avsbench import cli
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.layouts import S4Layout
from avsbench.data.synthetic import make_toy_data
from avsbench.maskiges.dataset import MANIFEST, PROVENANCE, dataset_mark
from avsbench.maskiges.sam import architecture_of, build_sam
from avsbench.models import registry
from tests.maskige.helpers import (
    ADE20K_ID0,
    ADE20K_ID1,
    FLAGS,
    reference_generator,
    reference_ids,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("toy")
    make_toy_data(base, seed=0, scale=0.05, settings=("s4",), num_categories=3)
    return base


def s4_root(toy_base: Path, tmp_path: Path) -> Path:
    """A copy of the toy S4 root without the maskiges of its test split (10 frames)."""
    root = tmp_path / "Single-source"
    shutil.copytree(toy_base / "Single-source", root)
    shutil.rmtree(root / "s4_data" / "pre_SAM_mask" / "test")
    return root


def split_frames(root: Path) -> list[Path]:
    return sorted((S4Layout(root).frames_root / "test").glob("*/*/*.png"))


def maskige(cli_args: list[str]) -> int:
    return cli.main(["maskige", *cli_args, "--quiet"])


def test_dataset_maskiges_are_the_spec_painting_where_the_loaders_read(
    sam_file, toy_base, tmp_path
):
    root = s4_root(toy_base, tmp_path)
    kept = {p: p.read_bytes() for p in (root / "s4_data" / "pre_SAM_mask").rglob("*.png")}
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS]) == 0

    reference = reference_generator(sam_file)
    lay, overlapping = S4Layout(root), 0
    frames = split_frames(root)
    assert len(frames) == 10
    for frame in frames:
        path = MASKIGE.path(lay, frame)
        written = Image.open(path)
        assert written.mode == "P" and written.size == (224, 224)
        expected = reference_ids(reference, np.asarray(Image.open(frame).convert("RGB")))
        np.testing.assert_array_equal(np.asarray(written), expected)
        rgb = np.asarray(written.convert("RGB"))
        assert tuple(rgb[expected == 0][0]) == ADE20K_ID0 if (expected == 0).any() else True
        assert tuple(rgb[expected == 1][0]) == ADE20K_ID1
        overlapping += len(np.unique(expected)) > 2
    assert overlapping >= 5  # the painting order matters on these frames
    # the files that were there are untouched
    assert all(p.read_bytes() == data for p, data in kept.items())
    provenance = json.loads((root / PROVENANCE).read_text())
    assert "not the published Semantic-SAM" in provenance["source"]
    assert provenance["sam_weights_sha256"] == hashlib.sha256(sam_file.read_bytes()).hexdigest()
    assert provenance["complete"] and provenance["parameters"]["points_per_side"] == 2
    listed = [json.loads(line)["file"] for line in (root / MANIFEST).read_text().splitlines()]
    assert sorted(listed) == sorted(
        MASKIGE.path(lay, f).relative_to(root).as_posix() for f in frames
    )

    # the loaders read them: COMBO's dataset gives the maskige colours, normalised
    extras = registry.method_spec("combo").extra_inputs
    data = build_dataset("s4", root, "test", image_size=224, extra_inputs=extras)
    sample = data[0]
    first = MASKIGE.path(lay, S4Layout(root).frame("test", *_clip(data, 0), 1))
    colours = np.asarray(Image.open(first).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_allclose(sample["maskige"][0].numpy(), MASKIGE.encode(colours), atol=1e-6)


def _clip(data, index: int) -> tuple[str, str]:
    name, category = data.rows[index]  # S4 dataset rows: (name, category)
    return category, name


def test_user_files_are_never_replaced_and_overwrite_remakes_only_ours(
    sam_file, toy_base, tmp_path
):
    root = s4_root(toy_base, tmp_path)
    lay = S4Layout(root)
    frames = split_frames(root)
    user_file = MASKIGE.path(lay, frames[0])  # the user's own maskige of one test frame
    user_file.parent.mkdir(parents=True)
    Image.new("P", (224, 224), 7).save(user_file)
    user_bytes = user_file.read_bytes()
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS]) == 0
    ours = MASKIGE.path(lay, frames[1])
    good = ours.read_bytes()
    Image.new("P", (224, 224), 3).save(ours)  # spoil one of ours
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS]) == 0
    assert ours.read_bytes() != good  # present: kept, even if ours
    untouched = MASKIGE.path(lay, frames[2])
    before = untouched.stat().st_mtime_ns
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS, "--overwrite"]) == 0
    assert ours.read_bytes() == good  # remade
    assert untouched.stat().st_mtime_ns == before  # already what this run makes: not rewritten
    assert user_file.read_bytes() == user_bytes  # never listed: never replaced
    toy = MASKIGE.path(lay, lay.frame("train", *_train_clip(root), 1))
    assert (
        toy.is_file()
        and json.dumps(toy.relative_to(root).as_posix()) not in (root / MANIFEST).read_text()
    )


def _train_clip(root: Path) -> tuple[str, str]:
    clip = sorted((S4Layout(root).frames_root / "train").glob("*/*"))[0]
    return clip.parent.name, clip.name


def test_other_settings_are_refused_without_overwrite(sam_file, toy_base, tmp_path, capsys):
    root = s4_root(toy_base, tmp_path)
    frames = split_frames(root)
    for frame in frames[2:]:  # only two frames to make: fast
        MASKIGE.path(S4Layout(root), frame).parent.mkdir(parents=True, exist_ok=True)
        Image.new("P", (224, 224), 0).save(MASKIGE.path(S4Layout(root), frame))
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS]) == 0
    capsys.readouterr()
    other = [*FLAGS, "--points_per_side", "3"]
    assert maskige([str(root), "--sam_weights", str(sam_file), *other]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(root / PROVENANCE) in err and "--overwrite" in err
    assert "2 maskiges here were made with other settings (parameters differ)" in err
    assert maskige([str(root), "--sam_weights", str(sam_file), *other, "--overwrite"]) == 0
    assert maskige([str(root), "--sam_weights", str(sam_file), *other]) == 0  # all current
    mark = dataset_mark(root)
    assert mark["files_made"] == 2 and mark["files_made_with_other_settings"] == 0
    assert mark["parameters"]["points_per_side"] == 3


@pytest.mark.slow
def test_sigterm_leaves_whole_files_and_a_rerun_resumes(sam_file, toy_base, tmp_path):
    root = s4_root(toy_base, tmp_path)
    slow = [*FLAGS, "--points_per_side", "3"]  # ~2x the work per frame: time to stop it
    argv = [sys.executable, "-m", "avsbench.cli", "maskige", str(root), "--sam_weights",
            str(sam_file), *slow, "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    manifest = root / MANIFEST
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 2:  # 1 file made
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err
    lay = S4Layout(root)
    made = [MASKIGE.path(lay, f) for f in split_frames(root) if MASKIGE.path(lay, f).exists()]
    assert 1 <= len(made) < 10
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]  # no half-written file
    for path in made:
        Image.open(path).load()  # whole PNGs
    assert json.loads((root / PROVENANCE).read_text())["complete"] is False

    assert maskige([str(root), "--sam_weights", str(sam_file), *slow]) == 0
    assert all(MASKIGE.path(lay, f).is_file() for f in split_frames(root))
    assert json.loads((root / PROVENANCE).read_text())["complete"] is True
    assert len(set(manifest.read_text().splitlines())) == 10


def bad_weights(tmp_path: Path, sam_file: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, text its one-line refusal holds)."""
    state = torch.load(sam_file, weights_only=True)
    files = {}
    text = tmp_path / "page.pth"
    text.write_text("<html>Not Found</html>")
    files["text"] = (text, "text file")
    pickled = tmp_path / "code.pth"
    torch.save({"model": _Hostile()}, pickled)
    files["pickled code"] = (pickled, "never loaded")
    objects = tmp_path / "objects.pth"
    torch.save({"model": _Plain()}, objects)
    files["pickled object"] = (objects, "never loaded")
    other = tmp_path / "vct.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(1)}, other)
    files["not SAM"] = (other, "not segment-anything weights")
    cut = tmp_path / "cut.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("mask_decoder.")}, cut)
    files["incomplete"] = (cut, "incomplete segment-anything weights")
    odd = tmp_path / "odd.pth"
    torch.save({**state, "image_encoder.extra": torch.zeros(2)}, odd)
    files["extra key"] = (odd, "do not fit")
    return files


class _Plain:
    pass


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE_RAN",))


def test_bad_weights_are_refused_in_one_line(sam_file, toy_base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = s4_root(toy_base, tmp_path)
    for name, (path, says) in bad_weights(tmp_path, sam_file).items():
        assert maskige([str(root), "--sam_weights", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and says in err, (name, err)
        assert "Traceback" not in err
    assert not (tmp_path / "HOSTILE_RAN").exists()
    assert maskige([str(root), "--sam_weights", str(sam_file), "--sam_model", "vit_b"]) == 2
    err = capsys.readouterr().err
    assert "contradicts the file" in err and err.count("\n") == 1
    assert not (root / PROVENANCE).exists() and not (root / MANIFEST).exists()


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_published_architectures_are_read_off_the_shapes(model_type):
    with torch.device("meta"):
        published = sam_model_registry[model_type]()
        state = published.state_dict()
        arch = architecture_of(state)
        ours = build_sam(arch).state_dict()
    assert arch.model_type == model_type
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }


def test_a_path_without_a_dataset_is_refused(sam_file, tmp_path, capsys):
    assert maskige([str(tmp_path), "--sam_weights", str(sam_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no AVSBench dataset root" in err


def test_an_unreadable_frame_is_named_and_the_rest_is_kept(sam_file, toy_base, tmp_path, capsys):
    root = s4_root(toy_base, tmp_path)
    frames = split_frames(root)
    frames[-1].write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the last one made
    assert maskige([str(root), "--sam_weights", str(sam_file), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(frames[-1]) in err and "unreadable frame" in err
    assert all(MASKIGE.path(S4Layout(root), f).is_file() for f in frames[:-1])
