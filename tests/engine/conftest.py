"""Fixtures of tests/engine: tiny synthetic datasets shared by the whole session."""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_helpers import toy_root


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("toy_avsbench")


@pytest.fixture(scope="session")
def s4_toy(toy_base):
    return toy_root(toy_base, "s4")


@pytest.fixture(scope="session")
def ms3_toy(toy_base):
    return toy_root(toy_base, "ms3")


@pytest.fixture(scope="session")
def avss_toy(toy_base):
    return toy_root(toy_base, "avss")


@pytest.fixture(autouse=True)
def _restore_torch_rng():
    """Tests seed the global RNGs; leave them as found."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)
