"""The assembled model against a literal re-statement of the published forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avsbench.models import registry
from avsbench.models.contract import AVSOutput
from avsbench.models.registry import build_model, build_model_for
from avsbench.models.tpavi.model import AVSModel


def published_forward(model: AVSModel, dense_twin: AVSModel, frames, audio, mask=None):
    """The published `Pred_endecoder.forward` written out step by step, in-place ReLUs and
    all, on the tensors of `model` (TPAVI blocks of `dense_twin`: the N x N form)."""
    vv, va, window = model.tpavi_vv, model.tpavi_va, model.window_frames
    feats = model.visual(frames)
    maps = []
    for proj, x in zip(model.projections, feats):
        convs = proj.conv2d_list
        out = F.conv2d(x, convs[0].weight, convs[0].bias, padding=3, dilation=3)
        for conv, d in zip(convs[1:], (6, 12, 18)):
            out += F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d)
        maps.append(out)
    m = None if mask is None else mask.view(-1, 1, 1, 1)
    if m is not None:
        maps = [x * m for x in maps]
    audio_list = [None] * 4

    def pre(x):
        _, c, h, w = x.shape
        return x.reshape(-1, window, c, h, w).permute(0, 2, 1, 3, 4).contiguous()

    def post(x):
        _, c, _, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)

    for i in model.tpavi_stages:
        block = dense_twin.tpavi_blocks[str(i)]
        count, acc = 0, torch.zeros_like(maps[i])
        if vv:
            z, _ = block(pre(maps[i]))
            z = post(z) if m is None else post(z) * m
            acc += z
            count += 1
        if va:
            z, a = block(pre(maps[i]), audio.view(-1, window, audio.shape[-1]))
            z = post(z) if m is None else post(z) * m
            acc += z
            count += 1
            audio_list[i] = a
        acc /= count
        maps[i] = acc

    relu = nn.ReLU(inplace=True)

    def rcu(unit, x):
        out = relu(x)  # rectifies x itself
        out = F.conv2d(out, unit.conv1.weight, unit.conv1.bias, padding=1)
        out = relu(out)
        out = F.conv2d(out, unit.conv2.weight, unit.conv2.bias, padding=1)
        return out + x

    def fusion(block, *xs):
        output = xs[0]
        if len(xs) == 2:
            output += rcu(block.resConfUnit1, xs[1])
        output = rcu(block.resConfUnit2, output)
        return F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=True)

    paths = model.decoder.fusions
    d = fusion(paths[3], maps[3])
    for s in (2, 1, 0):
        if m is not None:
            d = d * m
        d = fusion(paths[s], d, maps[s])
    if m is not None:
        d = d * m
    head = model.decoder.output_conv
    pred = F.conv2d(d, head[0].weight, head[0].bias, padding=1)
    pred = F.interpolate(pred, scale_factor=2, mode="bilinear", align_corners=False)
    pred = F.relu(F.conv2d(pred, head[2].weight, head[2].bias, padding=1))
    pred = F.conv2d(pred, head[4].weight, head[4].bias)
    if m is not None:
        pred = pred * m
    return pred, maps, audio_list


def make_pair(setting, backbone="resnet18", channels=32, **kwargs):
    torch.manual_seed(0)
    model = build_model(setting, backbone, decoder_channels=channels, **kwargs)
    with torch.no_grad():  # a non-trivial TPAVI (the published init zeroes W_z's BN)
        for block in model.tpavi_blocks.values():
            block.W_z[1].weight.normal_(1.0, 0.5)
            block.W_z[1].bias.normal_(0.0, 0.5)
    twin = build_model(setting, backbone, decoder_channels=channels, tpavi_dense=True, **kwargs)
    twin.load_state_dict(model.state_dict())
    return model.eval(), twin.eval()


def assert_matches_published(model, twin, frames, audio, frame_valid=None, tol=1e-5):
    with torch.no_grad():
        out = model(frames, audio, frame_valid)
        masked_audio = audio if frame_valid is None else audio * frame_valid[:, None]
        pred, maps, audio_list = published_forward(model, twin, frames, masked_audio, frame_valid)
    assert isinstance(out, AVSOutput)
    scale = pred.abs().max()
    assert scale > 0
    assert (out.logits - pred).abs().max() <= tol * scale
    for got, ref in zip(out.visual_maps, maps):
        assert (got - ref).abs().max() <= tol * ref.abs().max()
    for s, (got, ref) in enumerate(zip(out.audio_maps, audio_list)):
        if s in model.tpavi_stages and model.tpavi_va:
            torch.testing.assert_close(got, ref.reshape(frames.shape[0], -1))
        else:
            assert got is None and ref is None
    return out


def test_s4_matches_published_forward():
    model, twin = make_pair("s4")
    gen = torch.Generator().manual_seed(1)
    frames, audio = torch.randn(5, 3, 64, 96, generator=gen), torch.randn(5, 128, generator=gen)
    out = assert_matches_published(model, twin, frames, audio)
    assert out.logits.shape == (5, 1, 64, 96)
    assert [tuple(v.shape) for v in out.visual_maps] == [
        (5, 32, 16, 24),
        (5, 32, 8, 12),
        (5, 32, 4, 6),
        (5, 32, 2, 3),
    ]
    assert all(v.min() >= 0 for v in out.visual_maps)  # rectified, as published


def test_avss_padding_vv_and_va_match_published_forward():
    model, twin = make_pair("avss", tpavi_vv=True, tpavi_va=True, tpavi_stages=(0, 2, 3))
    gen = torch.Generator().manual_seed(2)
    frames, audio = torch.randn(10, 3, 64, 64, generator=gen), torch.randn(10, 128, generator=gen)
    frame_valid = torch.tensor([1.0] * 7 + [0.0] * 3)
    out = assert_matches_published(model, twin, frames, audio, frame_valid)
    assert out.logits.shape == (10, 71, 64, 64)
    assert out.audio_maps[1] is None
    assert torch.count_nonzero(out.logits[7:]) == 0
    assert all(torch.count_nonzero(v[7:]) == 0 for v in out.visual_maps)
    # padding frames carry no audio: changing it changes nothing
    audio2 = audio.clone()
    audio2[7:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(model(frames, audio2, frame_valid).logits, out.logits)


def test_windows_are_independent():
    """AVSS 10-frame clips: TPAVI mixes frames only within each 5-frame window."""
    model, _ = make_pair("avss", tpavi_vv=True)
    frames, audio = torch.randn(10, 3, 64, 64), torch.randn(10, 128)
    with torch.no_grad():
        whole = model(frames, audio).logits
        second = model(frames[5:], audio[5:]).logits
        torch.testing.assert_close(whole[5:], second, rtol=1e-4, atol=1e-5)
        model.window_frames = 10  # one 10-frame window mixes the two halves
        assert not torch.allclose(model(frames, audio).logits[5:], second, rtol=1e-4, atol=1e-5)


def test_builder_defaults_and_choices():
    s4 = build_model("s4", "resnet18", decoder_channels=16)
    avss = build_model("avss", "resnet18", decoder_channels=16, tpavi_stages=(1,))
    assert s4.decoder.output_conv[4].out_channels == 1
    assert s4.tpavi_blocks["0"].align_channel.bias is not None
    assert avss.decoder.output_conv[4].out_channels == 71
    assert avss.tpavi_blocks["1"].align_channel.bias is None and avss.tpavi_stages == (1,)
    assert (
        build_model("ms3", "resnet18", decoder_channels=16, num_classes=3, align_bias=False)
        .tpavi_blocks["3"]
        .align_channel.bias
        is None
    )
    published = build_model("s4", "resnet18")
    assert [published.decoder.output_conv[i].out_channels for i in (0, 2)] == [128, 32]
    with pytest.raises(ValueError, match=r"valid: \['avss', 'ms3', 's4'\]"):
        build_model("s5", "resnet18")
    with pytest.raises(ValueError, match=r"'pvt_v2_b5', 'resnet50'"):
        build_model("s4", "resnet-50")
    with pytest.raises(ValueError, match="valid: \\['dot'"):
        build_model("s4", "resnet18", tpavi_mode="cross")
    with pytest.raises(ValueError, match="tpavi_stages"):
        build_model("s4", "resnet18", tpavi_stages=(0, 4))
    with pytest.raises(ValueError, match="tpavi_va and tpavi_vv are both False"):
        build_model("s4", "resnet18", tpavi_va=False)
    with pytest.raises(ValueError, match="pretrained_backbones"):
        build_model("s4", "resnet50", pretrained=True)


def test_input_checks():
    model = build_model("s4", "resnet18", decoder_channels=16).eval()
    with pytest.raises(ValueError, match="windows of 5"):
        model(torch.randn(4, 3, 64, 64), torch.randn(4, 128))
    with pytest.raises(ValueError, match="audio_emb"):
        model(torch.randn(5, 3, 64, 64), torch.randn(4, 128))
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(5, 3, 48, 64), torch.randn(5, 128))


def test_from_config_and_training_step():
    cfg = registry.synthetic(registry.preset("avss"))
    model = build_model_for(cfg)
    assert model.visual.name == "resnet18" and model.decoder.output_conv[4].out_channels == 71
    assert model.tpavi_blocks["0"].align_channel.bias is None
    assert [model.decoder.output_conv[i].out_channels for i in (0, 2)] == [32, 8]
    out = model(torch.randn(5, 3, 32, 32), torch.randn(5, 128), torch.ones(5))
    loss = out.logits.square().mean() + sum(a.square().mean() for a in out.audio_maps)
    loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    # path4 has no skip input: its first residual unit is unused, as in the published model
    assert no_grad == {
        f"decoder.fusions.3.resConfUnit1.conv{i}.{p}" for i in (1, 2) for p in ("weight", "bias")
    }
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model, twin = make_pair("s4")
    frames, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128)
    with torch.no_grad():
        cpu = model(frames, audio).logits
        gpu = model.cuda()(frames.cuda(), audio.cuda()).logits.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_published_resnet50_s4_at_224():
    """The published S4 network (ResNet-50, TPAVI on stages 0-3) on one 5-frame clip."""
    model, twin = make_pair("s4", "resnet50", channels=256)
    frames, audio = torch.randn(5, 3, 224, 224), torch.randn(5, 128)
    twin.tpavi_blocks["0"].dense = False  # stage 0 dense = a 1 GB matrix; checked in tests above
    out = assert_matches_published(model, twin, frames, audio, tol=1e-4)
    assert out.logits.shape == (5, 1, 224, 224)
    assert [v.shape[-1] for v in out.visual_maps] == [56, 28, 14, 7]
