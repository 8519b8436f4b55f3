"""The metadata CSV as `avsbench check-data` reads it: every row checked, every problem
reported with its line (avsbench.data_check, docs/CHECK_DATA.md). The same rules as
`layouts.read_metadata`, which stops at the first bad row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from avsbench.data.layouts import AVSS_COLUMNS, AVSS_SUBSET_FRAMES, MS3_COLUMNS, S4_COLUMNS, SPLITS
from avsbench.data.semantic_object import SEMANTIC_SUBSETS
from avsbench.data_check_rules import Findings
from avsbench.fileio import is_plain_name


@dataclass(frozen=True)
class Clip:
    """One CSV row that passed the row checks: what the file checks need."""

    line: int
    split: str
    clip: str  # S4 name, MS3 video_id, AVSS uid
    group: str  # S4 category, AVSS / semantic subset label, MS3 ""


# ---------------------------------------------------------------------------------------
def csv_spec(setting: str, source: str) -> tuple[Path, dict[str, int], tuple[str, ...]]:
    """(CSV name, official column positions, required columns) of a setting's release."""
    if setting == "s4" and source != "semantic":
        return Path("s4_meta_data.csv"), S4_COLUMNS, ("name", "start", "category", "split")
    if setting == "ms3" and source != "semantic":
        return Path("ms3_meta_data.csv"), MS3_COLUMNS, ("video_id", "split")
    return Path("metadata.csv"), AVSS_COLUMNS, ("uid", "split", "label")


def read_clips(root: Path, setting: str, source: str, found: Findings) -> list[Clip]:
    """The rows of the metadata CSV that pass every row check; each failing row is a "csv"
    problem naming its line (bad split, not a plain name, a clip twice in a split, a wrong
    number of fields, a bad start, an unknown AVSS subset); a clip in two splits is a
    "split_overlap" warning (its rows are kept: the loaders read them)."""
    name, positions, required = csv_spec(setting, source)
    path = root / name
    if not path.is_file():
        found.add("layout", path, "metadata CSV not found")
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = [(number, fields) for number, fields in _numbered(csv.reader(f))]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        found.add("csv", path, f"cannot be read as a CSV ({exc})")
        return []
    if not table:
        found.add("csv", path, "empty file (no header)")
        return []
    header = [h.strip() for h in table[0][1]]
    known = [c for c in positions if c in header]
    if all(c in header for c in required):
        index = {c: header.index(c) for c in required}
    elif not known:  # no known header: the official positions (as read_metadata does)
        index = {c: positions[c] for c in required}
    else:
        missing = [c for c in required if c not in header]
        found.add("csv", path, f"line 1: missing column(s) {missing}; found {header}")
        return []
    clip_col = next(c for c in ("name", "video_id", "uid") if c in required)
    group_col = "category" if "category" in required else "label" if "label" in required else ""
    subset = SEMANTIC_SUBSETS.get(setting) if source == "semantic" and setting != "avss" else None
    first: dict[tuple[str, str], int] = {}  # (clip, split) -> its line
    other_split: dict[str, tuple[str, int]] = {}  # clip -> (its first split, line)
    clips = []
    for line, fields in table[1:]:  # line 1 is a header, known or not (as pandas reads it)
        where = f"line {line}"
        if len(fields) != len(header):
            found.add("csv", path, f"{where}: {len(fields)} fields, the header has {len(header)}")
            continue
        row = {c: fields[i].strip() for c, i in index.items()}
        if row["split"] not in SPLITS:
            found.add(
                "csv", path, f"{where}: unknown split {row['split']!r} (valid: {list(SPLITS)})"
            )
            continue
        bad = [c for c in (clip_col, group_col) if c and not is_plain_name(row[c])]
        if bad:
            found.add("csv", path, f"{where}: {bad[0]} {row[bad[0]]!r} is not a plain file name")
            continue
        if "start" in row and not _is_seconds(row["start"]):
            found.add("csv", path, f"{where}: start {row['start']!r} is not a number of seconds")
            continue
        if "label" in row and row["label"] not in AVSS_SUBSET_FRAMES:
            found.add(
                "csv",
                path,
                f"{where}: unknown subset label {row['label']!r} "
                f"(valid: {sorted(AVSS_SUBSET_FRAMES)})",
            )
            continue
        if subset is not None and row["label"] != subset:
            continue  # another subset of AVSBench-semantic
        key = (row[clip_col], row["split"])
        if key in first:
            found.add(
                "csv",
                path,
                f"lines {first[key]} and {line}: clip {key[0]!r} twice in "
                f"split {key[1]!r} (duplicated id)",
            )
            continue
        first[key] = line
        earlier = other_split.setdefault(key[0], (key[1], line))
        if earlier[0] != key[1]:
            found.add(
                "split_overlap",
                path,
                f"lines {earlier[1]} and {line}: clip {key[0]!r} is in split {earlier[0]!r} "
                f"and in split {key[1]!r}",
            )
        clips.append(Clip(line, row["split"], row[clip_col], row.get(group_col, "") or ""))
    return clips


def _numbered(reader: csv.reader) -> list[tuple[int, list[str]]]:
    """(line number where the row starts, fields) of each non-blank row."""
    out, line = [], 1
    for fields in reader:
        if any(field.strip() for field in fields):
            out.append((line, fields))
        line = reader.line_num + 1
    return out


def _is_seconds(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
