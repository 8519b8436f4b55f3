"""Metadata rows are checked when the CSV is read (docs/RELIABILITY.md, "Inputs validated
when read"): a name that would leave the dataset folder, or an unknown split, is an error
naming the CSV file and line, in every setting."""

from __future__ import annotations

import pytest

from avsbench.data.datasets import AVSSDataset, MS3Dataset, S4Dataset
from avsbench.data.layouts import AVSDataError

HOSTILE = ["/etc/passwd", "../../outside", "..", "a/b", "a\\b", "C:evil", ""]


def _replace_line(path, line: int, old: str, new: str) -> None:
    lines = path.read_text().split("\n")
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("name", HOSTILE)
def test_s4_name_and_category_must_be_plain(s4_root, name):
    csv = s4_root / "s4_meta_data.csv"
    original = csv.read_text()
    for column, old in (("name", "vidVal000001"), ("category", "helicopter")):
        csv.write_text(original)
        _replace_line(csv, 3, old, name)
        with pytest.raises(AVSDataError, match=rf"s4_meta_data.csv, line 3: {column} "):
            S4Dataset(s4_root, "train")  # any split: the whole file is checked


@pytest.mark.parametrize("name", HOSTILE)
def test_ms3_video_id_must_be_plain(ms3_root, name):
    csv = ms3_root / "ms3_meta_data.csv"
    _replace_line(csv, 2, "abcDEF12345_3", name)
    with pytest.raises(AVSDataError, match=r"ms3_meta_data.csv, line 2: video_id "):
        MS3Dataset(ms3_root, "train")


@pytest.mark.parametrize("column,old", [("uid", "vidC_2"), ("label", "v2")])
def test_avss_uid_and_label_must_be_plain(avss_root, column, old):
    csv = avss_root / "metadata.csv"
    _replace_line(csv, 4, f",{old}", ",../../x")
    with pytest.raises(AVSDataError, match=rf"metadata.csv, line 4: {column} '\.\./\.\./x'"):
        AVSSDataset(avss_root, "val")


@pytest.mark.parametrize("split", ["Test", "training", " ", "valid"])
def test_unknown_split_value_names_the_line(s4_root, split):
    csv = s4_root / "s4_meta_data.csv"
    _replace_line(csv, 3, ",val", f",{split}")
    with pytest.raises(AVSDataError, match=r"s4_meta_data.csv, line 3: unknown split"):
        S4Dataset(s4_root, "train")


def test_line_numbers_count_blank_lines(ms3_root):
    csv = ms3_root / "ms3_meta_data.csv"
    csv.write_text("video_id,split\nabcDEF12345_3,train\n\nother,Test\n")
    with pytest.raises(AVSDataError, match=r"line 4: unknown split 'Test'"):
        MS3Dataset(ms3_root, "train")


def test_good_rows_still_read(s4_root, ms3_root):
    assert len(S4Dataset(s4_root, "train")) == 1 and len(S4Dataset(s4_root, "val")) == 1
    assert len(MS3Dataset(ms3_root, "train")) == 1


def test_s4_duplicated_clip_names_both_lines(s4_root):
    csv = s4_root / "s4_meta_data.csv"
    csv.write_text(csv.read_text() + "\nvidTrain0001,0,dog_barking,train\n")
    with pytest.raises(AVSDataError) as caught:
        S4Dataset(s4_root, "val")  # any split: the whole file is checked
    assert str(caught.value) == (
        f"{csv}, lines 2 and 5: clip 'vidTrain0001' appears twice in split 'train' (it would "
        "be trained or tested twice); remove one of the rows"
    )


def test_ms3_duplicated_video_id_names_both_lines(ms3_root):
    csv = ms3_root / "ms3_meta_data.csv"
    csv.write_text("video_id,split\nabcDEF12345_3,train\nx,val\nabcDEF12345_3,train\n")
    with pytest.raises(AVSDataError, match=r"ms3_meta_data.csv, lines 2 and 4: clip "):
        MS3Dataset(ms3_root, "train")


def test_avss_duplicated_uid_names_both_lines(avss_root):
    csv = avss_root / "metadata.csv"
    lines = csv.read_text().strip().split("\n")
    csv.write_text("\n".join(lines + [lines[3]]) + "\n")
    uid = lines[3].split(",")[1]
    with pytest.raises(AVSDataError, match=rf"metadata.csv, lines 4 and {len(lines) + 1}: clip "
                       rf"'{uid}' appears twice"):  # fmt: skip
        AVSSDataset(avss_root, "train")


def test_the_same_clip_in_two_splits_is_not_a_duplicate(ms3_root):
    csv = ms3_root / "ms3_meta_data.csv"
    csv.write_text("video_id,split\nabcDEF12345_3,train\nabcDEF12345_3,val\n")
    assert len(MS3Dataset(ms3_root, "train")) == 1
