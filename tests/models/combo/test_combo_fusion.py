"""COMBO's two published quirks against independent loops: the bilateral attention normalises
over the pixels in both directions, and the audio reaches the queries through a reshape that
mixes frames (per clip at test time, over the whole batch in training); padding frames are
not decoded."""

from __future__ import annotations

import pytest
import torch

from avsbench.models.combo.fusion import AVFuse
from avsbench.models.combo.model import audio_queries, build_combo
from avsbench.models.mask2former.positions import normalized_sine_positions

TINY = dict(
    num_queries=8, hidden_dim=32, decoder_layers=2, encoder_layers=1, heads=4, points=2,
    decoder_ffn_dim=24, encoder_ffn_dim=24, audio_hidden_dim=16,
)  # fmt: skip


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def test_bilateral_attention_matches_a_loop_over_frames_heads_and_pixels():
    fuse = AVFuse("MHA-B", visual_dim=32, audio_dim=12, heads=4).eval()
    _randomise(fuse)
    n, c, h, w = 2, 32, 3, 4
    mask_features = torch.randn(n, c, h, w)
    audio = torch.randn(n, 1, 12)
    visual, new_audio = fuse(mask_features, audio)

    block, attn = fuse.b_attn, fuse.b_attn.attn_list[0]
    pos = normalized_sine_positions(h, w, c // 2).flatten(1).t()  # [HW, C]
    d = 32 // 4
    for i in range(n):
        v = mask_features[i].flatten(1).t() + fuse.level_embed.weight[0]  # [HW, C]
        v = block.layer_norm_v_list[0](v)
        a = block.layer_norm_a_list[0](audio[i, 0])  # [A]
        q = attn.v_proj(v + pos) * d**-0.5
        k = attn.a_proj(a + fuse.audio_pos.weight[0])
        values_v, values_a = attn.values_v_proj(v), attn.values_a_proj(a)
        out_v, out_a = torch.zeros(h * w, 32), torch.zeros(32)
        for head in range(4):
            cols = slice(head * d, (head + 1) * d)
            scores = torch.stack([q[p, cols] @ k[cols] for p in range(h * w)])  # [HW]
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()  # over the pixels, in both directions
            for p in range(h * w):
                out_v[p, cols] = weights[p] * values_a[cols]
                out_a[cols] += weights[p] * values_v[p, cols]
        expected_v = v + block.gamma_v_list[0] * attn.out_v_proj(out_v)
        expected_a = a + block.gamma_a * attn.out_a_proj(out_a)
        torch.testing.assert_close(visual[i].flatten(1).t(), expected_v, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(new_audio[i, 0], expected_a, atol=1e-5, rtol=1e-5)


def test_no_fusion_adds_the_level_embedding_only():
    fuse = AVFuse("MHA-None", visual_dim=32, audio_dim=12)
    _randomise(fuse)
    mask_features, audio = torch.randn(3, 32, 2, 2), torch.randn(3, 1, 12)
    visual, same_audio = fuse(mask_features, audio)
    expected = mask_features + fuse.level_embed.weight[0].view(1, 32, 1, 1)
    assert torch.equal(visual, expected) and same_audio is audio
    assert not hasattr(fuse, "b_attn")


def test_audio_reaches_query_q_of_frame_b_from_frame_q_times_n_plus_b_over_q():
    audio = torch.arange(10.0)[:, None].expand(10, 3)  # frame i's audio is i
    for groups in ([5, 5], [10], [3, 7]):
        got = audio_queries(audio, 100, groups)  # [Q, 10, 3]
        start = 0
        for g in groups:
            for q in range(100):
                for b in range(g):
                    assert got[q, start + b, 0] == start + (q * g + b) // 100
            start += g
    # one clip of 5 (the published test): query q takes frame q // 20, for every frame
    clip = audio_queries(audio[:5], 100, [5])
    assert torch.equal(clip[:, 3, 0], torch.arange(100.0) // 20)


def test_clips_mix_in_training_and_stay_apart_at_test_time():
    model = build_combo("s4", "resnet18", **TINY)
    model.sem_seg_head.fusion_module.b_attn.attn_list[0].dropout = 0.0  # deterministic
    gen = torch.Generator().manual_seed(0)
    frames, maskige = torch.randn(10, 3, 64, 64, generator=gen), torch.randn(10, 3, 64, 64)
    audio = torch.randn(10, 128, generator=gen)
    other = audio.clone()
    other[5:] = torch.randn(5, 128, generator=gen)  # the second clip hears something else
    assert model.quirk_groups(10) == [10]  # training: the whole batch
    with torch.no_grad():
        train_a = model(frames, audio, maskige=maskige).pred_logits
        train_b = model(frames, other, maskige=maskige).pred_logits
        model.eval()
        assert model.quirk_groups(10) == [5, 5]  # test: per clip of 5
        test_a = model(frames, audio, maskige=maskige).pred_logits
        test_b = model(frames, other, maskige=maskige).pred_logits
    assert not torch.allclose(train_a[:5], train_b[:5])  # clip 1's audio reached clip 0
    assert torch.equal(test_a[:5], test_b[:5])  # not at test time


def test_the_clip_variant_keeps_clips_apart_in_training_too():
    """train_audio_groups="clip": in training (dropout off) clip 0's predictions do not
    depend on clip 1's audio, and they equal clip 0 decoded alone."""
    model = build_combo("s4", "resnet18", train_audio_groups="clip", **TINY)
    model.sem_seg_head.fusion_module.b_attn.attn_list[0].dropout = 0.0
    model.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    gen = torch.Generator().manual_seed(0)
    frames, maskige = torch.randn(10, 3, 64, 64, generator=gen), torch.randn(10, 3, 64, 64)
    audio = torch.randn(10, 128, generator=gen)
    other = audio.clone()
    other[5:] = torch.randn(5, 128, generator=gen)
    assert model.training and model.quirk_groups(10) == [5, 5]
    with torch.no_grad():
        a = model(frames, audio, maskige=maskige).pred_logits
        b = model(frames, other, maskige=maskige).pred_logits
        alone = model(frames[:5], audio[:5], maskige=maskige[:5]).pred_logits
    torch.testing.assert_close(a[:5], b[:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[:5], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="train_audio_groups"):
        build_combo("s4", "resnet18", train_audio_groups="frame", **TINY)


def test_padding_frames_are_not_decoded():
    model = build_combo("avss", "resnet18", frames_per_clip=4, **TINY).eval()
    gen = torch.Generator().manual_seed(1)
    frames, maskige = torch.randn(8, 3, 64, 64, generator=gen), torch.randn(8, 3, 64, 64)
    audio = torch.randn(8, 128, generator=gen)
    valid = torch.tensor([1, 1, 1, 0, 1, 1, 0, 0.0])
    assert model.quirk_groups(valid) == [3, 2]
    rows = valid.bool()
    with torch.no_grad():
        out = model(frames, audio, valid, maskige=maskige)
        first = model(frames[:3], audio[:3], maskige=maskige[:3])  # 3 frames: one group
    assert out.logits.shape == (8, 71, 64, 64)
    assert torch.all(out.logits[~rows] == 0) and torch.all(out.pred_masks[~rows] == 0)
    torch.testing.assert_close(out.pred_logits[:3], first.pred_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits[:3], first.logits, atol=1e-5, rtol=1e-5)
