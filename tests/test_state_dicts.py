"""The one safe torch.load (bad files are one-line errors naming the file; pickled code never
runs) and the one reporter of keys."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from avsbench.state_dicts import (
    CheckpointError,
    CheckpointNotFound,
    KeyReport,
    safe_torch_load,
)


class Hostile:
    """Unpickling this creates `marker`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _one_line_error(path: Path, match: str, exc: type = CheckpointError) -> str:
    with pytest.raises(exc, match=match) as info:
        safe_torch_load(path, "--weights file")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "--weights file" in message
    return message


def test_hostile_pickles_never_run(tmp_path):
    marker = tmp_path / "pwned"
    as_torch = tmp_path / "evil.pth"
    torch.save({"format": "avsbench/1", "model": {"w": Hostile(marker)}}, as_torch)
    as_pickle = tmp_path / "evil.pkl"  # torch's legacy (non-zip) form is a plain pickle
    as_pickle.write_bytes(pickle.dumps({"w": Hostile(marker)}, protocol=2))
    for path in (as_torch, as_pickle):
        _one_line_error(path, "Python objects other than tensors")
        assert not marker.exists()
    # the files are hostile indeed: an unrestricted unpickler runs their code
    pickle.loads(as_pickle.read_bytes())
    assert marker.exists()


def test_bad_files_are_one_line_errors_naming_them(tmp_path):
    _one_line_error(tmp_path / "mybest.pth", "not found", CheckpointNotFound)
    folder = tmp_path / "run"
    folder.mkdir()
    _one_line_error(folder, "it is a folder")
    empty = tmp_path / "empty.pth"
    empty.touch()
    _one_line_error(empty, "empty \\(0 bytes")
    text = tmp_path / "notes.pth"
    text.write_text("<html><body>404 Not Found</body></html>\n")
    _one_line_error(text, "text file \\(starts '<html><body>404 Not Found")
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 9\n")
    _one_line_error(lfs, "Git LFS pointer")
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.ones(1000)}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:700])
    _one_line_error(truncated, "truncated or corrupt torch.save file")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(256)) * 4)
    _one_line_error(noise, "not a")


def test_fix_is_appended_and_not_found_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"weights not found: .*x.pth\. Put it there"):
        safe_torch_load(tmp_path / "x.pth", "weights", fix="Put it there")


def test_tensors_numpy_and_safetensors_load(tmp_path):
    from safetensors.torch import save_file

    obj = {"w": torch.arange(6.0).reshape(2, 3), "pca_means": np.arange(4.0), "n": [1, "a"]}
    torch.save(obj, tmp_path / "a.pth")
    back = safe_torch_load(tmp_path / "a.pth")
    assert torch.equal(back["w"], obj["w"]) and np.array_equal(back["pca_means"], np.arange(4.0))
    assert back["n"] == [1, "a"]
    save_file({"w": obj["w"]}, tmp_path / "b.safetensors")
    assert torch.equal(safe_torch_load(tmp_path / "b.safetensors")["w"], obj["w"])


def test_key_report_against_a_hand_listing():
    own = {"a": torch.zeros(2), "b": torch.zeros(3, 1), "c": torch.zeros(1)}
    given = {"a": torch.zeros(2), "b": torch.zeros(1, 3), "d": torch.zeros(5)}
    report = KeyReport.compare(own, given, name=str.upper, given_word="file")
    assert report.missing == ["C"] and report.unexpected == ["D"]
    assert report.mismatched == ["B: file (1, 3) vs model (3, 1)"]
    assert not report.ok
    assert report.message("x.pth does not fit:", "rebuild it") == (
        "x.pth does not fit:\n  missing 1: C\n  unexpected 1: D\n"
        "  shape mismatches 1: B: file (1, 3) vs model (3, 1)\n  rebuild it"
    )
    with pytest.raises(ValueError, match="x.pth does not fit"):
        report.check("x.pth does not fit:")
    assert KeyReport.compare(own, dict(own)).ok
    many = KeyReport.compare({f"k{i}": torch.zeros(1) for i in range(13)}, {})
    assert many.message("h").endswith("k9, ... (3 more)")
