"""The one atomic writer: permissions, no leftovers, the old file kept on failure, JSON and
.npy round trips."""

import errno
import os
import stat

import numpy as np
import pytest

from avsbench.fileio import (
    WriteError,
    atomic_save_npy,
    atomic_write,
    atomic_write_all,
    atomic_write_json,
)


def test_atomic_write_gives_umask_permissions_and_no_leftovers(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"abc"))
    finally:
        os.umask(old)
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone would give 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_write_json_is_atomic(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1.5})
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "a": 1.5\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_npy_round_trip_without_pickles(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    path = atomic_save_npy(tmp_path / "sub" / "e.npy", emb, durable=False)
    assert np.array_equal(np.load(path, allow_pickle=False), emb)
    assert [p.name for p in path.parent.iterdir()] == ["e.npy"]
    with pytest.raises(ValueError, match="pickle"):
        atomic_save_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "o.npy").exists()


def test_inside_refuses_every_way_out(tmp_path):
    from avsbench.fileio import OutsideFolderError, inside

    root = tmp_path / "run"
    root.mkdir()
    assert inside(root, "cat", "vid", "vid_1.png") == root / "cat" / "vid" / "vid_1.png"
    assert inside(root, "", "vid.png") == root / "vid.png"  # MS3: no category level
    (root / "link").symlink_to(tmp_path)
    for parts in (("/etc", "x.png"), ("..", "x.png"), ("a/../../x.png",), ("link", "x.png")):
        with pytest.raises(OutsideFolderError, match="outside"):
            inside(root, *parts)


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    import errno

    from avsbench.fileio import WriteError, atomic_write

    target = tmp_path / "last.pth"
    target.write_bytes(b"previous")

    def full(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as info:
        atomic_write(target, full)
    assert str(info.value) == f"cannot write {target}: disk full; the previous file is kept"
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [target]


def test_atomic_write_all_writes_every_file_or_none(tmp_path):
    kept, new_dir = tmp_path / "kept.bin", tmp_path / "new" / "deeper"
    kept.write_bytes(b"old")

    def disk_full(tmp):
        tmp.write_bytes(b"ha")
        raise OSError(errno.ENOSPC, "No space left on device")

    writes = {kept: lambda tmp: tmp.write_bytes(b"new"), new_dir / "b.bin": disk_full}
    with pytest.raises(WriteError, match=r"b\.bin: disk full"):
        atomic_write_all(writes)
    assert kept.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin"]  # no temporary, no folder

    writes[new_dir / "b.bin"] = lambda tmp: tmp.write_bytes(b"b")
    assert atomic_write_all(writes) == [kept, new_dir / "b.bin"]
    assert kept.read_bytes() == b"new" and (new_dir / "b.bin").read_bytes() == b"b"
    assert sorted(p.name for p in new_dir.iterdir()) == ["b.bin"]


# the message torch.save raises when its zip writer fails on a Python file (a full disk),
# copied from a run on a full tmpfs
TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def test_torch_writer_error_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """PyTorch's own RuntimeError (no OSError behind it) is a WriteError too."""
    from avsbench.engine import checkpoint as ckpt_io
    from avsbench.fileio import WriteError

    target = tmp_path / "last.pth"
    target.write_bytes(b"previous")

    def save(obj, f, *args, **kwargs):
        f.write(b"half")
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(ckpt_io.torch, "save", save)
    with pytest.raises(WriteError) as info:
        ckpt_io.atomic_save({"epoch": 1}, target)
    assert str(info.value) == (
        f"cannot write {target}: the disk is full or the folder is not writable "
        f"(PyTorch: {TORCH_FULL_DISK}); the previous file is kept"
    )
    assert target.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [target]


def test_checkpoint_on_a_real_full_disk_keeps_the_previous_file(tmp_path):
    """torch.save on a real full tmpfs (2 MB): one-line WriteError saying the disk is full,
    the previous checkpoint loads as before, no temporary file is left."""
    import errno

    import torch

    from avsbench.engine.checkpoint import atomic_save
    from avsbench.fileio import WriteError
    from tests.mounts import tmpfs

    with tmpfs(tmp_path / "disk", "2m") as disk:
        target = disk / "last.pth"
        atomic_save({"epoch": 0, "w": torch.arange(10.0)}, target)
        before = target.read_bytes()
        with pytest.raises(WriteError) as info:
            atomic_save({"epoch": 1, "w": torch.zeros(1_000_000)}, target)  # 4 MB
        message = str(info.value)
        assert message == f"cannot write {target}: disk full; the previous file is kept"
        assert info.value.errno == errno.ENOSPC and "\n" not in message
        assert target.read_bytes() == before and sorted(os.listdir(disk)) == ["last.pth"]
        assert torch.load(target, weights_only=True)["epoch"] == 0
