"""Tests of avsbench.media.folders: the output folder never deletes what predict did not
write, appears whole or not at all, and cleans up after dead processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avsbench.media.folders import MANIFEST, MediaError, OutputFolder, pid_alive


def write_output(target: Path, files: dict[str, str], overwrite: bool = False) -> Path:
    """Write `files` (relative name -> text) through an OutputFolder and commit it."""
    folder = OutputFolder(target, overwrite)
    for name, text in files.items():
        (folder.path / name).parent.mkdir(parents=True, exist_ok=True)
        (folder.path / name).write_text(text)
    return folder.commit()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


def test_new_folder_appears_with_a_manifest_of_its_files(tmp_path):
    out = write_output(tmp_path / "out", {"masks/00000.png": "m", "summary.json": "{}"})
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == {
        "format": "avsbench-predict/1",
        "files": ["masks/00000.png", "summary.json"],
    }
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the temporary folder became `out`


def test_an_earlier_output_is_replaced_only_with_overwrite(tmp_path):
    out = write_output(tmp_path / "out", {"masks/00000.png": "a", "masks/00001.png": "a"})
    with pytest.raises(MediaError, match="earlier output of predict.*--overwrite"):
        OutputFolder(out)
    write_output(out, {"masks/00000.png": "b", "overlay.mp4": "b"}, overwrite=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        MANIFEST,
        "masks",
        "masks/00000.png",
        "overlay.mp4",
    ]
    assert (out / "masks/00000.png").read_text() == "b"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_listed_files_already_deleted_by_the_user_are_fine(tmp_path):
    out = write_output(tmp_path / "out", {"masks/00000.png": "a", "summary.json": "{}"})
    (out / "summary.json").unlink()
    write_output(out, {"summary.json": "{}"}, overwrite=True)
    assert sorted(os.listdir(out)) == [MANIFEST, "summary.json"]


@pytest.mark.parametrize("extra", ["notes.txt", "masks/mine.png", "empty_folder/"])
def test_anything_else_in_the_folder_is_refused_and_named(tmp_path, extra):
    out = write_output(tmp_path / "out", {"masks/00000.png": "a"})
    if extra.endswith("/"):
        (out / extra).mkdir()
    else:
        (out / extra).write_text("user data")
    with pytest.raises(MediaError, match=f"did not write: {extra}") as refusal:
        OutputFolder(out, overwrite=True)
    assert "--overwrite" not in str(refusal.value)
    assert (out / "masks/00000.png").read_text() == "a" and (out / extra).exists()


def test_a_folder_without_manifest_is_never_touched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").mkdir()
    (out / "masks" / "00000.png").write_text("not predict's")
    with pytest.raises(MediaError, match="no manifest.*masks/"):
        OutputFolder(out, overwrite=True)
    assert (out / "masks" / "00000.png").read_text() == "not predict's"


@pytest.mark.parametrize("listed", ["../victim.txt", "/etc/passwd", "masks/../../victim.txt"])
def test_a_hostile_manifest_deletes_nothing(tmp_path, listed):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"format": "avsbench-predict/1", "files": [listed]}))
    with pytest.raises(MediaError, match="not a plain relative path"):
        write_output(out, {"summary.json": "{}"}, overwrite=True)
    assert victim.read_text() == "keep"


def test_a_symlinked_folder_is_not_predicts(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "00000.png").write_text("keep")
    out = write_output(tmp_path / "out", {"masks/00000.png": "a"})
    (out / "masks" / "00000.png").unlink()
    (out / "masks").rmdir()
    (out / "masks").symlink_to(elsewhere)
    with pytest.raises(MediaError, match="did not write: masks/"):
        OutputFolder(out, overwrite=True)
    assert (elsewhere / "00000.png").read_text() == "keep"


def test_an_existing_empty_folder_is_filled_in_place(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    inode = os.stat(work).st_ino
    write_output(Path("."), {"summary.json": "{}"})
    assert os.stat(work).st_ino == inode  # the current folder itself was not replaced
    assert sorted(os.listdir(work)) == [MANIFEST, "summary.json"]
    assert sorted(os.listdir(tmp_path)) == ["work"]


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(MediaError, match="not a folder"):
        OutputFolder(tmp_path / "out")


def test_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / f".out.tmp-{dead_pid()}-0a1b2c3d"
    dead_old = tmp_path / f".out.old-{dead_pid()}-0a1b2c3d"
    live = tmp_path / f".out.tmp-{os.getpid()}-0a1b2c3d"
    other = tmp_path / f".other.tmp-{dead_pid()}-0a1b2c3d"  # another output's
    for folder in (dead, dead_old, live, other):
        (folder / "masks").mkdir(parents=True)
        (folder / "masks" / "00000.png").write_text("half written")
    folder = OutputFolder(tmp_path / "out")
    assert not dead.exists() and not dead_old.exists()
    assert live.exists() and other.exists()
    assert folder.path.name.startswith(f".out.tmp-{os.getpid()}-")
    folder.abort()
    assert not folder.path.exists()


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_output(tmp_path / "out", {"masks/00000.png": "a"})
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
