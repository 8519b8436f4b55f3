"""Fixtures of the maskige tests: one torch thread, and one tiny random-weight SAM file per
module (tests/maskige/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.maskige.helpers import save_tiny_sam


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny model's many small ops crawl with threads on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sam_file(tmp_path_factory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")
