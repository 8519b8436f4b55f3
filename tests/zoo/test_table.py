"""The zoo table: well-formed rows, the published numbers of README.md (read off its two
tables, independently of the rows), metrics keys that test.sh writes, docs/ZOO.md showing
the table as `avsbench models` renders it, and no network at import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from avsbench import config as C
from avsbench.commands.models import markdown_table
from avsbench.commands.test import TABLE_SECTIONS
from avsbench.models import registry
from avsbench.zoo import ZOO, by_name
from avsbench.zoo.table import HOSTS, HUGGINGFACE

ROOT = Path(__file__).resolve().parents[2]
METRIC_KEYS = {key for rows in TABLE_SECTIONS.values() for key in rows}


def test_rows_are_well_formed():
    names = [e.name for e in ZOO]
    assert len(names) == len(set(names)) == 11
    assert {e.method for e in ZOO} == {"avsegformer", "vct", "combo"}
    for e in ZOO:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", e.name), e.name
        assert registry.method_spec(e.method) is not None and e.setting in C.SETTINGS
        assert e.host in HOSTS and e.source_url.startswith("https://")
        assert len(e.published) == 2 and all(k in METRIC_KEYS for k, _ in e.published)
        assert all(0 < v < 1 for _, v in e.published) and e.license
        if e.host == HUGGINGFACE:
            assert e.repo_id and e.upstream_file and e.upstream_file.endswith(".pth")
        assert e.size is None and e.sha256 is None  # nothing could be downloaded here
    assert len({e.local_name for e in ZOO}) == 11  # VCT's three model_best.pth kept apart


def _readme_rows(heading: str) -> dict[str, tuple[float, float, list[str]]]:
    """label -> (mIoU, F, the metrics.json keys of the next column, if any)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| (.+?) \| ([\d.]+) / ([\d.]+) \|([^|]*)\|", line)
        if m:
            rows[m[1]] = (float(m[2]), float(m[3]), re.findall(r"`(\w+)`", m[4]))
    return rows


def test_published_numbers_are_the_readme_ones():
    avsegformer = _readme_rows("### AVSegFormer, the second method")
    labels = {"S4": "s4", "MS3": "ms3", "AVSS": "avss", "ResNet-50": "r50", "PVT-v2-b5": "pvt"}
    assert len(avsegformer) == 6
    for label, (miou, fscore, _) in avsegformer.items():
        setting, backbone = (labels[part.strip()] for part in label.split(","))
        entry = by_name(f"avsegformer-{setting}-{backbone}")
        assert [v for _, v in entry.published] == [round(miou / 100, 4), fscore]
    vct_combo = _readme_rows("### VCT and COMBO, the current best with public weights")
    found = 0
    for label, (miou, fscore, keys) in vct_combo.items():
        method, setting = label.split()[:2]
        short = "swinb" if method == "VCT" else ("pvt" if "PVT" in label else "r50")
        entry = by_name(f"{method.lower()}-{setting.rstrip(',').lower()}-{short}")
        assert entry.published == ((keys[0], round(miou / 100, 4)), (keys[1], fscore))
        found += 1
    assert found == 5
    assert by_name("avsegformer-s4-pvt").published[0][0] == "miou_test_batch_2"
    assert by_name("avsegformer-avss-r50").published[0][0] == "miou"


def test_docs_show_the_table():
    assert markdown_table(ZOO) in (ROOT / "docs" / "ZOO.md").read_text()


def test_import_and_listing_open_no_connection():
    """Importing the zoo (which imports the method packages, and timm its hub client) and
    listing the table connect nowhere: every socket connection fails loudly here."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('a connection was opened')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import avsbench.zoo\n"
        "from avsbench.cli import main\n"
        "raise SystemExit(main(['models', '--models_dir', 'no_such_folder']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "avsegformer-s4-pvt" in out.stdout and "vct-s4-swinb" in out.stdout
