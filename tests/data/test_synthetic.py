"""The synthetic AVSBench: official layouts, masks = sounding objects, sound = category."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd
import pytest

from avsbench.commands import make_toy_data as make_toy_data_command
from avsbench.data import audio, synthetic
from avsbench.data.datasets import AVSSDataset, MS3Dataset, S4Dataset
from avsbench.data.palette import CLASS_NAMES, read_label2idx
from avsbench.owned_folder import FolderError


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    roots = synthetic.make_toy_data(out, seed=0, scale=0.05)
    truth = {k: json.loads((r / synthetic.TRUTH_FILE).read_text()) for k, r in roots.items()}
    return roots, truth


def test_layout_files(toy):
    roots, _ = toy
    s4 = roots["s4"]
    meta = pd.read_csv(s4 / "s4_meta_data.csv")
    assert list(meta.columns) == ["name", "start", "category", "split"]
    assert meta["split"].value_counts().to_dict() == {"train": 8, "val": 2, "test": 2}
    name, cat = meta.iloc[0]["name"], meta.iloc[0]["category"]  # a train clip
    d = s4 / "s4_data"
    assert sorted(p.name for p in (d / "visual_frames/train" / cat / name).iterdir()) == [
        f"{name}_{i}.png" for i in range(1, 6)
    ]
    assert [p.name for p in (d / "gt_masks/train" / cat / name).iterdir()] == [f"{name}_1.png"]
    assert (d / "audio_wav/train" / cat / f"{name}.wav").is_file()
    ms3 = roots["ms3"]
    vid = pd.read_csv(ms3 / "ms3_meta_data.csv")["video_id"][0]
    assert (ms3 / "ms3_data/visual_frames" / vid / f"{vid}.mp4_5.png").is_file()
    avss = roots["avss"]
    meta = pd.read_csv(avss / "metadata.csv")
    assert list(meta.columns) == ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
    assert read_label2idx(avss / "label2idx.json") == {n: i for i, n in enumerate(CLASS_NAMES)}
    row = meta[(meta["label"] == "v2") & (meta["split"] == "val")].iloc[0]
    clip = avss / "v2" / row["uid"]
    assert sorted(p.name for p in (clip / "frames").iterdir()) == sorted(
        f"{k}.jpg" for k in range(10)
    )
    assert len(list((clip / "labels_rgb").iterdir())) == 10
    row = meta[(meta["label"] == "v1s") & (meta["split"] == "train")].iloc[0]
    assert [p.name for p in (avss / "v1s" / row["uid"] / "labels_rgb").iterdir()] == ["0.png"]


def _sounding_pixels(clip: dict, t: int) -> int:
    return sum(px[t] for px, on in zip(clip["pixels"], clip["sounding"]) if on[t])


@pytest.mark.parametrize("split", ["train", "val"])
def test_s4_masks_are_the_sounding_object(toy, split):
    roots, truth = toy
    ds = S4Dataset(roots["s4"], split)
    for i in range(len(ds)):
        s = ds[i]
        clip = truth["s4"]["clips"][s["video_id"]]
        sounding = [o for o, on in zip(clip["objects"], clip["sounding"]) if on[0]]
        assert sounding == [s["category"]] == [clip["category"]]
        assert 2 <= len(clip["objects"]) <= 3
        for t in range(5):
            if s["gt_valid"][t]:
                assert int(s["masks"][t].sum()) == _sounding_pixels(clip, t) > 0


def test_ms3_masks_follow_switching_sources(toy):
    roots, truth = toy
    ds = MS3Dataset(roots["ms3"], "train")
    for i in range(len(ds)):
        s = ds[i]
        clip = truth["ms3"]["clips"][s["video_id"]]
        assert len(clip["objects"]) == 3
        for t in range(5):
            assert int(s["masks"][t].sum()) == _sounding_pixels(clip, t)


@pytest.mark.parametrize("split", ["train", "test"])
def test_avss_masks_are_sounding_classes(toy, split):
    roots, truth = toy
    ds = AVSSDataset(roots["avss"], split)
    for i in range(len(ds)):
        s = ds[i]
        clip = truth["avss"]["clips"][s["video_id"]]
        n = 10 if s["category"] == "v2" else 5
        assert s["frame_valid"].tolist() == [1] * n + [0] * (10 - n)
        for t in range(n):
            if not s["gt_valid"][t]:
                continue
            ids, counts = np.unique(s["masks"][t].numpy(), return_counts=True)
            expected = {
                c: clip["pixels"][j][t]
                for j, c in enumerate(clip["class_ids"])
                if clip["sounding"][j][t] and clip["pixels"][j][t] > 0
            }
            assert set(ids) - {0} == set(expected)
            if s["category"] != "v2" and split != "train":  # native 224x224: exact counts
                assert dict(zip(ids.tolist(), counts.tolist())) | {0: 0} == expected | {0: 0}


def test_sound_identifies_the_category(toy):
    """The S4 log-mel is loudest in the mel band of the sounding category's f0."""
    roots, truth = toy
    looks = synthetic.category_looks(len(truth["s4"]["categories"]))
    centres = audio.mel_matrix().argmax(axis=0) * 8000 / 256  # Hz of each band's peak bin
    ds = S4Dataset(roots["s4"], "train", image_size=32)
    for i in range(len(ds)):
        s = ds[i]
        k = truth["s4"]["categories"].index(s["category"])
        energy = s["audio"].mean(dim=(0, 1, 2)).numpy()  # [64]
        bands = [int(np.abs(centres - look.f0).argmin()) for look in looks]
        assert int(np.argmax(energy[bands])) == k


def test_pkl_is_log_mel_of_wav(toy):
    roots, _ = toy
    d = roots["s4"] / "s4_data"
    wav = next((d / "audio_wav").rglob("*.wav"))
    pkl = d / "audio_log_mel" / wav.relative_to(d / "audio_wav").with_suffix(".pkl")
    expected = audio.clip_log_mel(audio.wav_to_log_mel(wav), 5)[:, None]
    np.testing.assert_array_equal(audio.load_log_mel_pkl(pkl), expected)


def test_deterministic_by_seed(tmp_path):
    a = synthetic.make_toy_data(tmp_path / "a", seed=3, scale=0.02, settings=("ms3",))["ms3"]
    b = synthetic.make_toy_data(tmp_path / "b", seed=3, scale=0.02, settings=("ms3",))["ms3"]
    c = synthetic.make_toy_data(tmp_path / "c", seed=4, scale=0.02, settings=("ms3",))["ms3"]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        if rel.suffix != ".pkl":  # pickles embed storage ids; compared by value below
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        else:
            np.testing.assert_array_equal(
                audio.load_log_mel_pkl(a / rel), audio.load_log_mel_pkl(b / rel)
            )
    assert (a / "ms3_meta_data.csv").read_text() != (c / "ms3_meta_data.csv").read_text()


def test_cli_and_overwrite_rules(tmp_path):
    parser = argparse.ArgumentParser()
    make_toy_data_command.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path), "--scale", "0.02", "--settings", "s4", "--num-categories", "3"]
    )
    assert make_toy_data_command.run(args) == 0
    meta = pd.read_csv(tmp_path / "Single-source/s4_meta_data.csv")
    assert set(meta["category"]) <= {"baby_laughter", "female_singing", "male_speech"}
    with pytest.raises(FolderError, match="earlier output of make-toy-data.*--overwrite"):
        synthetic.make_toy_data(tmp_path, scale=0.02, settings=("s4",), num_categories=3)
    args.overwrite = True
    assert make_toy_data_command.run(args) == 0
    real = tmp_path / "Multi-sources"
    real.mkdir()
    (real / "ms3_meta_data.csv").write_text("video_id,split\n")
    with pytest.raises(FolderError, match="did not write .*no manifest.*ms3_meta_data.csv"):
        synthetic.make_toy_data(tmp_path, settings=("ms3",), overwrite=True)
    assert (real / "ms3_meta_data.csv").read_text() == "video_id,split\n"


def listed_files(root) -> list[str]:
    """The files of a dataset root, as its manifest names them (relative, sorted)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_overwrite_replaces_the_generators_files_whole(tmp_path):
    """--overwrite of a root holding only its manifest's files replaces it whole (fewer
    clips: the extra files go too); the new manifest lists exactly the files there."""
    kwargs = dict(settings=("s4",), num_categories=3)
    root = synthetic.make_toy_data(tmp_path, scale=0.04, **kwargs)["s4"]
    manifest = json.loads((root / ".avsbench-toy-data.json").read_text())
    assert manifest["format"] == "avsbench-toy-data/1"
    assert sorted(manifest["files"] + [".avsbench-toy-data.json"]) == listed_files(root)
    assert synthetic.make_toy_data(tmp_path, scale=0.02, overwrite=True, **kwargs)["s4"] == root
    smaller = json.loads((root / ".avsbench-toy-data.json").read_text())["files"]
    assert len(smaller) < len(manifest["files"])  # 12 clips instead of 18
    assert listed_files(root) == sorted(smaller + [".avsbench-toy-data.json"])
    assert sorted(os.listdir(tmp_path)) == ["Single-source"]  # no temporary folder left


def test_a_users_file_in_the_root_survives_overwrite(tmp_path, capsys):
    """A user's file inside a generated root stops `make-toy-data --overwrite` (one line
    naming it, exit 2) and survives, as does everything else (it once deleted the whole
    root, scripts/demo.sh runs it every time)."""
    args = ["--out", str(tmp_path), "--scale", "0.02", "--settings", "s4"]
    args += ["--num-categories", "3"]
    parser = argparse.ArgumentParser()
    make_toy_data_command.add_arguments(parser)
    assert make_toy_data_command.run(parser.parse_args(args)) == 0
    root = tmp_path / "Single-source"
    before = {f: (root / f).read_bytes() for f in listed_files(root)}
    notes = root / "s4_data" / "my_notes.txt"
    notes.write_text("mine")
    capsys.readouterr()
    from avsbench import cli

    status = cli.main(["make-toy-data", *args, "--overwrite"])
    assert notes.is_file() and notes.read_text() == "mine"
    assert {f: (root / f).read_bytes() for f in before} == before
    assert status == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"avsbench: {root}: the output folder holds files make-toy-data did")
    assert "s4_data/my_notes.txt" in line and "--overwrite" not in line.split(". ", 1)[1]
    assert sorted(os.listdir(tmp_path)) == ["Single-source"]  # no temporary folder left


def test_overwrite_refuses_forged_manifests_and_links(tmp_path):
    """A manifest naming files outside the root, or a listed file replaced by a symbolic
    link to a file outside: refused, naming it; the outside files are untouched."""
    kwargs = dict(settings=("s4",), num_categories=3, scale=0.02)
    root = synthetic.make_toy_data(tmp_path / "data", **kwargs)["s4"]
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    manifest_path = root / synthetic.TOY_DATA.manifest
    manifest = json.loads(manifest_path.read_text())
    for forged in ("../../precious.txt", str(outside)):
        manifest_path.write_text(json.dumps(manifest | {"files": manifest["files"] + [forged]}))
        with pytest.raises(FolderError, match="not a plain relative path"):
            synthetic.make_toy_data(tmp_path / "data", overwrite=True, **kwargs)
        assert outside.read_text() == "keep"
    manifest_path.write_text(json.dumps(manifest))
    (root / "s4_meta_data.csv").unlink()
    (root / "s4_meta_data.csv").symlink_to(outside)
    with pytest.raises(FolderError, match="did not write: s4_meta_data.csv"):
        synthetic.make_toy_data(tmp_path / "data", overwrite=True, **kwargs)
    assert outside.read_text() == "keep" and (root / "s4_meta_data.csv").is_symlink()


def _band_energy(log_mel: np.ndarray, f0: float) -> float:
    """Mean log-mel energy [96, 64] -> the band whose peak bin is nearest f0."""
    centres = audio.mel_matrix().argmax(axis=0) * 8000 / 256  # Hz of each band's peak bin
    return float(log_mel[:, int(np.abs(centres - f0).argmin())].mean())


@pytest.mark.parametrize("setting", ["ms3", "avss"])
def test_the_audio_decides_which_visible_object_sounds(toy, setting):
    """Multi-source clips: the visible objects alone do not say which ones sound (many
    frames have a visible silent object), and the sound does: in each 0.96 s segment the
    f0 band of a visible object's category is louder when it sounds than when it is silent,
    by a wide margin, whatever the other sources do."""
    roots, truth = toy
    info = truth[setting]
    looks = synthetic.category_looks(len(info["categories"]))
    ds = (
        MS3Dataset(roots["ms3"], "train")
        if setting == "ms3"
        else AVSSDataset(roots["avss"], "train")
    )
    on, off, frames, with_silent = [], [], 0, 0
    for i in range(len(ds)):
        s = ds[i]
        clip = info["clips"][s["video_id"]]
        if setting == "avss" and s["category"] == "v1s":
            continue  # single source
        num_frames = len(clip["sounding"][0])
        for t in range(num_frames):
            frames += 1
            with_silent += not all(flags[t] for flags in clip["sounding"])
            mel = s["audio"][t, 0].numpy()  # [96, 64]
            for name, flags in zip(clip["objects"], clip["sounding"]):
                energy = _band_energy(mel, looks[info["categories"].index(name)].f0)
                (on if flags[t] else off).append(energy)
    assert frames > 0 and with_silent / frames >= 0.3
    assert on and off and min(on) > max(off) + 1.0, (min(on), max(off))


MIN_SHOWN = 0.25  # the guarantee: a sounding object shows at least a quarter of itself


def scenes_and_truth(out, monkeypatch, **kwargs) -> dict[str, tuple[dict, list]]:
    """make_toy_data(out, **kwargs) with the file writers and the sound synthesis replaced
    by no-ops (the scenes, their drawing and their rendered ownership are the generator's
    own): {setting: (toy_truth.json, [(scene, frame size) per clip, in writing order])}."""
    for writer in ("_write_image", "_write_gray", "_write_audio"):
        monkeypatch.setattr(synthetic, writer, lambda *args, **kw: None)
    monkeypatch.setattr(synthetic, "synthesise_sound", lambda *args, **kw: np.zeros(1, np.int16))
    real_render, scenes = synthetic.render_clip, []

    def render(rng, looks, num_frames, size, **kw):
        clip = real_render(rng, looks, num_frames, size, **kw)
        scenes.append((clip.scene, size))
        return clip

    monkeypatch.setattr(synthetic, "render_clip", render)
    roots = synthetic.make_toy_data(out, **kwargs)
    result, start = {}, 0
    for setting, root in roots.items():
        truth = json.loads((root / synthetic.TRUTH_FILE).read_text())
        count = len(truth["clips"])
        result[setting] = (truth, scenes[start : start + count])
        start += count
    assert start == len(scenes)
    return result


def hidden_sounding_objects(truth: dict, scenes: list) -> list[tuple[str, str, int, int]]:
    """(clip, object, frame, visible pixels) of every object that sounds in a frame but
    shows less than MIN_SHOWN of its own pixels there (its own: the object rendered alone)."""
    looks = synthetic.category_looks(len(truth["categories"]))
    hidden = []
    for (uid, clip), (scene, (w, h)) in zip(truth["clips"].items(), scenes, strict=True):
        assert clip["objects"] == [truth["categories"][o.category] for o in scene.objects]
        for j, obj in enumerate(scene.objects):
            for t, sounds in enumerate(clip["sounding"][j]):
                shown = clip["pixels"][j][t]
                box = (2 * obj.radius * min(w, h) + 3) ** 2  # >= its own pixels
                if not sounds or shown >= MIN_SHOWN * box:
                    continue
                alone = synthetic.Scene([obj], scene.num_frames, scene.background)
                blank = np.zeros((h, w, 3), np.float32)
                _, owner = synthetic.render_frame(alone, looks, t, blank, np.random.default_rng())
                if shown < MIN_SHOWN * (owner == 0).sum():
                    hidden.append((uid, clip["objects"][j], t, shown))
    return hidden


def test_a_sounding_object_is_never_hidden_avss_v1s(tmp_path, monkeypatch):
    """The clips around the one that was wrong: AVSS v1s train B4y61Qn3RRo_10 (default
    seed), labelled on frame 0 only, whose one sounding object ("train") a silent
    distractor covered entirely (0 visible pixels)."""
    ((truth, scenes),) = scenes_and_truth(
        tmp_path, monkeypatch, settings=("avss",), scale=0.15
    ).values()
    clip = truth["clips"]["B4y61Qn3RRo_10"]
    assert clip["split"] == "train" and clip["category"] == "v1s"
    (shown,) = [p[0] for p, on in zip(clip["pixels"], clip["sounding"]) if on[0]]
    assert shown > 0
    assert hidden_sounding_objects(truth, scenes) == []


@pytest.mark.slow
def test_no_sounding_object_is_hidden_in_the_whole_default_data(tmp_path, monkeypatch):
    """Every clip of the default synthetic S4, MS3 and AVSS (seed 0, scale 1, about 1 min):
    each object shows at least a quarter of itself in every frame it sounds in."""
    generated = scenes_and_truth(tmp_path, monkeypatch)
    assert {k: len(t["clips"]) for k, (t, _) in generated.items()} == {
        "s4": 224, "ms3": 320, "avss": 288,
    }  # fmt: skip
    for setting, (truth, scenes) in generated.items():
        assert hidden_sounding_objects(truth, scenes) == [], setting
