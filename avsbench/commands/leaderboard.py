"""`avsbench leaderboard RUN_OR_JSON... --out DIR`: one table of models x protocols from
metrics files (avsbench.leaderboard), written as leaderboard.md, leaderboard.csv and one bar
chart per protocol (charts/<setting>_<split>_<protocol>.png) into --out, a folder the
command owns (docs/LEADERBOARD.md)."""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from avsbench.errors import FolderError, InputError
from avsbench.leaderboard import Table, build_tables, csv_rows, markdown, read_rows
from avsbench.owned_folder import OwnedFolder, Owner

LEADERBOARD = Owner("leaderboard", ".avsbench-leaderboard.json", "avsbench-leaderboard/1", "--out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN_OR_JSON",
        help="metrics JSON files (test.sh, avsbench evaluate) or test run folders",
    )
    parser.add_argument("--out", default="leaderboard", help="output folder (the command's own)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier leaderboard in --out"
    )


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "table"


def draw_charts(table: Table, folder: Path) -> list[Path]:
    """One grouped bar chart per protocol group of `table` (models on x, a bar per column,
    values x 100) -> the PNG paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    folder.mkdir(parents=True, exist_ok=True)
    names = [row.name for row in table.rows]
    for group, columns in table.groups:
        width = 0.8 / len(columns)
        figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 2), 3.6))
        x = np.arange(len(names))
        for k, column in enumerate(columns):
            values = [row.value(column.key) for row in table.rows]
            heights = [100 * v if v is not None else 0.0 for v in values]
            bars = axes.bar(x + (k - (len(columns) - 1) / 2) * width, heights, width,
                            label=column.label)  # fmt: skip
            for bar, value in zip(bars, values):
                if value is not None:
                    top = (bar.get_x() + bar.get_width() / 2, bar.get_height())
                    axes.annotate(f"{100 * value:.1f}", top, ha="center", va="bottom", fontsize=7)
        axes.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
        axes.set_ylabel("x 100")
        axes.set_title(f"{table.title}: {group.title}", fontsize=9)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = folder / f"{_file_part(table.setting + '_' + table.split)}_{group.name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _cannot_write(err: OSError, out: str) -> str:
    where = err.filename or out
    return f"{where}: {err.strerror or err}; pass --out a folder you can write to"


def run(args: argparse.Namespace) -> int:
    rows = read_rows(args.inputs)  # every input checked before --out is touched
    tables = build_tables(rows)
    if not any(table.groups for table in tables):
        raise InputError("the metrics files hold no value of any protocol the leaderboard shows")
    try:
        out = OwnedFolder(args.out, LEADERBOARD, overwrite=args.overwrite)
    except FolderError as err:
        raise InputError(str(err)) from err
    except OSError as err:  # a parent that is a file, a read-only place
        raise InputError(_cannot_write(err, args.out)) from err
    try:
        text = markdown(tables)
        (out.path / "leaderboard.md").write_text(text + "\n")
        with open(out.path / "leaderboard.csv", "w", newline="") as f:
            csv.writer(f).writerows(csv_rows(tables))
        charts = [p for table in tables for p in draw_charts(table, out.path / "charts")]
        target = out.commit()
    except OSError as err:  # disk full: nothing is left (the temporary folder goes)
        raise InputError(_cannot_write(err, args.out)) from err
    finally:
        out.abort()
    print(text)
    print(f"leaderboard: {target}/leaderboard.md, leaderboard.csv, {len(charts)} charts in charts/")
    return 0
