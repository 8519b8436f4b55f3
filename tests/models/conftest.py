"""Shared helpers for the model tests: random state dicts in the published layouts."""

from __future__ import annotations

import pytest

from tests.golden_files import GOLDEN, random_state_dict, read_tsv, require


@pytest.fixture(scope="session")
def tsv_state_dict():
    return random_state_dict


@pytest.fixture(scope="session")
def tsv_rows():
    return read_tsv


@pytest.fixture(scope="session")
def golden_tpavi():
    import numpy as np

    return dict(np.load(require(GOLDEN / "tpavi_blocks.npz")))
