"""Run folders, as the published scripts lay them out, and the text log.

Training: `<log_dir>/<session>_<YYYYmmdd-HHMMSS>/` with
    `checkpoints/` (`last.pth`, `<session>_best.pth`, `interrupted.pth`),
    `log/` (`train.log` text log, TensorBoard event files),
    `config.json` (the full configuration) and `command.txt` (the command line),
    `.lock` (held by the training process: `lock_run`).
Testing: `<log_dir>/<session>_<YYYYmmdd-HHMMSS>/` with `metrics.json`, `log/test.log`,
    `pred_masks/` (with --save_pred_mask) and `report/` (with --report).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from avsbench.errors import RunLockError  # noqa: F401 (defined in errors.py)
from avsbench.fileio import is_plain_name

LOGGER_NAME = "avsbench"
TIME_FORMAT = "%Y%m%d-%H%M%S"
_RUN_SUFFIX = re.compile(r"_(\d{8}-\d{6})(?:_\d+)?$")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pth"

    @property
    def interrupted(self) -> Path:
        return self.checkpoints / "interrupted.pth"

    def best(self, session: str) -> Path:
        return self.checkpoints / f"{session}_best.pth"


def check_session_name(session: str) -> None:
    """ValueError unless `session` is a plain folder-name part (no path separator, not '..')."""
    if not is_plain_name(session):
        raise ValueError(
            f"--session_name must be a plain name (no '/', '\\' or '..'), got {session!r}"
        )


def create_run_dir(
    log_dir: str | os.PathLike, session: str, *, subdirs=("checkpoints", "log")
) -> RunDir:
    """Make `<log_dir>/<session>_<YYYYmmdd-HHMMSS>` (a `_2`, `_3`... suffix if two runs start
    in the same second) and its sub-folders."""
    check_session_name(session)
    base = Path(log_dir) / f"{session}_{time.strftime(TIME_FORMAT)}"
    root, k = base, 1
    while True:
        try:
            root.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            k += 1
            root = base.with_name(f"{base.name}_{k}")
    for sub in subdirs:
        (root / sub).mkdir(exist_ok=True)
    return RunDir(root)


LOCK_NAME = ".lock"
_held: list[int] = []  # file descriptors of the locks this process holds


def lock_run(root: str | os.PathLike) -> int | None:
    """Lock the run folder `root` for this process (a training run writes its last.pth).

    The lock is an `flock` on `<root>/.lock`, which holds the owner's pid and host: the
    kernel releases it when the process ends in any way (kill -9 included), so a lock file
    left by a dead process is simply taken over. Returns the pid of that dead process
    (None if there was none). RunLockError, naming the live holder, if another process
    holds it. Released by `release_locks` (at the end of every command)."""
    path = Path(root) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        os.close(fd)
        who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
        raise RunLockError(
            f"the run folder {root} is in use by {who} (lock {path}): two runs must not train "
            "into the same folder. Wait for it to finish or stop it; or start a new run "
            "without --resume"
        ) from None
    previous = os.pread(fd, 200, 0).decode(errors="replace").split()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _held.append(fd)
    if previous and previous[0].isdigit() and int(previous[0]) != os.getpid():
        return int(previous[0])
    return None


def release_locks() -> None:
    """Release the run locks of this process: the file is emptied (a clean end leaves no
    owner to take over from) and closed, which releases the flock."""
    while _held:
        fd = _held.pop()
        os.ftruncate(fd, 0)
        os.close(fd)


def list_runs(log_dir: str | os.PathLike, session: str) -> list[Path]:
    """Run folders `<session>_<YYYYmmdd-HHMMSS>[_k]` under `log_dir`, oldest first."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    runs = []
    for p in log_dir.iterdir():
        if not p.is_dir() or not p.name.startswith(f"{session}_"):
            continue
        m = _RUN_SUFFIX.search(p.name)
        if m and p.name[: m.start()] == session:
            runs.append(p)

    def key(p: Path) -> tuple[str, int]:
        m = _RUN_SUFFIX.search(p.name)
        tail = p.name[m.start() + 1 :].split("_")
        return (tail[0], int(tail[1]) if len(tail) > 1 else 1)

    return sorted(runs, key=key)


def latest_file(log_dir: str | os.PathLike, session: str, names: list[str]) -> Path | None:
    """In the newest run of `session` that has one of `names` under `checkpoints/`, the most
    recently modified of them; None if no run has any."""
    for run in reversed(list_runs(log_dir, session)):
        found = [run / "checkpoints" / n for n in names if (run / "checkpoints" / n).is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    return None


def show_progress(is_main: bool = True) -> bool:
    """Whether to draw progress bars: rank 0 writing to a terminal. In a log file (CI,
    `> log`, cluster jobs) the bars' redraws would be hundreds of KB of carriage returns;
    there the log has one line per epoch and per evaluation instead."""
    return is_main and sys.stderr.isatty()


def setup_logging(log_file: str | os.PathLike | None, *, is_main: bool = True) -> logging.Logger:
    """The `avsbench` logger: INFO to the console and (rank 0) to `log_file`.

    Processes other than rank 0 only print warnings and errors."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    console.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.addHandler(console)
    if log_file is not None and is_main:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def close_logging() -> None:
    """Close the handlers opened by `setup_logging` (files are flushed)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
