"""`avsbench models`: the model zoo's table, and which of its files the models folder holds.

Status of each row: `verified` (hashed now, --verify: the sha256 recorded at download),
`recorded` (size and time as recorded; `--weights NAME` hashes it before use), `touched`
(same size, another modification time), `changed` (refused until downloaded again),
`unrecorded` (a file at the zoo path that `avsbench download` did not verify), `-` (not
downloaded). Other checkpoint files in the folder are listed after the table.
"""

from __future__ import annotations

import argparse

from avsbench.zoo import add_models_dir_argument, store
from avsbench.zoo.table import ZooEntry

DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models_dir_argument(parser)
    parser.add_argument(
        "--verify", action="store_true", help="hash every present file against its record"
    )
    parser.add_argument("--long", action="store_true", help="also source URL, license, notes")


def format_table(table: tuple[ZooEntry, ...], folder, *, rehash: bool, long: bool) -> str:
    record = store.read_record(folder) if folder.is_dir() else {}
    rows = [("name", "method", "setting", "backbone", "published", "size", "here")]
    for entry in table:
        status = store.local_state(entry, folder, rehash=rehash, record=record).status
        size = "?" if entry.size is None else f"{entry.size / 2**20:.0f} MiB"
        here = "-" if status == "absent" else status
        cells = (entry.name, entry.method, entry.setting, entry.backbone, entry.published_text())
        rows.append((*cells, size, here))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    if long:
        for entry in table:
            lines += ["", f"{entry.name}: {entry.source_url}", f"  protocol: {entry.protocol}",
                      f"  license: {entry.license}",
                      f"  file: {entry.upstream_file or '(name not published)'}, size "
                      f"{entry.size if entry.size is not None else 'unknown'}, published sha256 "
                      f"{entry.sha256 or 'none'}"]  # fmt: skip
            if entry.note:
                lines.append(f"  note: {entry.note}")
    return "\n".join(lines)


def markdown_table(table: tuple[ZooEntry, ...]) -> str:
    """The table of docs/ZOO.md (tests check that the page shows these rows)."""
    lines = [
        "| name | method | setting | backbone | published (metrics.json keys) | host | license |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        source = f"[{e.host}]({e.source_url})"
        cells = (f"`{e.name}`", e.method, e.setting, e.backbone, e.published_text(), source)
        lines.append("| " + " | ".join((*cells, e.license)) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    table = store.ZOO  # looked up on use: tests swap in their own table
    folder = store.models_dir_of(args.models_dir)
    print(format_table(table, folder, rehash=args.verify, long=args.long))
    print(f"\nmodels folder: {folder}  (avsbench download NAME fetches into it)")
    others = [(label, path) for label, path, row in store.available(folder, table) if row is None]
    if others:
        print("other checkpoint files there (--weights PATH):")
        for label, _ in others:
            print(f"  {label}")
    return 0
