"""What a method reads of the frozen VGGish (`MethodSpec.audio_input`): the 128-d embedding
or the conv map (VCT). The conv map reaches the model as [B*T, 12288], exactly
features(x) flattened in C-H-W order, through the same engine path and embedding cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avsbench import checkpoints
from avsbench import config as C
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.models import registry
from avsbench.models.backbones.vggish import VGGish, VGGishConvMap, build_vggish, for_audio_input


def _log_mel(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 96, 64, generator=torch.Generator().manual_seed(seed))


def test_conv_map_is_the_flattened_features():
    vggish = build_vggish(C.ModelConfig(method=registry.DEFAULT_METHOD))
    x = _log_mel(3)
    out = VGGishConvMap(vggish)(x)
    expected = vggish.features(x)  # [3, 512, 6, 4]
    assert out.shape == (3, 512 * 6 * 4)
    assert torch.equal(out.view(3, 512, 6, 4), expected)
    assert for_audio_input(vggish, "embedding") is vggish
    with pytest.raises(ValueError, match="unknown audio input 'mel'"):
        for_audio_input(vggish, "mel")


def test_engine_vggish_follows_the_method(monkeypatch, tmp_path):
    base = registry.METHODS[registry.DEFAULT_METHOD]
    conv = dataclasses.replace(base, name="convnet", audio_input="conv_map")
    monkeypatch.setitem(registry.METHODS, "convnet", conv)
    choice = checkpoints.VGGishChoice(source="random")
    cfg = registry.preset("s4", registry.DEFAULT_METHOD)
    plain = checkpoints.build_chosen_vggish(choice, cfg)
    conv_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method="convnet"))
    mapped = checkpoints.build_chosen_vggish(choice, conv_cfg)
    assert isinstance(plain, VGGish) and isinstance(mapped, VGGishConvMap)
    audio = _log_mel(10, seed=1).reshape(2, 5, 1, 96, 64)
    # the cache (one clip per VGGish call) stores and serves the conv map unchanged
    embedder = AudioEmbedder(mapped, "cpu", tmp_path / "cache")
    first = embedder(audio, ["s4/test/a/v1", "s4/test/a/v2"])
    again = AudioEmbedder(mapped, "cpu", tmp_path / "cache")(
        audio, ["s4/test/a/v1", "s4/test/a/v2"]
    )
    assert first.shape == (10, 12288)
    assert torch.equal(first, again)
    direct = plain.features(audio.reshape(10, 1, 96, 64)).flatten(1)
    torch.testing.assert_close(first, direct, rtol=0, atol=1e-4)
