"""The errors a user sees, in one place: each is printed as one line (no traceback) by the
command that meets it, naming the file or flag and the fix."""

from __future__ import annotations


class SetupError(Exception):
    """A missing file or an inconsistent setting the user must fix (one clear message)."""
