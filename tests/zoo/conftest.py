"""Fixtures of the zoo tests: a tiny released-layout checkpoint, a local hub serving it, and a
test zoo table pointing at that hub (swapped in for the real one)."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest
import torch

from avsbench.zoo import store
from avsbench.zoo.table import GOOGLE_DRIVE, HUGGINGFACE, ZooEntry
from tests.zoo.hub_server import HubServer

REPO = "tester/tiny-avs"
GOOD = "s4/model_best.pth"


def official_bytes(seed: int = 0, drop: str | None = None) -> bytes:
    """A tiny AVSegFormer S4 (ResNet-18) in the published flat layout, VGGish included,
    written compactly (tests/state_dict_files.py): about 1.2 MB. `drop`: leave out the
    first key with this prefix (a file that misses a tensor)."""
    import avsbench
    from avsbench.models.backbones.vggish import VGGish
    from tests.models.avsegformer.avsegformer_helpers import TINY
    from tests.state_dict_files import compact_like

    torch.manual_seed(seed)
    model = avsbench.build_model("s4", "resnet18", method="avsegformer", **TINY)
    with torch.device("meta"):
        vggish_layout = VGGish().state_dict()
    state = compact_like(avsbench.to_official_state_dict(model, vggish_state=vggish_layout), seed)
    if drop is not None:
        del state[next(k for k in state if k.startswith(drop))]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_files() -> dict[str, bytes]:
    good = official_bytes(0)
    return {
        "good": good,
        "other": official_bytes(1),
        "missing_key": official_bytes(0, drop="head.transformer.decoder."),
        "corrupt": good[: len(good) // 2],
    }


def row(name: str, path: str, **changes) -> ZooEntry:
    base = ZooEntry(
        name=name,
        method="avsegformer",
        setting="s4",
        backbone="resnet18",
        published=(("miou_test_batch_2", 0.5), ("fscore_test_batch_2", 0.6)),
        protocol="test",
        host=HUGGINGFACE,
        source_url=f"https://example.invalid/{name}",
        license="test",
        repo_id=REPO,
        upstream_file=path,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def hub(tiny_files, tmp_path, monkeypatch):
    """The local hub with the test files, the test table swapped in, $HF_ENDPOINT and
    $AVSBENCH_MODELS pointing at the hub and a fresh models folder; no token is sent."""
    import huggingface_hub.constants as hf_constants

    with HubServer() as server:
        server.add(REPO, "main", GOOD, tiny_files["good"])
        server.add(REPO, "main", "s4/missing_key.pth", tiny_files["missing_key"])
        server.add(REPO, "main", "s4/corrupt.pth", tiny_files["corrupt"])
        drive_url = server.add_plain("tiny.pth", tiny_files["good"])
        good_sha = hashlib.sha256(tiny_files["good"]).hexdigest()
        table = (
            row("tiny-s4-r18", GOOD),
            row("tiny-published-sha", GOOD, sha256=good_sha, size=len(tiny_files["good"])),
            row("tiny-wrong-sha", GOOD, sha256="0" * 64),
            row("tiny-missing-key", "s4/missing_key.pth"),
            row("tiny-corrupt", "s4/corrupt.pth"),
            row("tiny-wrong-arch", GOOD, backbone="pvt_v2_b5"),
            row("tiny-not-upstream", "s4/absent.pth", note="inferred file name"),
            row("tiny-drive", None, host=GOOGLE_DRIVE, source_url=drive_url, repo_id=None),
        )
        monkeypatch.setattr(store, "ZOO", table)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "models"))
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server
        assert server.state.authorizations == []  # no token was ever sent
