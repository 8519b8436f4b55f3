"""Frozen VGGish embeddings with the per-clip cache: same values, VGGish runs once per clip."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from avsbench.engine.embeddings import (
    AudioEmbedder,
    clip_keys,
    content_digest,
    vggish_fingerprint,
)


class TinyAudioNet(nn.Module):
    """A stand-in for VGGish: [N, 1, 96, 64] -> [N, 128], counting its calls."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(96 * 64, 128)
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        return self.proj(x.flatten(1))


def _batch(ids, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(len(ids), 5, 1, 96, 64, generator=g),
        "video_id": list(ids),
        "category": ["cat"] * len(ids),
    }


def test_no_cache_is_plain_vggish():
    net = TinyAudioNet()
    batch = _batch(["a", "b"])
    emb = AudioEmbedder(net, "cpu")(batch["audio"])
    expected = net.proj(batch["audio"].reshape(10, -1))
    assert torch.allclose(emb, expected)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert not emb.requires_grad  # frozen: no graph through VGGish


def test_memory_cache_runs_vggish_once_per_clip():
    net = TinyAudioNet()
    embedder = AudioEmbedder(net, "cpu", cache="memory")
    first = _batch(["a", "b"])
    out1 = embedder(first["audio"], clip_keys("s4/train", first))
    assert net.calls == 10
    # "b" again (same audio) with a new clip "c": only "c" goes through the network
    second = {k: v for k, v in _batch(["c"], seed=1).items()}
    both = {
        "audio": torch.cat([first["audio"][1:], second["audio"]]),
        "video_id": ["b", "c"],
        "category": ["cat", "cat"],
    }
    out2 = embedder(both["audio"], clip_keys("s4/train", both))
    assert net.calls == 15
    assert torch.equal(out2[:5], out1[5:])
    plain = AudioEmbedder(TinyAudioNet(), "cpu")(both["audio"])
    assert torch.allclose(out2, plain, atol=1e-6)
    with pytest.raises(ValueError, match="one key per clip"):
        embedder(both["audio"], None)


def test_disk_cache_survives_a_new_process_and_tracks_the_weights(tmp_path):
    batch = _batch(["a", "b"])
    keys = clip_keys("ms3/val", batch)
    out = AudioEmbedder(TinyAudioNet(), "cpu", cache=tmp_path)(batch["audio"], keys)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npy"))
    fp = vggish_fingerprint(TinyAudioNet())
    digests = [content_digest(batch["audio"][i]) for i in range(2)]
    assert files == [f"{fp}/ms3/val/cat/a-{digests[0]}.npy", f"{fp}/ms3/val/cat/b-{digests[1]}.npy"]

    fresh = TinyAudioNet()
    again = AudioEmbedder(fresh, "cpu", cache=tmp_path)(batch["audio"], keys)
    assert fresh.calls == 0 and torch.equal(again, out)  # read back, VGGish not run

    other = TinyAudioNet(seed=1)  # other weights: another folder, recomputed
    assert vggish_fingerprint(other) != fp
    AudioEmbedder(other, "cpu", cache=tmp_path)(batch["audio"], keys)
    assert other.calls == 10


def test_clip_keys_follow_swapped_audio():
    batch = {"video_id": ["v1", "v2"], "category": ["", "x"]}
    assert clip_keys("s4/test", batch) == ["s4/test/_/v1", "s4/test/x/v2"]
    batch.update(audio_id=["v2", "v1"], audio_category=["x", ""])
    assert clip_keys("s4/test", batch) == ["s4/test/x/v2", "s4/test/_/v1"]


def test_a_changed_log_mel_is_recomputed_not_served_stale(tmp_path, s4_toy):
    """Two runs over the same data with --cache_audio_embeddings DIR; between them one
    log-mel file changes: the second run recomputes that clip (and only that one) and gives
    the embeddings of the new content."""
    from avsbench.data import audio as A
    from avsbench.data.datasets import build_dataset

    data = tmp_path / "data"
    shutil.copytree(s4_toy, data)
    cache = tmp_path / "cache"

    def run(net):
        dataset = build_dataset("s4", data, "train", image_size=32)
        batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
        embedder = AudioEmbedder(net, "cpu", cache=cache)
        return embedder(batch["audio"], clip_keys("s4/train", batch)), dataset

    first, dataset = run(TinyAudioNet())
    name, category = dataset.rows[1]
    log_mel_path = dataset.layout.log_mel("train", category, name)
    changed = A.load_log_mel(log_mel_path) * 0.5 + 1.0
    if log_mel_path.with_suffix(".npy").is_file():
        A.save_log_mel_npy(log_mel_path, changed)
    else:
        A.save_log_mel_pkl(log_mel_path, changed)

    net = TinyAudioNet()
    second, _ = run(net)
    t = 5
    assert net.calls == t  # the changed clip only
    fresh = TinyAudioNet()(torch.from_numpy(changed).float())
    assert torch.allclose(second[t : 2 * t], fresh, atol=1e-6)
    assert not torch.allclose(second[t : 2 * t], first[t : 2 * t])
    assert torch.equal(second[:t], first[:t]) and torch.equal(second[2 * t :], first[2 * t :])


@pytest.fixture
def two_threads():
    """Two CPU threads: there the VGGish kernels round differently for another number of
    rows (1.4e-5 between a clip alone and in a batch of two, measured 2026-12-02)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_cached_embedding_does_not_depend_on_the_batch_it_came_in(two_threads):
    """What exact resume needs (tests/engine/test_exact_resume.py): a resumed run starts with
    an empty memory cache and meets its clips in other batches than the run that filled the
    cache; every clip's embedding must still be the same bit for bit."""
    from avsbench.config import ModelConfig
    from avsbench.models.backbones.vggish import build_vggish

    # the synthetic runs' VGGish: deterministic init
    vggish = build_vggish(ModelConfig(method="tpavi"))
    batch = _batch(["a", "b", "c"], seed=2)
    audio, keys = batch["audio"], clip_keys("s4/train", batch)
    straight = AudioEmbedder(vggish, "cpu", cache="memory")
    filled = straight(audio[:2], keys[:2])  # a and b first met in one batch of two
    resumed = AudioEmbedder(vggish, "cpu", cache="memory")
    b_alone = resumed(audio[1:2], keys[1:2])  # b recomputed alone
    cb = resumed(audio[[2, 1]], [keys[2], keys[1]])  # c new, b from the cache
    t = 5
    assert torch.equal(b_alone, filled[t:])
    assert torch.equal(cb[t:], filled[t:])
    with torch.no_grad():  # each clip as VGGish gives it when it is alone in the batch
        expected = torch.cat([vggish(audio[i]) for i in (0, 1)])
    assert torch.equal(filled, expected)
    assert straight.vggish_runs == 2 and resumed.vggish_runs == 2
