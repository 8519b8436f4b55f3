"""A leaderboard from metrics files: one row per model, one column group per protocol
(docs/LEADERBOARD.md).

Inputs are the metrics JSON that test.sh writes (`metrics.json` of a test run folder, or
`--out_json`) and any JSON of the same shape, such as `avsbench evaluate`'s on another
codebase's masks: an object whose "metrics" holds the scalar values under test.sh's key
names (docs/METRICS.md). A file that is only such a "metrics" object is accepted as well.

What a protocol shows is declared once, in `PROTOCOL_GROUPS`: a group names its columns
by metrics key ("subsets.v1s.miou" reaches into nested objects) and the settings it
applies to. A key that no input has leaves its column out, a group left without columns
is left out, and keys the list does not name are ignored, so files written before or
after a protocol was added mix freely. Adding a protocol is adding a group.

Rows of different settings (or splits) are never ranked together: they form one table
each, in the order the inputs were given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsbench.errors import InputError

METRICS_FILE = "metrics.json"  # what test.sh writes into its run folder


@dataclass(frozen=True)
class Column:
    key: str  # metrics key; dots reach into nested objects ("subsets.v1s.miou")
    label: str  # column header


@dataclass(frozen=True)
class ProtocolGroup:
    name: str  # file-name part of its chart: charts/<setting>_<split>_<name>.png
    title: str  # section header (docs/METRICS.md names the published tables of each)
    columns: tuple[Column, ...]
    settings: tuple[str, ...] = ("s4", "ms3", "avss")  # where the group applies


def _jf(prefix: str, suffix: str = "") -> tuple[Column, ...]:
    return (Column(f"miou{prefix}{suffix}", "mIoU"), Column(f"fscore{prefix}{suffix}", "F"))


BINARY = ("s4", "ms3")
PROTOCOL_GROUPS: tuple[ProtocolGroup, ...] = (
    ProtocolGroup(
        "official_b4", "Official per frame, test batch 4 (AVSBench)", _jf("_test_batch_4"), BINARY
    ),
    ProtocolGroup(
        "official_b2",
        "Official per frame, test batch 2 (AVSegFormer)",
        _jf("_test_batch_2"),
        BINARY,
    ),
    ProtocolGroup(
        "official_b1",
        "Official per frame, test batch 1 = per video (detectron2 code)",
        _jf("_test_batch_1"),
        BINARY,
    ),
    ProtocolGroup("official", "Official (AVSBench AVSS)", _jf(""), ("avss",)),
    ProtocolGroup(
        "official_nobg",
        "Official 'noBg' (drops class 70)",
        _jf("_official_nobg"),
        ("avss",),
    ),
    ProtocolGroup("per_clip", "Per clip (VCT / COMBO)", _jf("_per_clip"), BINARY),
    ProtocolGroup("vct_combo_avss", "VCT / COMBO AVSS (real frames)", _jf("_vct_combo_avss")),
    ProtocolGroup(
        "batch_independent",
        "Batch-independent",
        (
            Column("miou_per_frame", "mIoU per frame"),
            Column("fscore_dataset_curve", "F one curve"),
            Column("iou_dataset", "IoU sum(I)/sum(U)"),
            Column("miou_no_background", "mIoU no bg"),
            Column("fscore_no_background", "F no bg"),
            Column("miou_present_classes", "mIoU present"),
            Column("fscore_present_classes", "F present"),
        ),
    ),
    ProtocolGroup(
        "dataset_ddeseg",
        "Dataset level J&F (DDESeg)",
        (
            Column("miou_dataset_ddeseg", "J"),
            Column("f1_dataset_ddeseg", "F1"),
            Column("fscore_dataset_ddeseg", "F0.3"),
        ),
    ),
    ProtocolGroup(
        "dataset_cavp",
        "Dataset level J&F (CAVP)",
        (
            Column("miou_dataset_cavp", "J"),
            Column("f1_dataset_cavp", "F1"),
            Column("fscore_dataset_cavp", "F0.3"),
        ),
    ),
    ProtocolGroup(
        "avss_subsets",
        "AVSS per subset, official",
        tuple(
            Column(f"subsets.{subset}.{metric}", f"{subset} {label}")
            for subset in ("v1s", "v1m", "v2")
            for metric, label in (("miou", "mIoU"), ("fscore", "F"))
        ),
        ("avss",),
    ),
)

# keys of the top level of a metrics file that describe the run (shown beside the model)
ROW_FACTS = ("setting", "split", "test_batch_size", "num_clips")


@dataclass
class Row:
    """One model's metrics, read from `source`."""

    source: Path
    name: str
    setting: str
    split: str
    metrics: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        """The finite number under `key` (dotted), else None."""
        node: Any = self.metrics
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, int | float):
            return None
        return float(node) if math.isfinite(node) else None


# ---------------------------------------------------------------------------------------
# Reading the inputs
# ---------------------------------------------------------------------------------------
def metrics_files(path: Path) -> list[Path]:
    """The metrics JSON files an argument names: the file itself, or the metrics.json of a
    run folder, or those of the run folders inside a folder (a --log_dir)."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise InputError(
            f"{path}: not found; pass metrics JSON files (test.sh's metrics.json or --out_json, "
            "avsbench evaluate's) or test run folders"
        )
    if (path / METRICS_FILE).is_file():
        return [path / METRICS_FILE]
    found = sorted(path.rglob(METRICS_FILE))
    if not found:
        raise InputError(
            f"{path}: a folder without {METRICS_FILE} (nor any inside it); pass a test run "
            "folder or the metrics JSON file itself"
        )
    return found


def _known_keys() -> set[str]:
    return {c.key.split(".")[0] for g in PROTOCOL_GROUPS for c in g.columns}


def read_row(path: Path) -> Row:
    """The row of one metrics file; InputError naming the file for anything else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not JSON ({exc.msg}, line {exc.lineno}); pass a metrics JSON"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: not a metrics file (a JSON {type(data).__name__}, not an object)"
        )
    metrics = data.get("metrics", data)
    if not isinstance(metrics, dict) or not _known_keys() & set(metrics):
        raise InputError(
            f"{path}: not a metrics file: no 'metrics' object with a key the leaderboard knows "
            "(miou, fscore, miou_test_batch_4, ...: docs/METRICS.md); pass the JSON test.sh "
            "or avsbench evaluate writes"
        )
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    setting = str(data.get("setting") or model.get("setting") or "").lower()
    if setting not in ("s4", "ms3", "avss"):
        raise InputError(
            f"{path}: says no setting (s4, ms3 or avss) in its 'setting' key; the leaderboard "
            'does not rank files it cannot place: add "setting" to the file'
        )
    facts = {key: data[key] for key in ROW_FACTS if key in data}
    return Row(
        path, model_name(data, model, path), setting, str(data.get("split", "")), metrics, facts
    )


def model_name(data: dict[str, Any], model: dict[str, Any], path: Path) -> str:
    """A row's name: the file's own "name" if any; else method, backbone and checkpoint file
    of its config (test.sh); else the file name. The audio condition is appended when the
    file was not tested with each clip's own sound."""
    if isinstance(data.get("name"), str) and data["name"].strip():
        name = data["name"].strip()
    elif model.get("method"):
        parts = [str(model["method"]), str(model.get("backbone") or "")]
        if data.get("weights"):
            parts.append(Path(str(data["weights"])).name)
        name = " ".join(p for p in parts if p)
    else:
        name = path.stem if path.name != METRICS_FILE else path.parent.name
    audio = data.get("audio")
    if isinstance(audio, str) and audio not in ("", "own"):
        name += f" (audio: {audio})"
    elif data.get("swap_audio") is True:
        name += " (audio: swap)"
    return name


def read_rows(paths: Iterable[str | Path]) -> list[Row]:
    """Rows of every metrics file the arguments name, in order; a file named twice is an
    error; names shared by two rows get their file's folder appended."""
    rows, seen = [], {}
    for argument in paths:
        for path in metrics_files(Path(argument)):
            resolved = path.resolve()
            if resolved in seen:
                raise InputError(
                    f"{path}: given twice (also as {seen[resolved]}); name each file once"
                )
            seen[resolved] = path
            rows.append(read_row(path))
    if not rows:
        raise InputError("no metrics file given; pass metrics JSON files or test run folders")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
    for row in rows:
        if counts[row.name] > 1:
            row.name = f"{row.name} [{_where(row.source)}]"
    return rows


def _where(path: Path) -> str:
    return path.parent.name if path.name == METRICS_FILE else path.name


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------
@dataclass
class Table:
    """The rows of one setting and split, with the groups and columns they have values for."""

    setting: str
    split: str
    rows: list[Row]
    groups: list[tuple[ProtocolGroup, list[Column]]]

    @property
    def title(self) -> str:
        return f"{self.setting.upper()} {self.split}".strip()


def build_tables(
    rows: Sequence[Row], groups: Sequence[ProtocolGroup] = PROTOCOL_GROUPS
) -> list[Table]:
    """One table per (setting, split), in the order first met; columns no row has are left
    out, and so are groups left without columns."""
    order: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        order.setdefault((row.setting, row.split), []).append(row)
    tables = []
    for (setting, split), members in order.items():
        kept = []
        for group in groups:
            if setting not in group.settings:
                continue
            columns = [c for c in group.columns if any(r.value(c.key) is not None for r in members)]
            if columns:
                kept.append((group, columns))
        tables.append(Table(setting, split, members, kept))
    return tables


def markdown_cell(value: float | None, best: bool) -> str:
    """A value as papers print it: x 100, two decimals; the column's best in bold."""
    if value is None:
        return "-"
    text = f"{100 * value:.2f}"
    return f"**{text}**" if best else text


def markdown(tables: Sequence[Table]) -> str:
    """All tables as Markdown: per table, a header row of protocol groups then columns."""
    out = [
        "# Leaderboard",
        "",
        "Values x 100; the best of each column in bold; '-': not in the file.",
        "",
    ]
    for table in tables:
        out += [f"## {table.title}", ""]
        head, rule = ["Model"], ["---"]
        for group, columns in table.groups:
            for column in columns:
                head.append(f"{group.title}: {column.label}")
                rule.append("---:")
        out += ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
        best = {
            c.key: max((v for r in table.rows if (v := r.value(c.key)) is not None), default=None)
            for _, columns in table.groups
            for c in columns
        }
        for row in table.rows:
            cells = [row.name.replace("|", "\\|")]
            for _, columns in table.groups:
                for c in columns:
                    value = row.value(c.key)
                    top = len(table.rows) > 1 and value is not None and value == best[c.key]
                    cells.append(markdown_cell(value, top))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def csv_rows(tables: Sequence[Table]) -> list[list[str]]:
    """One CSV for all tables: model, setting, split, source, then a column per
    (group, column) met in any table (values as in the files, fractions; blank: none)."""
    columns: list[tuple[ProtocolGroup, Column]] = []
    for table in tables:
        for group, kept in table.groups:
            for column in kept:
                if (group, column) not in columns:
                    columns.append((group, column))
    header = ["model", "setting", "split", "source"] + [f"{g.name}:{c.key}" for g, c in columns]
    lines = [header]
    for table in tables:
        for row in table.rows:
            values = [row.value(c.key) if row.setting in g.settings else None for g, c in columns]
            lines.append(
                [row.name, row.setting, row.split, str(row.source)]
                + ["" if v is None else repr(v) for v in values]
            )
    return lines
