"""Raw AVSBench-object videos -> the official S4 / MS3 layouts (frames, wav, log-mel).

Follows the published preprocessing (preprocess_scripts/preprocess_{s4,ms3}.py of the
AVSBench release; docs/PREDICT.md "How the video is read"), decoding with the media layer
(avsbench.media, PyAV) instead of imageio/moviepy:

- clip length t = 5 s if start <= 5 else 10 - start (MS3: t = 5);
- with fps rounded to an integer, frame i (1-based, i = 1..t) is the decoded frame with
  index int((i - 1) * fps + 15/16 * fps), clamped to the last frame (near the end of each
  second), resized to 224 x 224 with cv2.resize (bilinear) and saved as PNG;
- audio: 16 kHz, channels averaged to mono, int16 wav;
- log-mel: VGGish examples of the wav (avsbench.data.audio), the last one repeated up to
  5, written as the official `.pkl` (pickle of a float32 tensor [5, 1, 96, 64]) and as the
  safe `.npy` cache next to it, linked to that `.pkl` by `<name>.npy.json`.

A clip's outputs are written all or none (`process_clip`).

Already processed clips are skipped (all their outputs exist) unless --overwrite; a clip
that fails is reported with its file and the reason, and the others go on.

    avsbench preprocess --setting s4 --root avsbench_data/Single-source
    avsbench preprocess --setting ms3 --root avsbench_data/Multi-sources

(the command line: `avsbench.commands.preprocess`)
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from avsbench.data.audio import (
    SAMPLE_RATE,
    clip_log_mel,
    log_mel_examples,
    log_mel_pkl_bytes,
    npy_link_path,
    pkl_stamp,
)
from avsbench.data.layouts import (
    MS3_COLUMNS,
    OBJECT_FRAMES,
    S4_COLUMNS,
    SPLITS,
    AVSDataError,
    MS3Layout,
    S4Layout,
    read_metadata,
)
from avsbench.fileio import atomic_write_all
from avsbench.media.audio import decode_audio
from avsbench.media.video import (
    FrameSampler,
    MediaError,
    probe_video,
    published_frame_indices,
)

FRAME_SIZE = 224  # frames are written 224 x 224


def clip_seconds(start: float) -> int:
    """Seconds of video to sample: 5 if start <= 5 else 10 - start (trimmed 10 s clips)."""
    return 5 if start <= 5 else int(10 - start)


def frame_indices(fps: float, seconds: int, num_frames: int | None = None) -> list[int]:
    """Indices of the sampled frames, one per second: int((i - 1) * fps + 15/16 * fps),
    fps rounded to an integer; clamped to num_frames - 1 when given (the media layer's
    `published_frame_indices`)."""
    return published_frame_indices(fps, seconds, num_frames)


def read_frames(path: Path, seconds: int) -> list[np.ndarray]:
    """Decode a video and return its sampled frames, RGB uint8 [224, 224, 3] each: the
    published index rule of the media layer's FrameSampler (decoding stops after them)."""
    if not path.is_file():
        raise AVSDataError(f"{path}: raw video not found")
    try:
        sampler = FrameSampler(path, seconds=seconds, rule="published")
        frames = [cv2.resize(rgb, (FRAME_SIZE, FRAME_SIZE)) for _, _, rgb in sampler]
    except MediaError as exc:
        raise AVSDataError(str(exc)) from exc
    if not frames:
        raise AVSDataError(f"{path}: the video has no decodable frame")
    return frames


def read_audio(path: Path) -> np.ndarray:
    """Decode the audio track -> int16 mono [S] at 16 kHz (channels averaged, FFmpeg's
    resampler)."""
    try:
        mono = decode_audio(path, rate=SAMPLE_RATE)  # float32 [S]
    except MediaError as exc:
        raise AVSDataError(str(exc)) from exc
    return np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class ClipJob:
    """Inputs and outputs of one clip."""

    video: Path
    seconds: int
    frame_path: Callable[[int], Path]  # 1-based frame index -> PNG path
    wav: Path
    log_mel: Path  # the .pkl; the .npy goes next to it
    start: float | None = None  # S4: the CSV's start (seconds), which sets `seconds`
    meta_csv: Path | None = None

    def outputs(self) -> list[Path]:
        frames = [self.frame_path(i) for i in range(1, self.seconds + 1)]
        return frames + [self.wav, self.log_mel, self.log_mel.with_suffix(".npy")]

    def done(self) -> bool:
        return all(p.is_file() for p in self.outputs())


def png_bytes(rgb: np.ndarray, path: Path) -> bytes:
    """RGB uint8 [H, W, 3] as PNG bytes (cv2, as the published frames)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise AVSDataError(f"{path}: could not encode the frame as PNG")
    return encoded.tobytes()


def wav_bytes(waveform: np.ndarray) -> bytes:
    """int16 mono [S] as a 16 kHz PCM_16 wav file."""
    buffer = io.BytesIO()
    sf.write(buffer, waveform, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write


def clip_outputs(job: ClipJob) -> dict[Path, Callable[[Path], None]]:
    """Decode the clip and encode every output in memory -> {path: writer of its bytes}:
    frames, wav, `.pkl`, `.npy` and the `.npy`'s link to the `.pkl` (audio.py)."""
    if job.seconds < 1 and job.start is not None:
        raise AVSDataError(start_past_the_end(job))
    frames = read_frames(job.video, job.seconds)
    waveform = read_audio(job.video)  # int16 [S]: the wav's samples, as read back
    examples = log_mel_examples(waveform, SAMPLE_RATE)  # [N, 96, 64]
    if len(examples) == 0:
        raise AVSDataError(
            f"{job.video}: audio too short ({len(waveform) / SAMPLE_RATE:.3f} s); one VGGish "
            "example needs 0.975 s"
        )
    examples = clip_log_mel(examples, OBJECT_FRAMES, pad="repeat")[:, None]  # [5, 1, 96, 64]
    pkl = log_mel_pkl_bytes(examples)
    pkl_mtime_ns = time.time_ns()  # set on the .pkl and recorded in the .npy's link
    npy = io.BytesIO()
    np.save(npy, examples, allow_pickle=False)
    link = json.dumps(pkl_stamp(len(pkl), pkl_mtime_ns, pkl), indent=2) + "\n"

    def write_pkl(tmp: Path) -> None:
        tmp.write_bytes(pkl)
        os.utime(tmp, ns=(pkl_mtime_ns, pkl_mtime_ns))  # kept by the rename

    outputs = {
        job.frame_path(i): _bytes_writer(png_bytes(rgb, job.frame_path(i)))
        for i, rgb in enumerate(frames, start=1)
    }
    npy_path = job.log_mel.with_suffix(".npy")
    outputs[job.wav] = _bytes_writer(wav_bytes(waveform))
    outputs[job.log_mel] = write_pkl
    outputs[npy_path] = _bytes_writer(npy.getvalue())
    outputs[npy_link_path(npy_path)] = _bytes_writer(link.encode())
    return outputs


def process_clip(job: ClipJob) -> None:
    """Frames, wav, .pkl, .npy and its link of one clip, all or none: everything is
    decoded and encoded first, then written at once (`fileio.atomic_write_all`), so that a
    failure leaves the previous outputs as they were. Writing is not durable (no fsync):
    a clip lost in a crash is redone by the next run."""
    atomic_write_all(clip_outputs(job), durable=False)


def start_past_the_end(job: ClipJob) -> str:
    """Why a clip whose start leaves no second to sample (start > 9) fails, with the
    video's duration."""
    try:
        duration = f"{probe_video(job.video).header_duration or 0.0:.2f} s long"
    except MediaError as exc:
        duration = f"its duration unknown: {exc}"
    return (
        f"{job.video}: start {job.start:g} s (in {job.meta_csv}) is past the video's end "
        f"({duration}; the clip keeps 10 - start seconds when start > 5): fix the row's start"
    )


def s4_jobs(root: Path, splits: tuple[str, ...] = SPLITS) -> list[ClipJob]:
    lay = S4Layout(root)
    meta = read_metadata(lay.meta_csv, S4_COLUMNS, ("name", "start", "category", "split"))
    jobs = []
    for name, start, category, split in meta.itertuples(index=False):
        if split not in splits:
            continue

        def frame_path(i: int, split=split, category=category, name=name) -> Path:
            return lay.frame(split, category, name, i)

        jobs.append(
            ClipJob(
                video=lay.raw_video(split, category, name),
                seconds=clip_seconds(start),
                frame_path=frame_path,
                wav=lay.wav(split, category, name),
                log_mel=lay.log_mel(split, category, name),
                start=start,
                meta_csv=lay.meta_csv,
            )
        )
    return jobs


def ms3_jobs(root: Path, splits: tuple[str, ...] = SPLITS) -> list[ClipJob]:
    lay = MS3Layout(root)
    meta = read_metadata(lay.meta_csv, MS3_COLUMNS, ("video_id", "split"))
    jobs = []
    for video_id, split in meta.itertuples(index=False):
        if split not in splits:
            continue

        def frame_path(i: int, video_id=video_id) -> Path:
            return lay.frame(video_id, i)

        jobs.append(
            ClipJob(
                video=lay.raw_video(video_id),
                seconds=OBJECT_FRAMES,
                frame_path=frame_path,
                wav=lay.wav(split, video_id),
                log_mel=lay.log_mel(split, video_id),
            )
        )
    return jobs


JOB_BUILDERS = {"s4": s4_jobs, "ms3": ms3_jobs}


def preprocess(
    setting: str,
    root: str | Path,
    *,
    splits: tuple[str, ...] = SPLITS,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, list]:
    """Process every clip of `setting` (s4 | ms3) under `root`.

    Returns {"done": [video paths], "skipped": [...], "failed": [(video path, reason)]}.
    """
    from tqdm import tqdm

    if setting not in JOB_BUILDERS:
        raise ValueError(f"unknown setting {setting!r}; valid: {sorted(JOB_BUILDERS)}")
    jobs = JOB_BUILDERS[setting](Path(root), tuple(splits))
    report: dict[str, list] = {"done": [], "skipped": [], "failed": []}
    for job in tqdm(
        jobs,
        desc=f"preprocess {setting}",
        unit="clip",
        disable=not (progress and sys.stderr.isatty()),
    ):
        if not overwrite and job.done():
            report["skipped"].append(job.video)
            continue
        try:
            process_clip(job)
        except AVSDataError as exc:
            report["failed"].append((job.video, str(exc)))
            continue
        report["done"].append(job.video)
    return report
