"""The exact training savings of VCT, COMBO and AVSegFormer equal the full computation.

With the method's `target_frames` (the frames its losses read) the model computes less:
VCT only those frames (nothing mixes its frames), COMBO every frame but its last decoder
layer and final prediction (the audio quirk mixes frames, the cosine loss reads every
frame's earlier predictions), AVSegFormer the head of those frames only (its ResNet's
BatchNorm sees every frame). Train mode, float64, small configurations: the loss and every
parameter gradient equal those of the full computation (target_frames None).

Randomness is made the same for both paths: the forward and the losses' points are drawn
after a reseed (COMBO's fusion dropout runs on every frame in both), VCT's Gumbel noise is
the same for every frame (`same_gumbel_noise`), dropout is off where it runs on the decoded
frames only (AVSegFormer's head: its masks are drawn per decoded frame, equal in law only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from avsbench.models import registry

ORIGINAL_EXPONENTIAL = torch.Tensor.exponential_


@contextlib.contextmanager
def same_gumbel_noise() -> Iterator[None]:
    """`Tensor.exponential_` fills [N, ...] with one fixed draw of [...] for every row n: the
    VCT assignment's Gumbel noise of a frame no longer depends on which frames are decoded."""

    def fill(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        gen = torch.Generator().manual_seed(7)
        one = ORIGINAL_EXPONENTIAL(torch.empty(self.shape[1:], dtype=self.dtype), generator=gen)
        return self.copy_(one.expand_as(self))

    torch.Tensor.exponential_ = fill
    try:
        yield
    finally:
        torch.Tensor.exponential_ = ORIGINAL_EXPONENTIAL


def _no_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.0


def _model(method: str, setting: str = "s4"):
    cfg = registry.synthetic(registry.preset(setting, method))
    torch.manual_seed(0)
    model = registry.method_spec(method).build_from_config(cfg.model).double().train()
    _no_dropout(model)
    return cfg, model


def _batch(clips: int, frames: int, size: int, audio_dim: int, maskige: bool) -> dict:
    gen = torch.Generator().manual_seed(1)
    n = clips * frames
    gt_valid = torch.zeros(clips, frames)
    gt_valid[:, 0] = 1.0  # S4 training clips: the first frame is annotated
    masks = torch.zeros(n, size, size, dtype=torch.float64)
    masks[:, size // 4 : size // 2, size // 8 : size * 3 // 4] = 1.0  # one object per frame
    batch = {
        "frames": torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64),
        "audio": torch.randn(n, audio_dim, generator=gen, dtype=torch.float64),
        "masks": masks,
        "gt_valid": gt_valid.reshape(n),
    }
    if maskige:
        batch["maskige"] = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64)
    return batch


def _step(method, cfg, model, batch, target_frames, **loss_keys):
    model.zero_grad(set_to_none=True)
    extra = {"maskige": batch["maskige"]} if "maskige" in batch else {}
    torch.manual_seed(2)  # the same dropout masks where every frame runs (COMBO's fusion)
    out = model(batch["frames"], batch["audio"], None, target_frames=target_frames, **extra)
    torch.manual_seed(3)  # the same points for the loss of both paths
    spec = registry.method_spec(method)
    loss, _ = spec.loss(cfg.model.setting, out, batch["masks"], batch["gt_valid"],
                        cfg.train.loss, **loss_keys)  # fmt: skip
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, out


def _assert_same(full, saved, rtol=1e-9, atol=1e-11):
    loss_full, grads_full, _ = full
    loss_saved, grads_saved, _ = saved
    torch.testing.assert_close(loss_saved, loss_full, rtol=rtol, atol=atol)
    assert grads_saved.keys() == grads_full.keys()
    assert any(bool(g.abs().sum() > 0) for g in grads_full.values())
    for name, grad in grads_full.items():
        torch.testing.assert_close(grads_saved[name], grad, rtol=rtol, atol=atol, msg=name)


def test_the_specs_name_the_frames_their_losses_read():
    gt_valid = torch.tensor([1.0, 0, 0, 1, 0, 0])
    for method in ("vct", "combo"):
        for setting in ("s4", "ms3", "avss"):
            cfg = registry.preset(setting, method)
            target = registry.method_spec(method).target_frames(cfg, gt_valid)
            assert target.tolist() == [True, False, False, True, False, False]
    spec = registry.method_spec("avsegformer")
    for setting in ("s4", "avss"):
        target = spec.target_frames(registry.preset(setting, "avsegformer"), gt_valid)
        assert target.tolist() == [True, False, False, True, False, False]
    assert spec.target_frames(registry.preset("ms3", "avsegformer"), torch.ones(5)) is None


@pytest.mark.slow
def test_vct_decoding_only_the_read_frames_gives_the_full_loss_and_gradients():
    cfg, model = _model("vct")
    batch = _batch(1, 2, cfg.data.image_size, 512 * 6 * 4, maskige=True)
    target = registry.method_spec("vct").target_frames(cfg, batch["gt_valid"])
    assert target.tolist() == [True, False]  # half the frames are computed
    categories = ["race_car"]
    with same_gumbel_noise():
        full = _step("vct", cfg, model, batch, None, category=categories)
        saved = _step("vct", cfg, model, batch, target, category=categories)
    _assert_same(full, saved)
    out_full, out_saved = full[2], saved[2]
    torch.testing.assert_close(out_saved.pred_masks[target], out_full.pred_masks[target])
    assert bool((out_saved.pred_masks[~target] == 0).all())
    assert not out_saved.logits.requires_grad  # no graph through the S x S masks


@pytest.mark.slow
def test_combo_last_layer_only_for_the_read_frames_gives_the_full_loss_and_gradients():
    cfg, model = _model("combo")
    batch = _batch(1, 5, cfg.data.image_size, 128, maskige=True)
    target = registry.method_spec("combo").target_frames(cfg, batch["gt_valid"])
    full = _step("combo", cfg, model, batch, None)
    saved = _step("combo", cfg, model, batch, target)
    _assert_same(full, saved)
    out_full, out_saved = full[2], saved[2]
    # every frame's earlier predictions (the cosine loss reads them), the read frames' final
    for (_, aux_full), (_, aux_saved) in zip(out_full.aux_outputs, out_saved.aux_outputs):
        torch.testing.assert_close(aux_saved, aux_full)
    torch.testing.assert_close(out_saved.pred_masks[target], out_full.pred_masks[target])
    torch.testing.assert_close(out_saved.logits[target], out_full.logits[target])
    assert bool((out_saved.pred_masks[~target] == 0).all())


def test_combo_final_rows_among_the_decoded_padding_frames():
    from avsbench.models.combo.model import final_rows

    valid_rows = torch.tensor([0, 1, 2, 5, 6])  # frames 3, 4 are padding
    target = torch.tensor([True, False, False, False, False, True, False])
    assert final_rows(target, valid_rows, 7, torch.device("cpu")).tolist() == [0, 3]
    assert final_rows(None, valid_rows, 7, torch.device("cpu")) is None
    everything = torch.tensor([True, True, True, False, False, True, True])
    assert final_rows(everything, valid_rows, 7, torch.device("cpu")) is None


@pytest.mark.slow
def test_avsegformer_head_only_for_the_read_frames_gives_the_full_loss_and_gradients():
    cfg, model = _model("avsegformer")
    batch = _batch(2, 2, cfg.data.image_size, 128, maskige=False)
    target = registry.method_spec("avsegformer").target_frames(cfg, batch["gt_valid"])
    full = _step("avsegformer", cfg, model, batch, None)
    saved = _step("avsegformer", cfg, model, batch, target)
    _assert_same(full, saved)
    out_full, out_saved = full[2], saved[2]
    torch.testing.assert_close(out_saved.logits[target], out_full.logits[target])
    assert bool((out_saved.logits[~target] == 0).all())
    assert bool((out_saved.mask_feature[~target] == 0).all())
