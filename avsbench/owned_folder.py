"""A folder a command owns: written whole or not at all, and never deleting what the
command did not write. predict's `--out` (`avsbench.media.folders`) and make-toy-data's
dataset roots (`avsbench.data.synthetic`) are both such folders (docs/PREDICT.md "Safety
and limits", docs/RELIABILITY.md "Which folders each command writes to").

- Files are written into a hidden temporary folder `.<name>.tmp-<pid>-<token>` next to
  the target folder and moved into place by `commit()` once everything succeeded; an error
  or Ctrl-C removes it (`abort()`). Temporary folders left by processes that no longer run
  (kill -9, power loss) are removed when the same target is started again; those of live
  processes are left alone.
- The target holds a manifest (`Owner.manifest`) listing the files the command wrote. An
  existing folder is accepted when it is empty or holds exactly an earlier output (the
  files of its manifest); with `overwrite` those listed files that still exist are
  replaced, nothing else. Anything else in the folder (the user's files, a symbolic link,
  a manifest listing paths outside the folder) is refused with a message that names it.
- Folders get the usual permissions (0777 less the umask), files those of
  avsbench.fileio's atomic writer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from avsbench.errors import FolderError  # noqa: F401 (defined in errors.py)
from avsbench.fileio import atomic_write, pid_alive

SHOWN_ENTRIES = 5  # entries named in a refusal message


@dataclass(frozen=True)
class Owner:
    """The command that owns a kind of folder, as its manifests and messages name it."""

    command: str  # named in messages: "predict", "make-toy-data"
    manifest: str  # file name of the manifest inside the folder
    format: str  # the manifest's "format" value
    option: str  # the option that names the folder, for messages ("--out")
    error: type[Exception] = FolderError  # raised for a folder that may not be written


def _temporary_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(?:tmp|old)-(\d+)-[0-9a-f]+")


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete `.<name>.tmp-<pid>-*` / `.old-` folders next to `target` whose pid is dead."""
    pattern, removed = _temporary_pattern(target.name), []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            if not pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def read_manifest(folder: Path, owner: Owner) -> tuple[set[str] | None, str | None]:
    """(files listed by the folder's manifest, None) or (None, why there is none usable)."""
    manifest = owner.manifest
    path = folder / manifest
    if not path.is_file() or path.is_symlink():
        return None, "it has no manifest " + manifest
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if data.get("format") != owner.format or not isinstance(files, list):
            raise ValueError(f"format is not {owner.format}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"its manifest {manifest} is not valid ({exc})"
    listed = set()
    for name in files:
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if not parts or name.startswith("/") or ".." in parts or name != "/".join(parts):
            return None, f"its manifest {manifest} lists {name!r}, not a plain relative path"
        listed.add(name)
    return listed - {manifest}, None


def foreign_entries(folder: Path, listed: set[str] | None, owner: Owner) -> list[str]:
    """Entries of `folder` the command did not write: anything but the listed regular
    files, the folders that hold them and the manifest (None: no valid manifest, nothing is
    the command's). Symbolic links are never the command's."""
    ours = {owner.manifest} | listed if listed is not None else set()
    listed = listed or set()
    parents = {str(PurePosixPath(name).parent) for name in listed}
    parents |= {str(p) for name in listed for p in PurePosixPath(name).parents}
    foreign: list[str] = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        for name in sorted(dirs):
            rel = (base / name).as_posix()
            if (Path(root) / name).is_symlink() or rel not in parents:
                foreign.append(rel + "/")
        dirs[:] = [d for d in dirs if (base / d).as_posix() in parents]
        for name in sorted(files):
            rel = (base / name).as_posix()
            path = Path(root) / name
            if rel not in ours or path.is_symlink() or not path.is_file():
                foreign.append(rel)
    return sorted(foreign)


class OwnedFolder:
    """A temporary folder next to `target` whose content `commit()` moves into `target`.

    `target` must not exist, be empty, or hold an earlier output of `owner`'s command (then
    `overwrite` is required, and only its listed files are replaced). `owner.error`
    otherwise, naming what is in the way. `path` is the folder to write into.
    """

    def __init__(
        self, target: str | os.PathLike[str], owner: Owner, overwrite: bool = False
    ) -> None:
        self.target = Path(os.path.abspath(target))
        self.owner = owner
        self.overwrite = overwrite
        self.check()
        remove_stale_temporaries(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = self._make_folder("tmp")

    def _make_folder(self, kind: str) -> Path:
        """A new `.<name>.<kind>-<pid>-<token>` folder with the usual permissions."""
        while True:
            path = self.target.parent / f".{self.target.name}.{kind}-{os.getpid()}-"
            path = path.with_name(path.name + secrets.token_hex(4))
            try:
                path.mkdir()  # mode 0777 less the umask (mkdtemp would give 0700)
            except FileExistsError:
                continue
            return path

    def check(self) -> set[str]:
        """Raise `owner.error` unless `target` may receive the output; returns the files of
        an earlier output that commit() replaces."""
        target, owner = self.target, self.owner
        if not target.exists() and not target.is_symlink():
            return set()
        if target.is_symlink() or not target.is_dir():
            raise owner.error(f"{target}: exists and is not a folder ({owner.option})")
        if not any(target.iterdir()):
            return set()
        listed, problem = read_manifest(target, owner)
        foreign = foreign_entries(target, listed, owner)
        if foreign:
            shown = ", ".join(foreign[:SHOWN_ENTRIES])
            more = (
                f" and {len(foreign) - SHOWN_ENTRIES} more" if len(foreign) > SHOWN_ENTRIES else ""
            )
            why = f" ({problem})" if problem else ""
            raise owner.error(
                f"{target}: the output folder holds files {owner.command} did not write{why}: "
                f"{shown}{more}. {owner.command} replaces only its own earlier output; choose "
                f"a new or empty {owner.option} folder, or move these files away"
            )
        assert listed is not None
        if not self.overwrite:
            raise owner.error(
                f"{target}: the output folder holds an earlier output of {owner.command} "
                f"({len(listed)} files); pass --overwrite (Python: overwrite=True) to replace "
                f"it, or choose another {owner.option}"
            )
        return listed

    def commit(self) -> Path:
        """Write the manifest, move the output into `target` (replacing an earlier output's
        listed files), and return `target`."""
        files = sorted(
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
        )
        manifest_name = self.owner.manifest
        manifest = {"format": self.owner.format, "files": files}
        atomic_write(
            self.path / manifest_name, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1))
        )
        if not self.target.exists():
            try:
                os.rename(self.path, self.target)  # atomic: the whole output at once
                return self.target
            except OSError:  # created meanwhile: check it and fill it as below
                pass
        previous = self.check()
        trash = self._make_folder("old") if previous else None
        for name in sorted(previous) + [manifest_name]:
            old = self.target / name
            if trash is not None and old.is_file() and not old.is_symlink():
                (trash / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(old, trash / name)
        _remove_empty_folders(self.target, previous)
        # the manifest first: an interrupted move leaves only files that it lists
        for entry in [self.path / manifest_name] + sorted(self.path.iterdir()):
            if entry.exists():
                os.replace(entry, self.target / entry.name)
        if trash is not None:  # kept on failure; removed at the next start once stale
            shutil.rmtree(trash, ignore_errors=True)
        os.rmdir(self.path)
        return self.target

    def abort(self) -> None:
        """Delete the temporary folder (on any error or Ctrl-C)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _remove_empty_folders(folder: Path, listed: set[str]) -> None:
    """Remove the (now empty) sub-folders that held listed files, deepest first."""
    parents = {p for name in listed for p in PurePosixPath(name).parents if str(p) != "."}
    for rel in sorted(parents, key=lambda p: -len(p.parts)):
        try:
            (folder / rel).rmdir()
        except OSError:  # not empty: something else is in it (left alone)
            pass
