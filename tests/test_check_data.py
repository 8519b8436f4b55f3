"""`avsbench check-data` on the synthetic AVSBench: clean data passes, and each planted
defect is found, named with its path or CSV line, and makes the exit status non-zero. The
defects are real files (a deleted frame, a truncated PNG, a mask with a stray value...),
and where the datasets read the same file they fail on it too."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avsbench import cli
from avsbench.data.datasets import AVSSDataset, S4Dataset
from avsbench.data.layouts import AVSDataError, AVSSLayout, MS3Layout, S4Layout
from avsbench.data.synthetic import make_toy_data
from avsbench.data_check import check_dataset
from avsbench.data_check_rules import PUBLISHED_CLIPS

ROOTS = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench_semantic"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A small synthetic S4, MS3 and AVSS (read-only copies are made per test)."""
    base = tmp_path_factory.mktemp("toy")
    make_toy_data(base, seed=0, scale=0.05, settings=("s4",), num_categories=3)
    make_toy_data(base, seed=0, scale=0.025, settings=("ms3", "avss"), num_categories=3)
    return base


@pytest.fixture
def data(toy, tmp_path):
    """setting -> a fresh copy of its root, to plant defects in."""

    def copy(setting: str) -> Path:
        root = tmp_path / ROOTS[setting]
        shutil.copytree(toy / ROOTS[setting], root)
        return root

    return copy


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _check(root: Path, setting: str, capsys) -> tuple[int, str]:
    status = cli.main(["check-data", str(root), "--setting", setting, "--no-progress"])
    return status, capsys.readouterr().out


def _kinds(root: Path, setting: str) -> dict[str, list]:
    found = check_dataset(root, setting, progress=False)
    kinds: dict[str, list] = {}
    for problem in found.problems:
        kinds.setdefault(problem.kind, []).append(problem)
    return kinds


def _s4_test_clip(root: Path) -> tuple[str, str]:
    meta = pd.read_csv(root / "s4_meta_data.csv")
    row = meta[meta["split"] == "test"].iloc[0]
    return row["name"], row["category"]


@pytest.mark.parametrize("setting", ["s4", "ms3", "avss"])
def test_clean_synthetic_data_is_usable_and_nothing_is_written(toy, setting, capsys):
    root = toy / ROOTS[setting]
    before = _tree(root)
    status, out = _check(root, setting, capsys)
    assert status == 0, out
    assert _tree(root) == before  # read-only
    meta = pd.read_csv(next(root.glob("*.csv")))
    expected = {s: int((meta["split"] == s).sum()) for s in ("train", "val", "test")}
    published = PUBLISHED_CLIPS[setting]
    line = ", ".join(f"{s} {n} (published {published[s]})" for s, n in expected.items())
    assert f"clips: {line}" in out
    assert "synthetic (make-toy-data)" in out and "USABLE: no error, 3 warning(s)" in out
    assert set(_kinds(root, setting)) == {"count"}  # the synthetic counts differ, by design


def test_missing_frame_is_named_and_fatal(data, capsys):
    root = data("s4")
    name, category = _s4_test_clip(root)
    frame = S4Layout(root).frame("test", category, name, 3)
    frame.unlink()
    status, out = _check(root, "s4", capsys)
    assert status == 1
    assert f"ERROR missing_frame: 1 x missing frame\n    {frame}: missing frame" in out
    assert "NOT USABLE: 1 error(s) (missing_frame)" in out
    with pytest.raises(AVSDataError, match="missing frame"):  # the loader fails on it too
        S4Dataset(root, "test")[0]


def test_truncated_png_is_unreadable(data, capsys):
    root = data("ms3")
    video_id = pd.read_csv(root / "ms3_meta_data.csv")["video_id"].iloc[0]
    frame = MS3Layout(root).frame(video_id, 2)
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    status, out = _check(root, "ms3", capsys)
    assert status == 1
    (problem,) = _kinds(root, "ms3")["unreadable_frame"]
    assert problem.path == frame and "truncated" in problem.detail
    assert f"{frame}: cannot be decoded" in out


def test_missing_wav_and_log_mel_is_fatal_but_either_alone_is_a_warning(data, capsys):
    root = data("s4")
    name, category = _s4_test_clip(root)
    lay = S4Layout(root)
    lay.wav("test", category, name).unlink()
    assert _kinds(root, "s4").keys() == {"count", "missing_wav"}  # the log-mel is read
    assert _check(root, "s4", capsys)[0] == 0
    lay.log_mel("test", category, name).unlink()
    status, out = _check(root, "s4", capsys)
    assert status == 1
    (problem,) = _kinds(root, "s4")["missing_audio"]
    assert problem.path == lay.log_mel("test", category, name)
    assert "ERROR missing_audio: 1 x no audio (neither wav nor log-mel)" in out


def test_s4_mask_with_value_7_is_found(data, capsys):
    root = data("s4")
    name, category = _s4_test_clip(root)
    path = S4Layout(root).mask("test", category, name, 2)
    values = np.asarray(Image.open(path)).copy()
    values[0, 0] = 7
    Image.fromarray(values).save(path)
    status, out = _check(root, "s4", capsys)
    assert status == 1
    assert f"{path}: values [7] besides 0 / 255" in out


def test_s4_mask_in_0_1_values_is_found(data):
    root = data("s4")
    name, category = _s4_test_clip(root)
    path = S4Layout(root).mask("test", category, name, 1)
    values = np.asarray(Image.open(path))
    Image.fromarray((values > 0).astype(np.uint8)).save(path)  # 0/1: read as empty
    (problem,) = _kinds(root, "s4")["mask_values"]
    assert problem.path == path and "values [1]" in problem.detail


def _avss_test_clip(root: Path) -> tuple[str, str]:
    meta = pd.read_csv(root / "metadata.csv")
    row = meta[(meta["split"] == "test") & (meta["label"] == "v1m")].iloc[0]
    return row["label"], row["uid"]


def test_avss_label_out_of_class_range_is_found(data, capsys):
    root = data("avss")
    label, uid = _avss_test_clip(root)
    path = AVSSLayout(root).label_semantic(label, uid, 1)
    ids = np.asarray(Image.open(path)).copy()
    ids[5, 5] = 80
    Image.fromarray(ids).save(path)
    status, out = _check(root, "avss", capsys)
    assert status == 1
    assert f"{path}: class id 80 outside 0..70" in out
    index = next(i for i, row in enumerate(AVSSDataset(root, "test").rows) if row[0] == uid)
    with pytest.raises(AVSDataError, match="class id 80 outside 0..70"):
        AVSSDataset(root, "test")[index]


def test_avss_colour_outside_the_palette_is_found(data):
    root = data("avss")
    label, uid = _avss_test_clip(root)
    for folder in root.glob("*/*/labels_semantic"):  # read the colour masks instead
        shutil.rmtree(folder)
    path = AVSSLayout(root).label_rgb(label, uid, 0)
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[3, 4] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    (problem,) = _kinds(root, "avss")["mask_class_range"]
    assert problem.path == path and "(1, 2, 3)" in problem.detail


def test_mask_of_the_wrong_size_is_found(data, capsys):
    root = data("s4")
    name, category = _s4_test_clip(root)
    path = S4Layout(root).mask("test", category, name, 4)
    Image.open(path).resize((100, 80), Image.NEAREST).save(path)
    status, out = _check(root, "s4", capsys)
    assert status == 1
    assert [(p.kind, p.path) for p in check_dataset(root, "s4", progress=False).errors] == [
        ("image_size", path)
    ]
    assert f"{path}: mask is 100x80 (w x h) but its frame is 224x224 (w x h)" in out


def test_frame_of_another_size_is_a_warning(data):
    root = data("ms3")
    video_id = pd.read_csv(root / "ms3_meta_data.csv")["video_id"].iloc[-1]
    frame = MS3Layout(root).frame(video_id, 1)
    Image.open(frame).resize((200, 200)).save(frame)
    kinds = _kinds(root, "ms3")
    assert [p.path for p in kinds["frame_size"]] == [frame]
    assert [p.path.name for p in kinds["image_size"]] == [f"{video_id}_1.png"]  # its mask


def _append(csv_path: Path, line: str) -> int:
    """Append a line; returns its line number."""
    text = csv_path.read_text()
    text = text if text.endswith("\n") else text + "\n"
    csv_path.write_text(text + line + "\n")
    return len(csv_path.read_text().splitlines())


def test_csv_problems_are_reported_by_line(data, capsys):
    root = data("s4")
    csv_path = root / "s4_meta_data.csv"
    bad_split = _append(csv_path, "abcdefghijk,0,dog_barking,tset")
    short = _append(csv_path, "abcdefghijl,0,dog_barking")
    bad_name = _append(csv_path, "../escape,0,dog_barking,test")
    status, out = _check(root, "s4", capsys)
    assert status == 1
    assert f"{csv_path}: line {bad_split}: unknown split 'tset'" in out
    assert f"{csv_path}: line {short}: 3 fields, the header has 4" in out
    assert f"{csv_path}: line {bad_name}: name '../escape' is not a plain file name" in out
    assert "ERROR csv: 3 x metadata CSV row" in out


def test_duplicate_id_names_both_lines(data, capsys):
    root = data("ms3")
    csv_path = root / "ms3_meta_data.csv"
    lines = csv_path.read_text().splitlines()
    video_id, split = lines[2].split(",")
    again = _append(csv_path, f"{video_id},{split}")
    status, out = _check(root, "ms3", capsys)
    assert status == 1
    assert f"lines 3 and {again}: clip '{video_id}' twice in split '{split}'" in out


def test_missing_column_is_named(data):
    root = data("avss")
    meta = pd.read_csv(root / "metadata.csv").drop(columns=["label"])
    meta.to_csv(root / "metadata.csv", index=False)
    (problem,) = _kinds(root, "avss")["csv"]
    assert "line 1: missing column(s) ['label']" in problem.detail


def test_a_folder_above_the_release_is_a_layout_error(toy, capsys):
    status, out = _check(toy, "s4", capsys)
    assert status == 1
    assert "ERROR layout" in out and "Single-source" in out


def test_root_that_is_not_a_folder_is_one_line(tmp_path, capsys):
    status = cli.main(["check-data", str(tmp_path / "nowhere"), "--setting", "s4"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "not a folder" in err


def test_semantic_source_reads_s4_from_v1s(toy):
    found = check_dataset(toy / ROOTS["avss"], "s4", progress=False)
    meta = pd.read_csv(toy / ROOTS["avss"] / "metadata.csv")
    v1s = meta[meta["label"] == "v1s"]
    assert found.counts == {s: int((v1s["split"] == s).sum()) for s in ("train", "val", "test")}
    assert found.usable and found.published is None and "reading: semantic" in found.layout


def test_maskiges_are_checked_when_asked(data):
    from avsbench.data.extra_inputs import MASKIGE

    root = data("s4")
    name, category = _s4_test_clip(root)
    lay = S4Layout(root)
    maskige = MASKIGE.path(lay, lay.frame("test", category, name, 2))
    maskige.unlink()
    assert "missing_maskige" not in _kinds(root, "s4")  # not asked: not read
    found = check_dataset(root, "s4", maskige=True, progress=False)
    assert [(p.kind, p.path) for p in found.errors] == [("missing_maskige", maskige)]


def test_vct_copies_pass_and_a_copy_gt_of_the_wrong_size_is_found(toy, tmp_path):
    from avsbench.data.vct_copies import S4Copies384
    from tests.data.test_vct_copies import copy_avss, copy_object

    s4, avss = tmp_path / "Single-source", tmp_path / "AVSBench_semantic"
    shutil.copytree(toy / "Single-source", s4)
    shutil.copytree(toy / "AVSBench_semantic", avss)
    copy_object("s4", s4)
    copy_avss(avss)
    for root, setting in ((s4, "s4"), (avss, "avss")):
        found = check_dataset(root, setting, source="vct384", maskige=True, progress=False)
        assert found.usable and "reading: vct384" in found.layout, found.summary()
        assert not [p for p in found.problems if p.kind != "count"], found.summary()
    name, category = _s4_test_clip(s4)
    gt = S4Copies384(s4).mask("test", category, name, 1)
    Image.open(gt).resize((384, 384), Image.NEAREST).save(gt)  # 384 where VCT evaluates 224
    found = check_dataset(s4, "s4", source="vct384", progress=False)
    assert [(p.kind, p.path) for p in found.errors] == [("image_size", gt)]
    assert "the copies' GT is 224x224" in found.errors[0].detail


def test_a_clip_in_two_splits_is_a_warning_naming_both_lines(data):
    root = data("ms3")
    csv_path = root / "ms3_meta_data.csv"
    lines = csv_path.read_text().splitlines()
    video_id, split = lines[1].split(",")
    other = "test" if split != "test" else "train"
    again = _append(csv_path, f"{video_id},{other}")
    found = check_dataset(root, "ms3", progress=False)
    (problem,) = [p for p in found.problems if p.kind == "split_overlap"]
    assert problem.detail == (
        f"lines 2 and {again}: clip '{video_id}' is in split '{split}' and in split '{other}'"
    )
    # its files are looked for in the other split too (MS3 masks and audio are per split)
    assert found.errors and all(f"/{other}/{video_id}" in str(p.path) for p in found.errors)


def test_splits_limits_the_files_read_not_the_csv(data, capsys):
    root = data("s4")
    meta = pd.read_csv(root / "s4_meta_data.csv")
    row = meta[meta["split"] == "train"].iloc[0]
    S4Layout(root).frame("train", row["category"], row["name"], 2).unlink()
    status = cli.main(["check-data", str(root), "--setting", "s4", "--splits", "val,test"])
    assert status == 0 and "clips: train " in capsys.readouterr().out
    assert _check(root, "s4", capsys)[0] == 1
