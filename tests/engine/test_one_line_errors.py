"""Bad flags and broken files end test.sh / train.sh with one line, no traceback
(docs/RELIABILITY.md, "Errors"), before any data or model is built, leaving no run folder;
a full disk while saving keeps the previous checkpoint."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from avsbench import state_dicts
from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.engine import setup
from tests.engine.engine_helpers import tiny_flags


def _test_flags(root: Path, logs: Path, weights: Path | str, *extra: str) -> list[str]:
    flags = ["--synthetic", "--data_root", root, "--weights", weights, "--image_size", 64,
             "--num_workers", 0, "--device", "cpu", "--log_dir", logs, *extra]  # fmt: skip
    return [str(f) for f in flags]


def _one_line_error(capsys, status: int, expected: str, code: int = 2) -> str:
    err = capsys.readouterr().err
    assert status == code, err
    assert "Traceback" not in err and expected in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def no_data_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data were built before the flags were checked")

    monkeypatch.setattr(setup, "build_datasets", refuse)


@pytest.mark.parametrize("kind", ["folder", "empty", "text", "unreadable"])
def test_bad_weights_files(tmp_path, s4_toy, capsys, monkeypatch, no_data_built, kind):
    weights = tmp_path / "w.pth"
    expected = {
        "folder": "it is a folder",
        "empty": "the file is empty",
        "text": "it is a text file",
        "unreadable": "the file cannot be read (Permission denied)",
    }[kind]
    if kind == "folder":
        weights.mkdir()
    elif kind == "text":
        weights.write_text("error: 101. not found\n")
    else:
        weights.write_bytes(b"" if kind == "empty" else b"PK\x03\x04 weights")
    if kind == "unreadable":  # as root, chmod 000 would not stop the read: the OS's error

        def denied(path, *args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

        monkeypatch.setattr(state_dicts, "open", denied, raising=False)
    logs = tmp_path / "logs"
    status = cmd_test.main("s4", _test_flags(s4_toy, logs, weights))
    _one_line_error(capsys, status, f"avsbench: cannot read --weights file {weights}: {expected}")
    assert not logs.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu(tmp_path, s4_toy, capsys, no_data_built):
    status = cmd_test.main("s4", _test_flags(s4_toy, tmp_path, "w.pth", "--device", "cuda"))
    _one_line_error(capsys, status, "--device cuda: CUDA is not available on this machine")
    status = cmd_train.main("s4", tiny_flags(s4_toy, tmp_path, device="cuda"))
    _one_line_error(capsys, status, "--device cuda: CUDA is not available on this machine")
    status = cmd_train.main("s4", tiny_flags(s4_toy, tmp_path, device="cude"))
    _one_line_error(capsys, status, "cude")


@pytest.mark.parametrize("name", ["a/b", "../up", "..", "a\\b"])
def test_session_name_with_a_path_separator(tmp_path, s4_toy, capsys, no_data_built, name):
    status = cmd_train.main("s4", tiny_flags(s4_toy, tmp_path / "logs", session_name=name))
    _one_line_error(capsys, status, "--session_name must be a plain name")
    ckpt = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(1)}, ckpt)
    status = cmd_test.main("s4", _test_flags(s4_toy, tmp_path / "logs", ckpt, "--session_name",
                                             name))  # fmt: skip
    _one_line_error(capsys, status, "--session_name must be a plain name")
    assert not (tmp_path / "logs").exists() and not (tmp_path / "up").exists()


def test_read_only_log_folder(tmp_path, s4_toy, capsys, monkeypatch):
    logs = tmp_path / "read_only"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # as root, chmod 0555 would not stop mkdir
        if self.is_relative_to(logs):
            raise PermissionError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    status = cmd_train.main("s4", tiny_flags(s4_toy, logs))
    err = _one_line_error(capsys, status, "cannot write the run folder")
    assert "Read-only file system; pass --log_dir a folder you can write to" in err


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, s4_toy, capsys,
                                                             monkeypatch):  # fmt: skip
    from avsbench.engine import checkpoint as ckpt_io

    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(getattr(f, "name", f))
        if isinstance(obj, dict) and obj.get("epoch") == 1:  # the second epoch's files
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_io.torch, "save", save)
    logs = tmp_path / "logs"
    status = cmd_train.main("s4", tiny_flags(s4_toy, logs, max_epoches=2, max_steps_per_epoch=1))
    err = _one_line_error(capsys, status, "disk full; the previous file is kept", code=1)
    assert "last.pth" in err or "S4_best.pth" in err
    (run,) = logs.iterdir()
    last = torch.load(run / "checkpoints" / "last.pth", weights_only=True)
    assert last["epoch"] == 0  # epoch 1's checkpoint, whole
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["S4_best.pth", "last.pth"]
