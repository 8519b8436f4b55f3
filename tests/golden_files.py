"""Where the tests find the facts of the published code: `tests/golden/` (see its README for
the provenance of every file). The files are part of the repository, so a missing one is a
broken checkout and fails the test that needs it; nothing outside the repository is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN_ROOT = Path(__file__).resolve().parent / "golden"
GOLDEN = GOLDEN_ROOT / "avsbench"  # published AVSBench outputs (commit f7414af)
STATE_DICTS = GOLDEN / "state_dicts"  # published AVSBench state-dict layouts
AVSEGFORMER = GOLDEN_ROOT / "avsegformer"  # published AVSegFormer outputs (commit 7083cb6)
AVSEGFORMER_STATE_DICTS = AVSEGFORMER / "state_dicts"


def require(path: Path) -> Path:
    """Return `path`; fail (never skip) when the repository file is absent."""
    if not path.exists():
        pytest.fail(f"golden file {path} is missing from the checkout (see tests/golden/README.md)")
    return path
