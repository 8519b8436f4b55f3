"""Fixtures of the whole suite: files that several test folders read, written once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.golden_files import random_state_dict


@pytest.fixture(scope="session")
def vggish_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published VGGish file layout (state_dicts/vggish.tsv, 289 MB) with random values
    (seed 3), under its release name; written once per session and read-only, so that no
    test changes what the others read. `torch.load(vggish_file)` gives its values."""
    path = tmp_path_factory.mktemp("vggish") / "vggish-10086976.pth"
    torch.save(random_state_dict("vggish.tsv", seed=3), path)
    path.chmod(0o444)
    return path
