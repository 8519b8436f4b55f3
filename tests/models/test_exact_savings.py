"""The exact savings of the training step equal the full (published) computation:
decoding only the frames the losses read, and skipping the dilated taps that only read
zero padding. Train mode, float64: loss, every gradient and the BatchNorm statistics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avsbench.models import registry
from avsbench.models.registry import build_model
from avsbench.models.tpavi.decoder import DilatedProjection, used_taps
from avsbench.models.tpavi.losses import tpavi_loss
from avsbench.models.tpavi.target_frames import loss_target_frames


def test_used_taps_keeps_the_centre_only_when_the_dilation_reaches_past_the_map():
    assert used_taps(7, 7) == slice(1, 2) and used_taps(18, 14) == slice(1, 2)
    assert used_taps(6, 7) == slice(0, 3) and used_taps(3, 56) == slice(0, 3)


@pytest.mark.parametrize("size", [(2, 3), (5, 5), (7, 7), (7, 20), (13, 30), (14, 14)])
def test_tap_skipping_equals_the_full_dilated_convs(size):
    torch.manual_seed(0)
    full = DilatedProjection(6, 5, skip_outside_taps=False).double()
    with torch.no_grad():  # non-trivial biases and weights of all sizes
        for conv in full.conv2d_list:
            conv.weight.normal_()
            conv.bias.normal_()
    skipped = DilatedProjection(6, 5).double()
    skipped.load_state_dict(full.state_dict())
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    x_full, x_skip = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_full, out_skip = full(x_full), skipped(x_skip)
    torch.testing.assert_close(out_skip, out_full, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(out_full)
    out_full.backward(upstream)
    out_skip.backward(upstream)
    torch.testing.assert_close(x_skip.grad, x_full.grad, rtol=1e-12, atol=1e-12)
    for (name, p_full), p_skip in zip(full.named_parameters(), skipped.parameters()):
        torch.testing.assert_close(p_skip.grad, p_full.grad, rtol=1e-12, atol=1e-12, msg=name)
    # the skipped taps' weights get exactly the zero gradient the full conv gives them
    for conv, d in zip(full.conv2d_list, (3, 6, 12, 18)):
        if d >= size[0]:
            assert torch.count_nonzero(conv.weight.grad[:, :, [0, 2], :]) == 0


def _s4_pair():
    torch.manual_seed(0)
    exact = build_model("s4", "resnet18", decoder_channels=16).double()
    with torch.no_grad():  # a non-trivial TPAVI (the published init zeroes W_z's BN)
        for block in exact.tpavi_blocks.values():
            block.W_z[1].weight.normal_(1.0, 0.5)
    published = build_model("s4", "resnet18", decoder_channels=16, tpavi_dense=True).double()
    published.load_state_dict(exact.state_dict())
    for projection in published.projections:
        projection.skip_outside_taps = False
    return exact.train(), published.train()


def _s4_batch(clips=2, frames=5, size=64):
    gen = torch.Generator().manual_seed(3)
    bt = clips * frames
    images = torch.randn(bt, 3, size, size, generator=gen, dtype=torch.float64)
    audio = torch.randn(bt, 128, generator=gen, dtype=torch.float64)
    masks = (torch.rand(bt, size, size, generator=gen) > 0.6).double()
    gt_valid = torch.zeros(clips, frames)
    gt_valid[:, 0] = 1  # S4 train: the first frame of each clip is annotated
    return images, audio, torch.ones(bt), masks, gt_valid.reshape(bt)


def _step(model, cfg, batch, target_frames):
    images, audio, frame_valid, masks, gt_valid = batch
    model.zero_grad(set_to_none=True)
    out = model(images, audio, frame_valid, target_frames=target_frames)
    loss, _ = tpavi_loss("s4", out, masks, gt_valid, cfg.train.loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), out, grads, buffers


@pytest.mark.parametrize("sa_loss", [False, True], ids=["published_loss", "with_sa_loss"])
def test_s4_training_step_with_exact_savings_equals_the_full_computation(sa_loss):
    cfg = registry.preset("s4")
    loss_cfg = dataclasses.replace(cfg.train.loss, sa_loss_flag=sa_loss)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=loss_cfg))
    exact, published = _s4_pair()
    batch = _s4_batch()
    gt_valid = batch[-1]
    target = loss_target_frames(cfg, gt_valid)
    if sa_loss:
        assert target is None  # the sa loss pools every frame's logits
    else:
        assert torch.equal(target, gt_valid > 0)

    loss_e, out_e, grads_e, bufs_e = _step(exact, cfg, batch, target)
    loss_p, out_p, grads_p, bufs_p = _step(published, cfg, batch, None)
    torch.testing.assert_close(loss_e, loss_p, rtol=1e-10, atol=0)
    assert grads_e.keys() == grads_p.keys()
    unused = {n for n, _ in published.named_parameters()} - grads_p.keys()
    # as published, path4 has no skip input: its first residual unit is never used
    assert {n.rsplit(".", 2)[0] for n in unused} == {"decoder.fusions.3.resConfUnit1"}
    for name, grad in grads_p.items():
        # atol: W_z's conv bias has a zero gradient (BatchNorm follows): rounding noise only
        assert (grads_e[name] - grad).abs().max() <= 1e-9 * grad.abs().max() + 1e-13, name
    for name, buf in bufs_p.items():  # BatchNorm running statistics and counters
        torch.testing.assert_close(bufs_e[name], buf, rtol=1e-10, atol=1e-12, msg=name)
    # the decoded rows equal the full logits; the others are zeros when not decoded
    rows = slice(None) if target is None else target
    torch.testing.assert_close(out_e.logits[rows], out_p.logits[rows], rtol=1e-9, atol=1e-12)
    if target is not None:
        assert torch.count_nonzero(out_e.logits[~target]) == 0
    for got, ref in zip(out_e.visual_maps, out_p.visual_maps):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


def test_ms3_and_the_published_avss_recipe_decode_every_frame():
    for preset in (
        registry.preset("ms3"),
        registry.preset("avss"),
    ):  # avss(): masked AV loss on, as published
        assert loss_target_frames(preset, torch.ones(5)) is None


def test_avss_training_step_without_masked_av_decodes_only_annotated_frames_exactly():
    """AVSS (CE weighted by gt_valid) with the masked AV loss off, as the synthetic preset
    runs it: decoding only the annotated frames gives the same loss, every gradient and
    the BatchNorm statistics of the full computation. Clips as in AVSS training: v1s
    (frame 1 annotated), v1m (5 of 10, then padding), v2 (10)."""
    cfg = registry.synthetic(registry.preset("avss"))
    assert not cfg.train.loss.masked_av_flag
    torch.manual_seed(0)
    exact = build_model("avss", "resnet18", decoder_channels=16, num_classes=5).double()
    with torch.no_grad():
        for block in exact.tpavi_blocks.values():
            block.W_z[1].weight.normal_(1.0, 0.5)
    full = build_model("avss", "resnet18", decoder_channels=16, num_classes=5).double()
    full.load_state_dict(exact.state_dict())
    gen = torch.Generator().manual_seed(5)
    images = torch.randn(30, 3, 64, 64, generator=gen, dtype=torch.float64)
    audio = torch.randn(30, 128, generator=gen, dtype=torch.float64)
    masks = torch.randint(0, 5, (30, 64, 64), generator=gen)
    frame_valid = torch.tensor([1.0] * 5 + [0.0] * 5 + [1.0] * 5 + [0.0] * 5 + [1.0] * 10)
    gt_valid = torch.tensor([1.0] + [0.0] * 9 + [1.0] * 5 + [0.0] * 5 + [1.0] * 10)
    target = loss_target_frames(cfg, gt_valid)
    assert torch.equal(target, gt_valid > 0)

    def step(model, target_frames):
        model.train().zero_grad(set_to_none=True)
        out = model(images, audio, frame_valid, target_frames=target_frames)
        loss, _ = tpavi_loss("avss", out, masks, gt_valid, cfg.train.loss)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, {n: b.clone() for n, b in model.named_buffers()}

    loss_e, grads_e, bufs_e = step(exact, target)
    loss_f, grads_f, bufs_f = step(full, None)
    torch.testing.assert_close(loss_e, loss_f, rtol=1e-10, atol=0)
    assert grads_e.keys() == grads_f.keys()
    for name, grad in grads_f.items():
        assert (grads_e[name] - grad).abs().max() <= 1e-9 * grad.abs().max() + 1e-13, name
    for name, buf in bufs_f.items():
        torch.testing.assert_close(bufs_e[name], buf, rtol=1e-10, atol=1e-12, msg=name)


def test_target_frames_padding_and_checks():
    """AVSS-style padding with target frames: decoded rows equal the full model's."""
    torch.manual_seed(0)
    model = build_model("avss", "resnet18", decoder_channels=16, num_classes=3).eval()
    gen = torch.Generator().manual_seed(4)
    frames, audio = torch.randn(10, 3, 64, 64, generator=gen), torch.randn(10, 128, generator=gen)
    valid = torch.tensor([1.0] * 7 + [0.0] * 3)
    target = torch.tensor([True, False, True] + [False] * 4 + [True, False, False])
    with torch.no_grad():
        full = model(frames, audio, valid).logits
        part = model(frames, audio, valid, target_frames=target).logits
        every = model(frames, audio, valid, target_frames=torch.ones(10, dtype=torch.bool))
    torch.testing.assert_close(part[target], full[target], rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(part[~target]) == 0
    assert torch.equal(every.logits, full)
    with pytest.raises(ValueError, match="target_frames must be a bool"):
        model(frames, audio, valid, target_frames=torch.ones(10))
    with pytest.raises(ValueError, match="target_frames must be a bool"):
        model(frames, audio, valid, target_frames=torch.ones(5, dtype=torch.bool))
