"""Every output path is checked before the work starts (test.sh's --out_json and --log_dir,
train.sh's --log_dir): a folder given for a file, or a read-only mount (a real one), is one
line and exit 2, with no run folder made and no evaluation run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from tests.engine.engine_helpers import tiny_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.mounts import tmpfs  # noqa: E402


@pytest.fixture(scope="module")
def weights(s4_toy, tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("out_checks")
    assert cmd_train.main("s4", tiny_flags(s4_toy, logs, session_name="o")) == 0
    (path,) = logs.glob("o_*/checkpoints/last.pth")
    return path


def _test(s4_toy, weights, *extra: str) -> list[str]:
    return ["--synthetic", "--weights", str(weights), "--data_root", str(s4_toy), "--device",
            "cpu", "--num_workers", "0", *extra]  # fmt: skip


def test_out_json_that_is_a_folder_is_refused_before_testing(s4_toy, weights, tmp_path, capsys):
    folder = tmp_path / "metrics"
    folder.mkdir()
    argv = _test(s4_toy, weights, "--out_json", str(folder), "--log_dir", str(tmp_path / "t"))
    assert cmd_test.main("s4", argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"avsbench: --out_json {folder}: it is a folder, not a file; pass --out_json a file "
        "path you can write to"
    )
    assert not (tmp_path / "t").exists()  # refused before the run folder and the evaluation


def test_out_json_and_log_dir_on_a_read_only_mount(s4_toy, weights, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        argv = _test(s4_toy, weights, "--out_json", str(ro / "m.json"), "--log_dir",
                     str(tmp_path / "t"))  # fmt: skip
        assert cmd_test.main("s4", argv) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"avsbench: --out_json {ro / 'm.json'}: {ro} is on a read-only file system; pass "
            "--out_json a file path you can write to"
        )
        argv = _test(s4_toy, weights, "--log_dir", str(ro / "a" / "b"))
        assert cmd_test.main("s4", argv) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"avsbench: --log_dir {ro / 'a' / 'b'}: {ro} is on a read-only file system; pass "
            "--log_dir a folder you can write to"
        )
        assert cmd_train.main("s4", tiny_flags(s4_toy, ro / "runs")) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"avsbench: --log_dir {ro / 'runs'}: {ro} is on a read-only file system; pass "
            "--log_dir a folder you can write to"
        )
    assert not (tmp_path / "t").exists()


def test_log_dir_that_is_a_file(s4_toy, tmp_path, capsys):
    file = tmp_path / "runs"
    file.write_text("not a folder")
    assert cmd_train.main("s4", tiny_flags(s4_toy, file)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"avsbench: --log_dir {file}: it exists and is not a folder; pass --log_dir a folder "
        "you can write to"
    )
    assert file.read_text() == "not a folder"
