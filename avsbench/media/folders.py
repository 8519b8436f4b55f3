"""The output folder of `avsbench predict`: written whole or not at all, and never deleting
what predict did not write (docs/PREDICT.md "Safety and limits").

The rules (temporary folder, manifest, --overwrite, stale clean-up) are those of every
folder a command owns, `avsbench.owned_folder`; here they are predict's: its manifest
MANIFEST, refusals as MediaError, and one line for an output that cannot be written
(`write_failure`: full disk, read-only folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from avsbench.fileio import failure_reason, pid_alive
from avsbench.media.video import MediaError
from avsbench.owned_folder import OwnedFolder, Owner

__all__ = ["MANIFEST", "PREDICT", "MediaError", "OutputFolder", "pid_alive", "write_failure"]

MANIFEST = ".avsbench-predict.json"  # lists the files predict wrote into its output folder
PREDICT = Owner("predict", MANIFEST, "avsbench-predict/1", "--out", MediaError)


class OutputFolder(OwnedFolder):
    """predict's output folder (`OwnedFolder` with predict's manifest); MediaError for a
    folder it may not write, naming what is in the way."""

    def __init__(self, target: str | os.PathLike[str], overwrite: bool = False) -> None:
        super().__init__(target, PREDICT, overwrite)


def write_failure(target: str | os.PathLike[str], err: OSError) -> MediaError:
    """One line for an output that could not be written (a full disk, a read-only or
    missing folder, a file where a folder should be), naming `target`."""
    target = Path(os.path.abspath(target))
    blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    why = f"{blocker} is a file, not a folder" if blocker else failure_reason(err)
    return MediaError(
        f"{target}: cannot write the output ({why}); nothing was written. Choose an --out "
        "folder you can write to, on a disk with free space"
    )
