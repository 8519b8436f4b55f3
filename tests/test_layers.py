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


def module_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports} over the whole package. A module's own
    packages (`avsbench.data` for `avsbench.data.audio`) are left out: Python imports them
    first whatever the module does, and `from avsbench.data import audio` names the module
    `audio`, not the package's names."""
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    return {
        name: {
            m
            for m in imported_modules(path)
            if m in modules and m != name and not name.startswith(m + ".")
        }
        for name, path in modules.items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_module_of_the_package_imports_itself_back():
    assert import_cycles(module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_no_method_name_outside_its_package_and_the_registry():
    """A method is one package plus one registry entry: its name is a string nowhere else."""
    from avsbench.models.registry import METHODS

    allowed = {PACKAGE / "models" / "registry.py"} | {
        path for name in METHODS for path in (PACKAGE / "models" / name).rglob("*.py")
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in METHODS:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert found == []
