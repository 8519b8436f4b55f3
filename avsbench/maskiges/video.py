"""The maskiges of a video's frames, sampled as `avsbench predict` samples them.

`make_video_maskiges(video, generator, out)` writes into the output folder `out`:

    maskiges/<second:05d>.png   the maskige of the frame predict reads for that second (the
                                frame on screen at second + 15/16, `media.video.FrameSampler`),
                                ADE20K palette PNG; S4/MS3: of the frame at the release's
                                224 x 224, AVSS: at the video's size (`inputs.prepared_frame`)
    MASKIGES_SAM.json           the provenance (generator, SAM weights sha256, parameters),
                                the setting, each second's frame time

The folder is an `owned_folder.OwnedFolder`: written whole or not at all (Ctrl-C, SIGTERM
and errors leave nothing), never replacing files this command did not write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avsbench.config import setting_info
from avsbench.data.maskige import write_maskige
from avsbench.fileio import atomic_write_json
from avsbench.maskiges.dataset import FORMAT, PROVENANCE
from avsbench.maskiges.inputs import prepared_frame
from avsbench.media.video import DEFAULT_MAX_PIXELS, FrameSampler, MediaError, probe_video
from avsbench.owned_folder import OwnedFolder, Owner

MAKE_MASKIGE = Owner(
    "maskige", ".avsbench-maskige.json", "avsbench-maskige-video/1", "--out", MediaError
)


def make_video_maskiges(
    video: str | os.PathLike[str],
    generator: Any,
    out: str | os.PathLike[str],
    *,
    setting: str = "s4",
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] = lambda n: None,
) -> Path:
    """Write the maskiges of `video` into `out` (see the module doc); MediaError (one line)
    for an unreadable video or an output folder that may not be written."""
    semantic = setting_info(setting).semantic
    info = probe_video(video, max_pixels)
    folder = OwnedFolder(out, MAKE_MASKIGE, overwrite)
    try:
        frames = []
        sampler = FrameSampler(info.path, info.width, info.height, per_second=1)
        for second, frame_time, rgb in sampler:
            ids = generator.ids(prepared_frame(rgb, semantic))
            write_maskige(folder.path / "maskiges" / f"{second:05d}.png", ids)
            frames.append({"second": second, "frame_time": round(float(frame_time), 6)})
            progress(1)
        provenance = {
            "format": FORMAT,
            **generator.provenance(),
            "video": str(info.path),
            "setting": setting,
            "frame": "the frame on screen at second + 15/16, as avsbench predict samples it",
            "frame_size": "224 x 224 (the release's S4/MS3 frames)"
            if not semantic
            else f"{info.width} x {info.height} (the video's)",
            "complete": True,
            "files_made": len(frames),
            "seconds": frames,
        }
        atomic_write_json(folder.path / PROVENANCE, provenance)
        return folder.commit()
    finally:
        folder.abort()
