"""The error type of bad input a user can fix, and its one-line message.

`InputError` (a ValueError) is raised for a flag, a file or a metadata row that is wrong;
its message names the flag or file, what is wrong and the fix. The commands print it as one
line, `avsbench: <message>`, and exit 2, without a traceback (docs/RELIABILITY.md,
"Inputs validated when read"). The datasets' `AVSDataError` is one.
"""

from __future__ import annotations


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
