"""One training process per run folder (docs/RELIABILITY.md, "Run folders"): a second
`--resume auto` is refused naming the live holder, a lock left by a dead process is taken
over, and temporary files dead processes left (kill -9) are removed at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from avsbench.commands import train as cmd_train
from avsbench.engine import runs
from avsbench.fileio import atomic_write, remove_stale_temporaries
from tests.engine.engine_helpers import tiny_flags

REPO = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    assert runs.lock_run(tmp_path) is None
    try:
        with pytest.raises(runs.RunLockError, match=rf"in use by process {os.getpid()} on "):
            runs.lock_run(tmp_path)
    finally:
        runs.release_locks()
    assert runs.lock_run(tmp_path) is None  # released: free again
    runs.release_locks()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    pid = dead_pid()
    (tmp_path / runs.LOCK_NAME).write_text(f"{pid} somehost\n")
    try:
        assert runs.lock_run(tmp_path) == pid
        assert (tmp_path / runs.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    finally:
        runs.release_locks()


def test_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    written = atomic_write(tmp_path / "last.pth", lambda tmp: tmp.write_bytes(b"x"))
    dead = tmp_path / f".last.pth.{dead_pid()}-k2j3h4.tmp"
    live = tmp_path / f".last.pth.{os.getpid()}-a1b2c3.tmp"  # being written right now
    other = tmp_path / ".notes.txt"
    for path in (dead, live, other):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and other.exists() and written.read_bytes() == b"x"


def _holder(run: Path) -> subprocess.Popen:
    """Another process holding the run's lock, as a second training would."""
    code = (
        "import sys, time\nfrom avsbench.engine import runs\n"
        f"runs.lock_run({str(run)!r}); print('locked', flush=True); time.sleep(600)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == b"locked"
    return child


def test_second_resume_is_refused_and_a_killed_run_is_taken_over(tmp_path, s4_toy, capsys):
    logs = tmp_path / "logs"
    flags = dict(max_steps_per_epoch=1)
    assert cmd_train.main("s4", tiny_flags(s4_toy, logs, max_epoches=1, **flags)) == 0
    (run,) = logs.iterdir()
    child = _holder(run)
    try:
        resume = tiny_flags(s4_toy, logs, max_epoches=2, resume="auto", **flags)
        capsys.readouterr()
        assert cmd_train.main("s4", resume) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {child.pid} on " in err and "Traceback" not in err
    finally:
        child.send_signal(signal.SIGKILL)  # kill -9: the lock file stays, the flock goes
        child.wait()
    stale = run / "checkpoints" / f".last.pth.{child.pid}-x7y8z9.tmp"  # as kill -9 leaves it
    stale.write_bytes(b"half a checkpoint")
    assert cmd_train.main("s4", resume) == 0
    log = (run / "log" / "train.log").read_text()
    assert f"took over the lock of process {child.pid}" in log
    assert f"removed {stale}" in log and not stale.exists()


def test_a_clean_end_leaves_no_owner_to_take_over_from(tmp_path):
    runs.lock_run(tmp_path)
    runs.release_locks()
    assert runs.lock_run(tmp_path) is None
    runs.release_locks()
