"""Atomic file writes, the only writer of the project's files: a crash or Ctrl-C never leaves
a half-written file behind.

The data goes to a hidden temporary file in the target's folder (same file system, so the
final `os.replace` is atomic), is flushed to disk, and only then replaces the target.
`atomic_write` takes any writer (checkpoints, pictures); `atomic_write_json` and
`atomic_save_npy` are the two formats the engine writes itself; `atomic_write_all` writes
several files that belong together (a preprocessed clip) as one. The temporary file's name
holds the writer's pid, `.<name>.<pid>-<token>.tmp`, so that `remove_stale_temporaries`
can tell those of dead processes (kill -9) from those being written (docs/RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from avsbench.errors import OutsideFolderError, WriteError  # noqa: F401 (defined in errors.py)


def failure_reason(err: OSError) -> str:
    """Why a write failed, in a few words ("disk full", "read-only file system", ...)."""
    return {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied (a read-only folder?)",
        errno.EPERM: "permission denied (a read-only folder?)",
    }.get(err.errno or -1, err.strerror or str(err))


def _write_error(path: Path, err: OSError) -> WriteError:
    kept = "; the previous file is kept" if path.exists() else ""
    error = WriteError(f"cannot write {path}: {failure_reason(err)}{kept}")
    error.errno = err.errno
    return error


# What PyTorch's zip writer (torch.save) raises when writing fails: a RuntimeError, not the
# OSError (ENOSPC, EROFS...) behind it ("[enforce fail at inline_container.cc:672] . unexpected
# pos 704 vs 598", "PytorchStreamWriter failed writing file data/0: file write failed")
TORCH_WRITER_FAILURES = ("PytorchStreamWriter failed writing", "inline_container.cc")


def _failed_write(err: BaseException) -> OSError | None:
    """The OSError behind a failed write: `err` itself, the OSError a library's RuntimeError
    was raised while handling (torch.save on a Python file), or, for PyTorch's writer
    failing on its own, one saying what usually causes it. None for any other error."""
    if isinstance(err, OSError):
        return err
    if not isinstance(err, RuntimeError):
        return None
    behind: BaseException | None = err
    for _ in range(8):  # the chain of causes, a few levels deep
        behind = behind.__cause__ or behind.__context__
        if behind is None:
            break
        if isinstance(behind, OSError):
            return behind
    if any(marker in str(err) for marker in TORCH_WRITER_FAILURES):
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return OSError(
            None, f"the disk is full or the folder is not writable (PyTorch: {first_line})"
        )
    return None


def is_plain_name(name: str) -> bool:
    """True for a non-empty name that stays one path component everywhere (a data row's
    name, a --session_name): no separator, NUL, '.' / '..' or drive letter."""
    return (
        bool(name)
        and name not in (".", "..")
        and not any(c in name for c in ("/", "\\", "\0"))
        and not (len(name) >= 2 and name[1] == ":")  # a Windows drive, C:...
    )


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """`root / parts...`, refused (OutsideFolderError) unless it stays inside `root`.

    Every file a command writes under a name taken from data (a clip's name, category,
    uid) is built with this: absolute parts, '..' and links out of `root` are refused,
    so that nothing is written outside the run or output folder."""
    root = Path(root)
    path = root.joinpath(*parts)
    if any(Path(p).is_absolute() or ".." in Path(p).parts for p in parts) or not (
        path.resolve().is_relative_to(root.resolve())
    ):
        raise OutsideFolderError(f"refusing to write {path}: it is outside {root}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, durable: bool = True
) -> Path:
    """Call `write(tmp_path)` on a temporary file next to `path`, then rename it to `path`.

    The file gets the usual permissions (0666 less the umask; `mkstemp` alone would give
    0600). On any error the temporary file is removed and the error propagates; an existing
    `path` is left untouched; an OSError (disk full, read-only folder), also as PyTorch's
    writer reports it (a RuntimeError), becomes a WriteError saying so in one line.
    durable=False skips the fsyncs (for caches, whose files are recomputed if a crash
    loses them; the rename stays atomic).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}.{os.getpid()}-"  # the pid: `remove_stale_temporaries`
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = None if isinstance(err, WriteError) else _failed_write(err)
        if cause is not None:
            raise _write_error(path, cause) from err
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def atomic_write_all(
    writes: Mapping[Path, Callable[[Path], None]], *, durable: bool = True
) -> list[Path]:
    """Several files as one: each `write(tmp)` on a temporary file next to its path, in
    order, and only when all succeeded every temporary renamed into place.

    A failure while writing (a writer's error, disk full) removes the temporaries and the
    folders made for them and propagates, leaving every previous file as it was (an
    OSError becomes a WriteError). Only a crash between the renames, which take
    microseconds, could leave a mix of new and previous files."""
    pending: list[tuple[Path, Path]] = []  # (temporary, target)
    made: list[Path] = []  # folders made here, parents first
    path = Path()
    try:
        for path, write in writes.items():
            path = Path(path)
            missing = [p for p in reversed(path.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            made += missing
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
            )
            os.close(fd)
            pending.append((Path(tmp_name), path))
            write(Path(tmp_name))
            if durable:
                with open(tmp_name, "rb+") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp_name, 0o666 & ~_umask())
    except BaseException as err:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise _write_error(path, err) from err
        raise
    for tmp, target in pending:
        os.replace(tmp, target)
    if durable:
        for folder in {target.parent for _, target in pending}:
            _fsync_dir(folder)
    return [target for _, target in pending]


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """`obj` as pretty JSON (indent 2, a final newline) at `path`, atomically."""
    text = json.dumps(obj, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_save_npy(path: str | os.PathLike[str], array: Any, *, durable: bool = True) -> Path:
    """`np.save` of `array` at `path` (no pickles: plain arrays only), atomically."""
    data = np.asarray(array)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)

    return atomic_write(path, write, durable=durable)


_TEMPORARY = re.compile(r"\.(.+)\.(\d+)-[A-Za-z0-9_]+\.tmp")  # .<name>.<pid>-<token>.tmp


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` (not below) when its
    process died before the rename (kill -9, power loss): `.<name>.<pid>-<token>.tmp` whose
    pid no longer runs on this machine. Those of live processes are left alone."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if match and entry.is_file() and not entry.is_symlink():
            if not pid_alive(int(match.group(2))):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); skipped where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_path_problem(path: str | os.PathLike[str], *, folder: bool) -> str | None:
    """Why `path` cannot receive a command's output file (folder=False) or folder (True),
    checked before the work starts; None when it can. Nothing is written: the nearest
    existing folder must be writable (permissions, and not on a read-only mount)."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        if folder and not target.is_dir():
            return "it exists and is not a folder"
        if not folder and target.is_dir():
            return "it is a folder, not a file"
        if not folder and not target.is_file():
            return "it exists and is not a regular file"
    existing = target if folder and target.is_dir() else target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable (permission denied)"
    return None
