"""Run folders as published, latest-run lookup, logging to file."""

from __future__ import annotations

import logging
import os
import re

import pytest

from avsbench.engine import runs


def test_run_dir_layout_and_collision(tmp_path, monkeypatch):
    a = runs.create_run_dir(tmp_path, "S4")
    assert re.fullmatch(r"S4_\d{8}-\d{6}", a.root.name)
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20240101-120000")
    b = runs.create_run_dir(tmp_path, "S4")
    c = runs.create_run_dir(tmp_path, "S4")  # same second: suffixed, never shared
    assert (b.root.name, c.root.name) == ("S4_20240101-120000", "S4_20240101-120000_2")
    assert runs.list_runs(tmp_path, "S4") == [b.root, c.root, a.root]  # by time, then suffix
    assert a.checkpoints.is_dir() and a.log.is_dir()
    assert a.best("S4") == a.root / "checkpoints" / "S4_best.pth"
    with pytest.raises(ValueError, match="session_name"):
        runs.create_run_dir(tmp_path, "a/b")


def _fake_run(tmp_path, name, files):
    root = tmp_path / name
    (root / "checkpoints").mkdir(parents=True)
    for f in files:
        (root / "checkpoints" / f).write_bytes(b"x")
    return root


RESUMABLE = ["last.pth", "interrupted.pth"]  # what --resume auto looks for


def test_latest_run_lookup(tmp_path):
    _fake_run(tmp_path, "S4_20240101-000000", ["S4_best.pth", "last.pth"])
    newer = _fake_run(tmp_path, "S4_20240102-000000", ["last.pth"])  # no best yet
    _fake_run(tmp_path, "S4_long_20250101-000000", ["S4_long_best.pth"])  # another session
    _fake_run(tmp_path, "MS3_20990101-000000", ["MS3_best.pth"])
    assert [p.name for p in runs.list_runs(tmp_path, "S4")] == [
        "S4_20240101-000000",
        "S4_20240102-000000",
    ]
    best = runs.latest_file(tmp_path, "S4", ["S4_best.pth"])
    assert best == tmp_path / "S4_20240101-000000" / "checkpoints" / "S4_best.pth"
    assert runs.latest_file(tmp_path, "S4", RESUMABLE) == newer / "checkpoints" / "last.pth"
    interrupted = newer / "checkpoints" / "interrupted.pth"
    interrupted.write_bytes(b"y")
    os.utime(interrupted, (2e9, 2e9))  # newer than last.pth
    assert runs.latest_file(tmp_path, "S4", RESUMABLE) == interrupted
    assert runs.latest_file(tmp_path / "nothing", "S4", ["S4_best.pth"]) is None


def test_logging_to_file(tmp_path):
    logger = runs.setup_logging(tmp_path / "log" / "train.log")
    logger.info("hello %d", 42)
    runs.close_logging()
    assert "INFO hello 42" in (tmp_path / "log" / "train.log").read_text()
    assert logging.getLogger(runs.LOGGER_NAME).handlers == []
