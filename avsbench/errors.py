"""The errors a user sees, in one place: each is printed as one line (no traceback) by the
command that meets it, naming the flag or file, what is wrong and the fix.

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
