"""`avsbench download` against a local hub (tests/zoo/hub_server.py): the file arrives whole,
resumed after dropped connections, verified, recorded, found by name; corrupt files, wrong
checksums, files of another architecture and files changed after download are refused and
kept aside, never used; nothing of the user's is deleted."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from avsbench.zoo import available, download, resolve_weights, store
from avsbench.zoo.store import ZooError
from tests.zoo.conftest import GOOD, REPO, row
from tests.zoo.hub_server import HubServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def models(tmp_path):
    return tmp_path / "models"


def rejected_files(tmp_path):
    folder = models(tmp_path) / store.REJECTED_DIR
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_download_verifies_records_and_resolves(hub, tiny_files, tmp_path):
    path = download("tiny-s4-r18", quiet=True)
    assert path == models(tmp_path) / "tiny-s4-r18.pth"
    assert path.read_bytes() == tiny_files["good"]
    record = json.loads((models(tmp_path) / store.RECORD_FILE).read_text())
    entry = record["files"]["tiny-s4-r18"]
    assert entry["sha256"] == hashlib.sha256(tiny_files["good"]).hexdigest()
    assert entry["size"] == len(tiny_files["good"]) and entry["file"] == "tiny-s4-r18.pth"
    assert "official_avsegformer" in entry["verified"]
    assert resolve_weights("tiny-s4-r18") == path
    assert available() == [("tiny-s4-r18", path, store.by_name("tiny-s4-r18"))]
    assert not (models(tmp_path) / store.PARTIAL_DIR / "tiny-s4-r18").exists()
    gets = len(hub.gets())
    assert download("tiny-s4-r18", quiet=True) == path  # present and verified: no fetch
    assert len(hub.gets()) == gets


def test_published_checksum_and_size_are_checked(hub, tiny_files, tmp_path):
    assert download("tiny-published-sha", quiet=True).read_bytes() == tiny_files["good"]
    with pytest.raises(ZooError, match="is not the published 0000"):
        download("tiny-wrong-sha", quiet=True)
    assert not (models(tmp_path) / "tiny-wrong-sha.pth").exists()
    (aside,) = rejected_files(tmp_path)
    assert aside.name.startswith("tiny-wrong-sha-") and aside.read_bytes() == tiny_files["good"]
    with pytest.raises(ZooError, match="not downloaded.*avsbench download tiny-wrong-sha"):
        resolve_weights("tiny-wrong-sha")


def test_dropped_connections_resume_to_the_right_bytes(hub, tiny_files, tmp_path, monkeypatch):
    """huggingface_hub writes whole chunks (10 MB; 64 KiB here, for a 1.2 MB file) and
    resumes after the last one written: 300 000 bytes then a drop leave 4 chunks."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 65536)
    hub.state.drop_after, hub.state.drops = 300_000, 2
    path = download("tiny-s4-r18", quiet=True)
    assert path.read_bytes() == tiny_files["good"]
    ranges = [rng for url, rng in hub.gets() if url.endswith(GOOD)]
    assert ranges == [None, f"bytes={4 * 65536}-", f"bytes={8 * 65536}-"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tiny-corrupt", "tiny-corrupt file .* (cannot|not)"),
        ("tiny-missing-key", "missing 1: head.transformer.decoder"),
        ("tiny-wrong-arch", "holds a avsegformer/s4/resnet18 model, but tiny-wrong-arch is "
                            "avsegformer/s4/pvt_v2_b5"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_and_kept_aside(hub, tiny_files, tmp_path, name, message):
    with pytest.raises(ZooError, match=message) as caught:
        download(name, quiet=True)
    assert "kept aside in" in str(caught.value) and "\n" not in str(caught.value)
    assert not (models(tmp_path) / f"{name}.pth").exists()
    (aside,) = rejected_files(tmp_path)
    served = {"tiny-corrupt": "corrupt", "tiny-missing-key": "missing_key"}.get(name, "good")
    assert aside.read_bytes() == tiny_files[served]
    assert available() == []


def test_file_not_upstream_names_the_unverified_row(hub, tmp_path):
    with pytest.raises(ZooError, match="s4/absent.pth is not in .*inferred file name"):
        download("tiny-not-upstream", quiet=True)


def test_a_file_changed_after_download_is_refused_then_replaced(hub, tiny_files, tmp_path):
    path = download("tiny-s4-r18", quiet=True)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="changed since it was verified.*avsbench download"):
        resolve_weights("tiny-s4-r18")
    assert download("tiny-s4-r18", quiet=True).read_bytes() == tiny_files["good"]
    (aside,) = rejected_files(tmp_path)
    assert aside.read_bytes() == bytes(data)  # the changed file is kept, not deleted
    assert resolve_weights("tiny-s4-r18") == path


def test_recorded_checksum_is_checked_on_a_new_download(hub, tiny_files, tmp_path):
    path = download("tiny-s4-r18", quiet=True)
    path.unlink()
    hub.add("tester/tiny-avs", "main", GOOD, tiny_files["other"])  # upstream changed
    with pytest.raises(ZooError, match="differs from .* recorded .*--refresh"):
        download("tiny-s4-r18", quiet=True)
    assert not path.exists()
    assert download("tiny-s4-r18", quiet=True, refresh=True).read_bytes() == tiny_files["other"]
    record = store.read_record(models(tmp_path))["tiny-s4-r18"]
    assert record["sha256"] == hashlib.sha256(tiny_files["other"]).hexdigest()


def test_user_files_are_listed_and_never_deleted(hub, tiny_files, tmp_path):
    folder = models(tmp_path)
    folder.mkdir()
    (folder / "mine.pth").write_bytes(b"my own checkpoint")
    (folder / "tiny-s4-r18.pth").write_bytes(b"not a checkpoint")  # at the zoo path
    (folder / "notes.txt").write_text("not listed")
    with pytest.raises(ZooError, match="not verified by avsbench download"):
        resolve_weights("tiny-s4-r18")
    assert download("tiny-s4-r18", quiet=True).read_bytes() == tiny_files["good"]
    (aside,) = rejected_files(tmp_path)
    assert aside.read_bytes() == b"not a checkpoint"
    assert (folder / "mine.pth").read_bytes() == b"my own checkpoint"
    listed = [(label, path.name, entry is None) for label, path, entry in available()]
    assert listed == [("tiny-s4-r18", "tiny-s4-r18.pth", False), ("mine.pth", "mine.pth", True)]


def test_a_hand_downloaded_file_is_verified_and_copied(hub, tiny_files, tmp_path):
    own = tmp_path / "from_drive.pth"
    own.write_bytes(tiny_files["good"])
    models(tmp_path).mkdir()
    (models(tmp_path) / "tiny-drive.pth").write_bytes(b"already there")  # not replaced
    path = download("tiny-drive", quiet=True, from_file=own)
    assert path.read_bytes() == tiny_files["good"] and own.read_bytes() == tiny_files["good"]
    assert hub.gets() == []  # nothing fetched
    (aside,) = rejected_files(tmp_path)
    assert aside.read_bytes() == b"already there"
    with pytest.raises(ZooError, match="tiny-missing-key file .*missing 1.*kept aside"):
        own.write_bytes(tiny_files["missing_key"])
        download("tiny-missing-key", quiet=True, from_file=own)
    assert own.read_bytes() == tiny_files["missing_key"]  # the user's file is left as it was


def test_google_drive_rows_go_through_gdown_and_resume(hub, tiny_files, tmp_path):
    """gdown takes a plain URL as it takes a Drive one (minus Drive's confirmation page);
    it writes 512 KiB chunks: 600 000 bytes then a drop leave one, which the next run
    continues from."""
    hub.state.drop_after, hub.state.drops = 600_000, 1
    with pytest.raises(ZooError, match="failed .*kept in .*resumes from it"):
        download("tiny-drive", quiet=True)
    assert not (models(tmp_path) / "tiny-drive.pth").exists()
    (partial,) = (models(tmp_path) / store.PARTIAL_DIR / "tiny-drive").glob("*.part")
    assert partial.read_bytes() == tiny_files["good"][: 512 * 1024]
    path = download("tiny-drive", quiet=True)  # the next run continues the partial file
    assert path.read_bytes() == tiny_files["good"]
    # the next run's first GET only reads the headers (gdown closes it), then it resumes
    assert [rng for _, rng in hub.gets()] == [None, None, f"bytes={512 * 1024}-"]


def test_path_values_stay_paths(hub, tmp_path, monkeypatch):
    assert resolve_weights("some/file.pth") == store.Path("some/file.pth")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-s4-r18").write_bytes(b"x")  # a file of that name wins
    assert resolve_weights("tiny-s4-r18") == store.Path("tiny-s4-r18")
    with pytest.raises(ZooError, match="no model called 'nope'"):
        store.by_name("nope")


KILLED_DOWNLOAD = f"""
import sys
sys.path.insert(0, {ROOT!r})
import huggingface_hub.constants as hf_constants
hf_constants.DOWNLOAD_CHUNK_SIZE = 65536
from avsbench.zoo import download, store
from avsbench.zoo.table import ZooEntry
store.ZOO = (ZooEntry("tiny-s4-r18", "avsegformer", "s4", "resnet18", (), "", "huggingface",
                      "https://example.invalid", "", repo_id={REPO!r}, upstream_file={GOOD!r}),)
download("tiny-s4-r18", quiet=True)
"""


@pytest.mark.slow
def test_a_killed_download_resumes_in_the_next_run(hub, tiny_files, tmp_path, monkeypatch):
    """A download process killed (SIGKILL) mid-transfer leaves its partial file and no
    stale lock; the next run asks only for the bytes after the chunks written."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 65536)
    hub.state.stall_after = 300_000
    process = subprocess.Popen([sys.executable, "-c", KILLED_DOWNLOAD], env=os.environ.copy(),
                               stderr=subprocess.PIPE)  # fmt: skip
    partial_dir = models(tmp_path) / store.PARTIAL_DIR / "tiny-s4-r18"
    deadline = time.monotonic() + 60
    written = 0
    while written != 4 * 65536 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        written = sum(p.stat().st_size for p in partial_dir.rglob("*.incomplete"))
    process.kill()
    stderr = process.communicate(timeout=30)[1].decode()
    hub.state.release.set()
    assert written == 4 * 65536, stderr
    assert not (models(tmp_path) / "tiny-s4-r18.pth").exists()
    path = download("tiny-s4-r18", quiet=True)
    assert path.read_bytes() == tiny_files["good"]
    assert [rng for url, rng in hub.gets() if url.endswith(GOOD)] == [None, f"bytes={4 * 65536}-"]


def test_large_files_come_through_the_cdn_redirect(hub, tiny_files, tmp_path, monkeypatch):
    """The Hub answers a large file's resolve URL with a 302 to a CDN (another origin)
    carrying X-Linked-Etag / X-Linked-Size: the bytes come from the CDN, nothing else is
    asked of the Hub, and no Authorization header goes anywhere."""
    with HubServer() as cdn:
        hub.add(REPO, "main", "s4/lfs.pth", tiny_files["good"], cdn=cdn)
        monkeypatch.setattr(store, "ZOO", (*store.ZOO, row("tiny-lfs", "s4/lfs.pth")))
        assert download("tiny-lfs", quiet=True).read_bytes() == tiny_files["good"]
        sha256 = hashlib.sha256(tiny_files["good"]).hexdigest()
        resolve = f"/{REPO}/resolve/main/s4/lfs.pth"
        assert [(m, p) for m, p, _ in hub.state.log] == [("HEAD", resolve)]
        assert cdn.gets() == [(f"/files/lfs-{sha256}", None)]
        assert not hub.state.authorizations and not cdn.state.authorizations


def test_a_full_disk_and_a_read_only_folder_are_one_line_errors(hub, tiny_files, tmp_path):
    """Real file systems (tests/mounts.py): a 1 MiB tmpfs cannot hold the 1.2 MB file; a
    read-only mount cannot take a download at all."""
    from tests.mounts import tmpfs

    with tmpfs(models(tmp_path), "1m"):
        with pytest.raises(ZooError, match="No space left on device") as caught:
            download("tiny-s4-r18", quiet=True)
        assert "\n" not in str(caught.value)
        assert not (models(tmp_path) / "tiny-s4-r18.pth").exists()
        assert not (models(tmp_path) / store.RECORD_FILE).exists()
    with tmpfs(models(tmp_path), "1m", read_only=True):
        with pytest.raises(ZooError, match="cannot create the models folder .*--models_dir"):
            download("tiny-s4-r18", quiet=True)
