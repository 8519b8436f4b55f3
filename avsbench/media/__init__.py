"""The media layer: reading videos and their audio, and writing what predict produces.

Used by `avsbench preprocess` (avsbench.preprocess) and `avsbench predict`
(avsbench.predict); docs/PREDICT.md states the rules.

    video.py    probe_video, VideoFrames, FrameSampler (frame on screen at j/N + 15/16 s, or
                the published index rule)
    audio.py    AudioWindows (mono windows aligned to the first frame), decode_audio
    inputs.py   frames / log-mel examples as the datasets give them, windows padded as trained
    schedule.py sliding windows for N masks per second; which mask each overlay frame shows
    writers.py  mask PNGs, overlay.mp4 with the source's audio
    describe.py what summary.json says
    folders.py  the output folder: temporary folder, manifest, --overwrite, stale clean-up
"""

from avsbench.media.audio import AudioWindows, decode_audio
from avsbench.media.folders import MANIFEST, OutputFolder
from avsbench.media.video import (
    SAMPLE_OFFSET,
    AudioInfo,
    FrameSampler,
    MediaError,
    VideoFrames,
    VideoInfo,
    probe_video,
    published_frame_indices,
)
from avsbench.media.writers import OverlayWriter, save_mask

__all__ = [
    "MANIFEST",
    "SAMPLE_OFFSET",
    "AudioInfo",
    "AudioWindows",
    "FrameSampler",
    "MediaError",
    "OutputFolder",
    "OverlayWriter",
    "VideoFrames",
    "VideoInfo",
    "decode_audio",
    "probe_video",
    "published_frame_indices",
    "save_mask",
]
