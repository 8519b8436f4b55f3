"""The errors a user sees, in one place: each is printed as one line (no traceback) by the
command that meets it, naming the flag or file, what is wrong and the fix. The modules that
raise them import them from here (and keep their names importable).

`SetupError` is a run's setting or file the user must fix (train.sh / test.sh exit 2);
`InputError` (a ValueError) is bad input read from a flag, a file or a metadata row (the
datasets' `AVSDataError` is one). The commands print both as `avsbench: <message>` and exit
2 (docs/RELIABILITY.md, "Inputs validated when read").
"""

from __future__ import annotations


class SetupError(Exception):
    """A missing file or an inconsistent setting the user must fix (one clear message)."""


class InputError(ValueError):
    """Bad input the user can fix; the message names the flag or file and the fix."""


def error_line(err: BaseException) -> str:
    """The message of `err` as the user should read it.

    A DataLoader worker re-raises an exception as the same type with the message
    "Caught <Type> in DataLoader worker process N.\\nOriginal Traceback ...<module>.<Type>:
    <message>": then the original message, after the traceback, is returned."""
    text = str(err)
    if not text.startswith(f"Caught {type(err).__name__} "):
        return text.strip()
    marker = f"\n{type(err).__module__}.{type(err).__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker) :].strip() if at >= 0 else text.strip()


class CheckpointError(ValueError):
    """A file that cannot be read or does not fit (one message naming the file)."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class PredictError(ValueError):
    """Bad input to `avsbench predict`: the message names the file and the fix."""


class AVSDataError(InputError):
    """Bad or missing AVSBench input; the message names the file and the problem."""


class DataNotFoundError(AVSDataError):
    """The dataset itself is not where it was looked for (its metadata CSV is missing): the
    data root is wrong, as opposed to a broken file or row in a dataset that is there."""


class WriteError(OSError):
    """A file that could not be written (disk full, read-only folder); the message names
    the file and says that the previous file at that path, if any, is kept."""


class OutsideFolderError(ValueError):
    """A path that would be written outside the folder of its command (docs/RELIABILITY.md)."""


class MediaError(ValueError):
    """A video or audio file that cannot be used; the message names the file and why."""


class FrameCacheError(Exception):
    """A frame-cache folder or sample that cannot be used; the message names it and the fix."""


class FolderError(ValueError):
    """A target folder the command may not write: the message names what is in the way."""


class RunLockError(Exception):
    """The run folder is in use by another live process."""
