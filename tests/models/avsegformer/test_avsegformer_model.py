"""AVSegFormer parts and assembly on tiny configurations (seconds on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

import avsbench
from avsbench.models.avsegformer import AVSegFormer
from avsbench.models.avsegformer.mixer import CrossModalMixer
from avsbench.models.avsegformer.transformer import reference_points
from avsbench.models.backbones.positions import sine_positional_encoding
from avsbench.models.contract import AVSOutput
from avsbench.models.tpavi.model import AVSModel
from tests.models.avsegformer.avsegformer_helpers import TINY


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return avsbench.build_model("avss", "resnet18", method="avsegformer", **TINY).eval()


def inputs(n, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.randn(n, 128, generator=gen)


def test_sine_positions_equal_the_formula():
    pos = sine_positional_encoding(3, 4, num_feats=6, temperature=100.0)
    assert pos.shape == (12, 3, 4)
    for y in range(3):
        for x in range(4):
            for k in range(6):
                period = 100.0 ** (2 * (k // 2) / 6)
                trig = math.sin if k % 2 == 0 else math.cos
                assert pos[k, y, x].item() == pytest.approx(trig((y + 1) / period), abs=1e-6)
                assert pos[6 + k, y, x].item() == pytest.approx(trig((x + 1) / period), abs=1e-6)


def test_reference_points_are_pixel_centres():
    refs = reference_points([(2, 3), (1, 1)], torch.device("cpu"))
    assert refs.shape == (1, 7, 1, 2)
    expected = [(0.5 / 3, 0.25), (1.5 / 3, 0.25), (2.5 / 3, 0.25)]
    expected += [(0.5 / 3, 0.75), (1.5 / 3, 0.75), (2.5 / 3, 0.75), (0.5, 0.5)]
    torch.testing.assert_close(refs[0, :, 0], torch.tensor(expected))


def test_mixer_equals_its_formula_and_takes_one_frame():
    torch.manual_seed(0)
    mixer = CrossModalMixer(embed_dim=8, num_heads=2)
    fmap, audio = torch.randn(3, 8, 2, 3), torch.randn(3, 1, 8)
    got = mixer(fmap, audio)
    for n in range(3):
        pixels = fmap[n].flatten(1).t()  # [6, 8]
        q = mixer.q_proj.weight @ audio[n, 0]
        k, v = (pixels @ mixer.kv_proj.weight.t()).split(8, dim=1)
        heads = []
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            attn = torch.softmax(k[:, sl] @ q[sl] / math.sqrt(4), 0)  # [6]
            heads.append(attn @ v[:, sl])
        gate = torch.sigmoid(mixer.proj(torch.cat(heads)))
        torch.testing.assert_close(got[n], fmap[n] * gate[:, None, None])
    torch.testing.assert_close(mixer(fmap[:1], audio[:1]), got[:1])  # B*T = 1 works


def test_outputs(tiny):
    frames, audio = inputs(4)
    with torch.no_grad():
        out = tiny(frames, audio)
    assert isinstance(out, AVSOutput)
    assert out.logits.shape == (4, 71, 64, 64)
    assert out.mask_feature.shape == (4, 64, 16, 16)
    assert not hasattr(out, "visual_maps")  # TPAVI's extras are not AVSegFormer's
    assert torch.isfinite(out.logits).all()


def test_frames_are_independent_and_one_frame_works(tiny):
    """Each frame's outputs are the same alone or in a batch (eval mode): no temporal mixing."""
    frames, audio = inputs(3)
    with torch.no_grad():
        batch = tiny(frames, audio)
        for i in range(3):
            alone = tiny(frames[i : i + 1], audio[i : i + 1])
            torch.testing.assert_close(alone.logits, batch.logits[i : i + 1], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(alone.mask_feature, batch.mask_feature[i : i + 1])


def test_frame_valid_zeros_padding_frames_only(tiny):
    frames, audio = inputs(4)
    valid = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        plain = tiny(frames, audio)
        masked = tiny(frames, audio, valid)
    assert not masked.logits[[1, 3]].any() and not masked.mask_feature[[1, 3]].any()
    torch.testing.assert_close(masked.logits[[0, 2]], plain.logits[[0, 2]])
    torch.testing.assert_close(masked.mask_feature[[0, 2]], plain.mask_feature[[0, 2]])


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = avsbench.build_model("s4", "resnet18", method="avsegformer", **TINY).train()
    frames, audio = inputs(2)
    out = model(frames, audio)
    (out.logits.square().mean() + out.mask_feature.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.head.encoder.layers[0].self_attn.sampling_offsets.weight.grad.any()


def test_backbone_freezing():
    model = avsbench.build_model("s4", "resnet18", method="avsegformer", **TINY)
    model.set_backbone_trainable(False)
    assert not any(p.requires_grad for p in model.visual.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.set_backbone_trainable(True)
    assert all(p.requires_grad for p in model.visual.parameters())


def test_published_sizes_by_default():
    model = avsbench.build_model("s4", "resnet18", method="avsegformer")
    head = model.head
    assert head.learnable_query.weight.shape == (300, 256)
    assert len(head.encoder.layers) == len(head.decoder.layers) == 6
    assert len(head.query_generator.layers) == 6
    assert head.encoder.layers[0].self_attn.attention_weights.out_features == 8 * 3 * 4
    assert head.encoder.layers[0].linear1.out_features == 2048
    assert head.query_generator.layers[0].ffn[0].out_features == 1024
    assert head.fc[-1].out_channels == 1
    assert head.encoder.layers[0].dropout1.p == 0.1
    assert head.query_generator.layers[0].self_attn.in_proj_bias is None  # bias-free
    assert head.decoder.layers[0].self_attn.in_proj_bias is not None


def test_settings_and_methods():
    for setting, classes in (("s4", 1), ("ms3", 1), ("avss", 71)):
        model = avsbench.build_model(setting, "resnet18", method="avsegformer", **TINY)
        assert isinstance(model, AVSegFormer) and model.head.fc[-1].out_channels == classes
    tpavi = avsbench.build_model("s4", "resnet18", decoder_channels=16)
    assert isinstance(tpavi, AVSModel)  # method="tpavi" stays the default
    with pytest.raises(ValueError, match=r"unknown method 'segformer'.*\[.*'avsegformer'.*'tpavi'"):
        avsbench.build_model("s4", "resnet18", method="segformer")
    with pytest.raises(ValueError, match="unknown setting"):
        avsbench.build_model("s5", "resnet18", method="avsegformer")
    with pytest.raises(ValueError, match="multiple of 32"):
        avsbench.build_model("s4", "resnet18", method="avsegformer", embed_dim=48)
    with pytest.raises(ValueError, match="encoder_layers must be >= 1"):
        avsbench.build_model("s4", "resnet18", method="avsegformer", encoder_layers=0)
    with pytest.raises(TypeError, match="tpavi_mode"):  # TPAVI's options are not AVSegFormer's
        avsbench.build_model("s4", "resnet18", method="avsegformer", tpavi_mode="dot")


def test_bad_inputs_are_refused(tiny):
    frames, audio = inputs(2)
    with pytest.raises(ValueError, match=r"audio_emb must be \[B\*T=2, D\]"):
        tiny(frames, audio[:1])
    with pytest.raises(ValueError, match=r"frame_valid must be \[B\*T=2\]"):
        tiny(frames, audio, torch.ones(3))
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny(torch.randn(2, 3, 48, 48), audio)
