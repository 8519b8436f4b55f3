"""Where the specification files live (state-dict layouts and golden outputs of the
published code): $AVSBENCH_SPEC, else tests/spec in the repository, else ../shared/spec next
to the checkout (where CI puts it). Outside CI a missing file skips the test with the
reason; in CI (CI=true) it fails, so the exact-agreement tests can never silently vanish.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    os.environ.get("AVSBENCH_SPEC"),
    REPO / "tests" / "spec",
    REPO.parent / "shared" / "spec",
]
SPEC_DIR = next(
    (Path(p) for p in _CANDIDATES if p and (Path(p) / "state_dicts").is_dir()),
    REPO.parent / "shared" / "spec",
)
STATE_DICTS = SPEC_DIR / "state_dicts"
GOLDEN = SPEC_DIR / "golden"


def require(path: Path) -> Path:
    """Return `path`, or skip (fail in CI) when the spec file is absent."""
    if not path.exists():
        message = f"spec file {path} not found (set AVSBENCH_SPEC to the spec folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
