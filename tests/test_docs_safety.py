"""No documented path executes pickled code (docs/RELIABILITY.md, "Loading files"): every
`torch.load` shown in README.md and docs/*.md passes weights_only=True, none shows
`pickle.load`, and pyproject requires a torch whose torch.load is weights_only by default."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _calls(text: str, name: str) -> list[str]:
    """The argument lists of every `name(...)` call in `text` (one level of brackets)."""
    return re.findall(rf"{re.escape(name)}\(((?:[^()]|\([^()]*\))*)\)", text)


def test_every_documented_torch_load_is_weights_only():
    found = 0
    for doc in DOCUMENTS:
        for args in _calls(doc.read_text(), "torch.load"):
            if not args.strip():  # prose mentioning "torch.load()" without arguments
                continue
            found += 1
            assert "weights_only=True" in args, f"{doc.name}: torch.load({args})"
    assert found >= 1  # README's example shows one


def test_no_document_shows_pickle_load():
    for doc in DOCUMENTS:
        for line in doc.read_text().splitlines():
            if "pickle.load(" in line:
                assert "run" in line or "unsafe" in line, f"{doc.name}: {line}"


def test_pyproject_requires_a_torch_that_loads_safely_by_default():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch,) = [d for d in project["dependencies"] if re.match(r"torch\b(?!vision)", d)]
    version = re.search(r">=\s*(\d+)\.(\d+)", torch)
    assert version is not None, torch
    assert (int(version[1]), int(version[2])) >= (2, 6), torch
