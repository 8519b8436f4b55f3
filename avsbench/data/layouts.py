"""Official on-disk layouts of AVSBench (S4, MS3, AVSS): every path in one place.

Follows the public AVSBench release (Zhou et al., ECCV 2022; IJCV 2024) as described in
avsbench_data/README.md. The synthetic generator (`synthetic.py`), the preprocessing
(`avsbench/preprocess.py`) and the datasets (`datasets.py`) all build paths through these classes,
so that one reader serves the real and the synthetic data.

    S4   <root>/s4_meta_data.csv                          name, start, category, split
         <root>/s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png   i = 1..5
         <root>/s4_data/audio_wav/<split>/<category>/<name>.wav
         <root>/s4_data/audio_log_mel/<split>/<category>/<name>.pkl
         <root>/s4_data/gt_masks/<split>/<category>/<name>/<name>_<i>.png  (train: i = 1)
         <root>/s4_data/raw_videos/<split>/<category>/<name>.mp4
    MS3  <root>/ms3_meta_data.csv                         video_id, split
         <root>/ms3_data/visual_frames/<video_id>/<video_id>.mp4_<i>.png    (no split!)
         <root>/ms3_data/audio_wav/<split>/<video_id>.wav
         <root>/ms3_data/audio_log_mel/<split>/<video_id>.pkl
         <root>/ms3_data/gt_masks/<split>/<video_id>/<video_id>_<i>.png
         <root>/ms3_data/raw_videos/<video_id>.mp4
    AVSS <root>/metadata.csv                              vid, uid, ..., a_obj, split, label
         <root>/label2idx.json
         <root>/<label>/<uid>/frames/<k>.jpg             k = 0..N-1 (0-based)
         <root>/<label>/<uid>/labels_rgb/<k>.png
         <root>/<label>/<uid>/labels_semantic/<k>.png    (optional)
         <root>/<label>/<uid>/audio.wav
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from avsbench.errors import AVSDataError, DataNotFoundError, InputError  # noqa: F401 (defined in errors.py)
from avsbench.fileio import is_plain_name

SPLITS = ("train", "val", "test")

# The 23 AVSBench-object (S4) categories, in the order of the official release.
S4_CATEGORIES = (
    "baby_laughter",
    "female_singing",
    "male_speech",
    "dog_barking",
    "cat_meowing",
    "lions_roaring",
    "horse_clip-clop",
    "coyote_howling",
    "mynah_bird_singing",
    "playing_acoustic_guitar",
    "playing_tabla",
    "playing_violin",
    "playing_piano",
    "playing_ukulele",
    "playing_glockenspiel",
    "helicopter",
    "race_car",
    "driving_buses",
    "ambulance_siren",
    "typing_on_computer_keyboard",
    "chainsawing_trees",
    "cap_gun_shooting",
    "lawn_mowing",
)

# Metadata columns, name -> 0-based position in the released CSV (positional fallback).
S4_COLUMNS = {"name": 0, "start": 1, "category": 2, "split": 3}
MS3_COLUMNS = {"video_id": 0, "split": 1}
AVSS_COLUMNS = {"vid": 0, "uid": 1, "a_obj": 4, "split": 5, "label": 6}

# Metadata columns that become path components (checked by `check_rows`).
PATH_COLUMNS = ("name", "category", "video_id", "uid", "label")
# The column naming a clip (S4, MS3, AVSS): listed once per split (`check_rows`).
CLIP_COLUMNS = ("name", "video_id", "uid")

# AVSS subsets: label -> number of frames (and of seconds of audio).
AVSS_SUBSET_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}
AVSS_MAX_FRAMES = 10

# Number of frames per clip of AVSBench-object (S4 and MS3).
OBJECT_FRAMES = 5

# Names of the release layouts below (`S4Layout.name`, ...), as extra inputs name them, and
# of VCT's 384-px copies of S4 and MS3 (vct_copies.py; its AVSS copies keep "avss": their
# maskiges lie in the same folder).
LAYOUT_NAMES = ("s4", "ms3", "avss", "s4_384", "ms3_384")


def read_metadata(
    csv_path: str | Path, columns: Mapping[str, int], required: Sequence[str]
) -> pd.DataFrame:
    """Read an AVSBench metadata CSV and return the `required` columns, by name.

    Columns are looked up by name. When the header names none of the known columns (an
    unrecognised header), each column is taken by its position in the official release
    (`columns[name]`). A header that names some known columns but lacks a required one is
    an error: taking that one by position could silently read the wrong column.

    Returns a DataFrame with exactly the `required` columns (as str, except `start`).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataNotFoundError(f"{csv_path}: metadata CSV not found; check the dataset root")
    try:
        df = pd.read_csv(
            csv_path, sep=",", dtype=str, keep_default_na=False, skip_blank_lines=False
        )
    except Exception as exc:  # pandas raises several types for malformed files
        raise AVSDataError(f"{csv_path}: cannot be read as a CSV ({exc})") from exc
    blank = (df.apply(lambda col: col.astype(str).str.strip()) == "").all(axis=1)
    df = df[~blank.to_numpy()]
    df.index = df.index + 2  # the file's line numbers (line 1 is the header)
    header = [str(c).strip() for c in df.columns]
    df.columns = header
    known = [name for name in columns if name in header]
    missing = [name for name in required if name not in header]
    if not missing:
        out = df[list(required)].copy()
    elif not known:
        positions = [columns[name] for name in required]
        if max(positions) >= len(header):
            raise AVSDataError(
                f"{csv_path}: needs the columns {list(required)} (by name, or at positions "
                f"{positions} of the official release) but has only {header}"
            )
        out = df.iloc[:, positions].copy()
        out.columns = list(required)
    else:
        raise AVSDataError(
            f"{csv_path}: missing column(s) {missing}; found {header}. The official "
            f"columns are {list(columns)}"
        )
    for name in required:
        if name != "start":
            out[name] = out[name].astype(str).str.strip()
    if "start" in out.columns:
        out["start"] = [
            _start_seconds(value, csv_path, line) for line, value in out["start"].items()
        ]
    check_rows(out, csv_path)
    return out.reset_index(drop=True)


def _start_seconds(value: str, csv_path: Path, line: object) -> float:
    """A row's `start` as seconds; AVSDataError naming the line unless a finite number."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise AVSDataError(
            f"{csv_path}, line {line}: start {value!r} is not a number of seconds (the clip's "
            "start in its source video, e.g. 0); fix the row"
        )
    return seconds


def check_rows(meta: pd.DataFrame, csv_path: str | Path) -> None:
    """AVSDataError naming the CSV file and line (the index of `meta`) for a row whose
    split is not one of SPLITS, or whose path column (PATH_COLUMNS) is not a plain name:
    empty, '.' / '..', or holding a path separator (absolute paths included), which would
    read (and, with --save_pred_mask, write) files outside the dataset; and naming both
    lines for a clip (CLIP_COLUMNS) listed twice in the same split."""
    first_line: dict[tuple[str, str], int] = {}  # (clip, split) -> its first line
    clip_column = next((c for c in CLIP_COLUMNS if c in meta.columns), None)
    for line, row in meta.iterrows():
        where = f"{csv_path}, line {line}"
        if "split" in row and row["split"] not in SPLITS:
            raise AVSDataError(
                f"{where}: unknown split {row['split']!r} (valid: {list(SPLITS)}, lower case); "
                "fix or remove the row"
            )
        for column in PATH_COLUMNS:
            if column in row and not is_plain_name(row[column]):
                raise AVSDataError(
                    f"{where}: {column} {row[column]!r} is not a plain file name (no '/', "
                    "'\\', '..' or absolute paths: it becomes a path under the dataset root); "
                    "fix or remove the row"
                )
        if clip_column is not None and "split" in row:
            key = (row[clip_column], row["split"])
            if key in first_line:
                raise AVSDataError(
                    f"{csv_path}, lines {first_line[key]} and {line}: clip {key[0]!r} appears "
                    f"twice in split {key[1]!r} (it would be trained or tested twice); remove "
                    "one of the rows"
                )
            first_line[key] = int(line)


def select_split(df: pd.DataFrame, split: str, csv_path: str | Path) -> pd.DataFrame:
    """Rows of `df` whose `split` column equals `split`; an empty split is an error."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    rows = df[df["split"] == split].reset_index(drop=True)
    if len(rows) == 0:
        found = sorted(set(df["split"]))
        raise AVSDataError(f"{csv_path}: no rows with split == {split!r} (splits found: {found})")
    return rows


@dataclass(frozen=True)
class S4Layout:
    """Paths of the Single-source release; `root` is e.g. avsbench_data/Single-source."""

    root: Path
    name: ClassVar[str] = "s4"

    @property
    def meta_csv(self) -> Path:
        return self.root / "s4_meta_data.csv"

    @property
    def frames_root(self) -> Path:
        """Folder that all frame paths lie under (extra inputs mirror it)."""
        return self.data / "visual_frames"

    @property
    def data(self) -> Path:
        return self.root / "s4_data"

    def frame(self, split: str, category: str, name: str, i: int) -> Path:
        """Frame i (1-based) of a clip."""
        return self.data / "visual_frames" / split / category / name / f"{name}_{i}.png"

    def mask(self, split: str, category: str, name: str, i: int) -> Path:
        """Mask of frame i (1-based); train has i = 1 only."""
        return self.data / "gt_masks" / split / category / name / f"{name}_{i}.png"

    def wav(self, split: str, category: str, name: str) -> Path:
        return self.data / "audio_wav" / split / category / f"{name}.wav"

    def log_mel(self, split: str, category: str, name: str) -> Path:
        """The official `.pkl`; the safe `.npy` cache is `.with_suffix('.npy')`."""
        return self.data / "audio_log_mel" / split / category / f"{name}.pkl"

    def raw_video(self, split: str, category: str, name: str) -> Path:
        return self.data / "raw_videos" / split / category / f"{name}.mp4"


@dataclass(frozen=True)
class MS3Layout:
    """Paths of the Multi-sources release; `root` is e.g. avsbench_data/Multi-sources."""

    root: Path
    name: ClassVar[str] = "ms3"

    @property
    def meta_csv(self) -> Path:
        return self.root / "ms3_meta_data.csv"

    @property
    def frames_root(self) -> Path:
        """Folder that all frame paths lie under (extra inputs mirror it)."""
        return self.data / "visual_frames"

    @property
    def data(self) -> Path:
        return self.root / "ms3_data"

    def frame(self, video_id: str, i: int) -> Path:
        """Frame i (1-based); no split folder and a literal `.mp4_` in the name."""
        return self.data / "visual_frames" / video_id / f"{video_id}.mp4_{i}.png"

    def mask(self, split: str, video_id: str, i: int) -> Path:
        return self.data / "gt_masks" / split / video_id / f"{video_id}_{i}.png"

    def wav(self, split: str, video_id: str) -> Path:
        return self.data / "audio_wav" / split / f"{video_id}.wav"

    def log_mel(self, split: str, video_id: str) -> Path:
        return self.data / "audio_log_mel" / split / f"{video_id}.pkl"

    def raw_video(self, video_id: str) -> Path:
        return self.data / "raw_videos" / f"{video_id}.mp4"


@dataclass(frozen=True)
class AVSSLayout:
    """Paths of AVSBench-semantic; `root` is e.g. avsbench_data/AVSBench_semantic."""

    root: Path
    name: ClassVar[str] = "avss"

    @property
    def meta_csv(self) -> Path:
        return self.root / "metadata.csv"

    @property
    def frames_root(self) -> Path:
        """Folder that all frame paths lie under (extra inputs mirror it): the root."""
        return self.root

    @property
    def label2idx(self) -> Path:
        return self.root / "label2idx.json"

    def video_dir(self, label: str, uid: str) -> Path:
        return self.root / label / uid

    def frame(self, label: str, uid: str, k: int) -> Path:
        """Frame k (0-based)."""
        return self.video_dir(label, uid) / "frames" / f"{k}.jpg"

    def label_rgb(self, label: str, uid: str, k: int) -> Path:
        return self.video_dir(label, uid) / "labels_rgb" / f"{k}.png"

    def label_semantic(self, label: str, uid: str, k: int) -> Path:
        return self.video_dir(label, uid) / "labels_semantic" / f"{k}.png"

    def wav(self, label: str, uid: str) -> Path:
        return self.video_dir(label, uid) / "audio.wav"
