"""`avsbench make-toy-data` and `avsbench preprocess` end a bad flag, a folder they must not
write, or a bad metadata value with one line naming the flag or file and the fix, exit 2,
never a traceback (docs/RELIABILITY.md, "Inputs validated when read")."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsbench import cli
from avsbench.data.synthetic import TRUTH_FILE

TOY = ["make-toy-data", "--settings", "s4", "--scale", "0.02", "--num-categories", "2"]


def _one_line(capsys, argv: list[str], expected: str, code: int = 2) -> str:
    capsys.readouterr()
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("avsbench: ") and expected in err, err
    return err.strip()


def test_an_existing_root_without_overwrite(tmp_path, capsys):
    assert cli.main([*TOY, "--out", str(tmp_path)]) == 0
    root = tmp_path / "Single-source"
    line = _one_line(
        capsys, [*TOY, "--out", str(tmp_path)], f"{root}: the output folder holds an earlier"
    )
    assert "pass --overwrite" in line


@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("--num-categories", "1", "--num-categories 1: use 2..23 categories"),
        ("--num-categories", "24", "--num-categories 24: use 2..23 categories"),
        ("--scale", "0", "--scale 0: must be a positive number"),
        ("--scale", "nan", "--scale nan: must be a positive number"),
        ("--settings", "s4,s5", "--settings s4,s5: unknown setting(s) ['s5']; use s4,ms3,avss"),
        ("--settings", ",", "--settings ,: unknown setting(s) []; use s4,ms3,avss"),
    ],
)
def test_bad_make_toy_data_flags(tmp_path, capsys, flag, value, expected):
    _one_line(capsys, [*TOY, "--out", str(tmp_path), flag, value], expected)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refuses_a_linked_root_and_leaves_its_target(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    assert cli.main([*TOY, "--out", str(elsewhere)]) == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "Single-source").symlink_to(elsewhere / "Single-source")
    line = _one_line(capsys, [*TOY, "--out", str(out), "--overwrite"], "is a symbolic link")
    assert str(out / "Single-source") in line and "remove the link" in line
    assert (elsewhere / "Single-source" / TRUTH_FILE).is_file()


def test_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    _one_line(capsys, [*TOY, "--out", str(out)], "pass --out a folder you can write to")
    assert out.read_text() == "not a folder"


def _s4_csv(tmp_path: Path, start: str) -> Path:
    root = tmp_path / "Single-source"
    root.mkdir()
    (root / "s4_meta_data.csv").write_text(
        f"name,start,category,split\nclipA,0,dog_barking,train\nclipB,{start},race_car,val\n"
    )
    return root


@pytest.mark.parametrize("start", ["nan", "1e400", "", "-inf", "ten"])
def test_preprocess_start_that_is_not_a_finite_number(tmp_path, capsys, start):
    root = _s4_csv(tmp_path, start)
    line = _one_line(capsys, ["preprocess", "--setting", "s4", "--root", str(root), "--quiet"],
                     f"{root / 's4_meta_data.csv'}, line 3: start {start!r} ")  # fmt: skip
    assert "a number of seconds" in line and "fix the row" in line
    assert sorted(p.name for p in root.iterdir()) == ["s4_meta_data.csv"]


def test_preprocess_unknown_split_flag(tmp_path, capsys):
    root = _s4_csv(tmp_path, "0")
    argv = ["preprocess", "--setting", "s4", "--root", str(root), "--splits", "train,tst"]
    _one_line(capsys, argv, "--splits train,tst: unknown split(s) ['tst']; use train,val,test")


def test_preprocess_missing_root(tmp_path, capsys):
    root = tmp_path / "nowhere"
    _one_line(capsys, ["preprocess", "--setting", "ms3", "--root", str(root)],
              f"{root / 'ms3_meta_data.csv'}: metadata CSV not found")  # fmt: skip
