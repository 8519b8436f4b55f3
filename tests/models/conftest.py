"""Fixtures of the model tests: the published TPAVI blocks' golden values."""

from __future__ import annotations

import pytest

from tests.golden_files import GOLDEN, require


@pytest.fixture(scope="session")
def golden_tpavi():
    import numpy as np

    return dict(np.load(require(GOLDEN / "tpavi_blocks.npz")))
