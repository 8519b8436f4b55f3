"""Real file systems for the write-failure tests: a small tmpfs (filled: a full disk) and a
read-only one (mounted, then remounted read-only).

Mounting needs root (or CAP_SYS_ADMIN); where `mount` is refused the test is skipped with
mount's own error. As root, chmod does not stop writes, so a read-only mount is the real
"unwritable folder".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("cannot mount a real file system: no `mount` command")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a real file system: {done.stderr.strip() or done.returncode}")


@contextmanager
def tmpfs(folder: Path, size: str = "2m", *, read_only: bool = False) -> Iterator[Path]:
    """`folder` (created) as a tmpfs of `size`, read-only if asked; unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        if read_only:
            _mount("-o", "remount,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Write a file into `folder` until its file system has at most `leave` bytes free."""
    with open(folder / "filler.bin", "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave:
                    break
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
                f.flush()
        except OSError:
            pass
