"""The package's layers import one way: `avsbench.data` (layouts, datasets, the audio front
end) never imports `avsbench.media` (video and audio decoding), which reads through data's
front end; commands such as `avsbench preprocess` and `predict` use both
(docs/ARCHITECTURE.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "avsbench"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function ("from . import x"
    resolved against its package)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def importers(layer: str, of: str) -> dict[str, list[str]]:
    """{module of `layer`: the modules of `of` it imports}."""
    out = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        hits = sorted(m for m in imported_modules(path) if m.startswith(f"avsbench.{of}"))
        if hits:
            out[path.relative_to(PACKAGE.parent).as_posix()] = hits
    return out


def test_data_never_imports_media():
    assert importers("data", "media") == {}


def test_the_checker_sees_lazy_imports():
    module = PACKAGE / "media" / "inputs.py"  # imports data lazily, inside functions
    assert "avsbench.data.audio" in imported_modules(module)
    assert importers("media", "data")  # media -> data is the allowed direction
