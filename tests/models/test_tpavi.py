"""TPAVI: golden outputs of the published block, exact cheap forms vs the dense N x N form."""

from __future__ import annotations

import pytest
import torch

from avsbench.models.tpavi.block import TPAVI, TPAVI_MODES

PREFIXES = [f"{v}_{m}" for v in ("avs_s4", "avss") for m in TPAVI_MODES]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def golden_block(golden: dict, prefix: str, dense: bool) -> TPAVI:
    params = {
        k.split(".param.", 1)[1]: torch.from_numpy(v)
        for k, v in golden.items()
        if k.startswith(prefix + ".param.")
    }
    mode = prefix.rsplit("_", 1)[1]
    block = TPAVI(256, mode=mode, align_bias="align_channel.bias" in params, dense=dense)
    block.load_state_dict(params, strict=True)  # published names load directly
    return block.eval()


@pytest.mark.parametrize("dense", [False, True], ids=["cheap", "dense"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_golden_published_block(golden_tpavi, prefix, dense):
    block = golden_block(golden_tpavi, prefix, dense)
    x = torch.from_numpy(golden_tpavi[f"{prefix}.x"])
    audio = torch.from_numpy(golden_tpavi[f"{prefix}.audio"])
    with torch.no_grad():
        z_va, aligned = block(x, audio)
        z_vv, no_audio = block(x)
    assert rel_err(z_va, torch.from_numpy(golden_tpavi[f"{prefix}.z_va"])) < 1e-5
    assert rel_err(aligned, torch.from_numpy(golden_tpavi[f"{prefix}.aligned_audio"])) < 1e-5
    assert rel_err(z_vv, torch.from_numpy(golden_tpavi[f"{prefix}.z_vv"])) < 1e-5
    assert no_audio is None


@pytest.mark.parametrize("prefix", ["avs_s4_dot", "avss_concatenate"])
def test_golden_discriminates(golden_tpavi, prefix):
    """A 1% change of g moves the output well beyond the tolerance: the golden test can fail."""
    block = golden_block(golden_tpavi, prefix, dense=False)
    with torch.no_grad():
        block.g.weight.mul_(1.01)
        z, _ = block(
            torch.from_numpy(golden_tpavi[f"{prefix}.x"]),
            torch.from_numpy(golden_tpavi[f"{prefix}.audio"]),
        )
    assert rel_err(z, torch.from_numpy(golden_tpavi[f"{prefix}.z_va"])) > 5e-5


def _pair(mode: str, align_bias: bool = True) -> tuple[TPAVI, TPAVI]:
    torch.manual_seed(0)
    cheap = TPAVI(16, mode=mode, align_bias=align_bias, audio_channels=12)
    with torch.no_grad():  # non-zero W_z so the attention reaches the output
        cheap.W_z[1].weight.normal_(1.0, 0.3)
        cheap.W_z[1].bias.normal_(0.0, 0.3)
        cheap.W_z[1].running_mean.normal_(0.0, 0.1)
        cheap.W_z[1].running_var.uniform_(0.5, 1.5)
        if mode == "concatenate":  # keep a mix of active and inactive ReLU units
            cheap.W_f[0].weight.normal_(0.0, 0.3)
    dense = TPAVI(16, mode=mode, align_bias=align_bias, audio_channels=12, dense=True)
    dense.load_state_dict(cheap.state_dict())
    return cheap, dense


def _grads(block: TPAVI, x, audio):
    x = x.clone().requires_grad_(True)
    audio = None if audio is None else audio.clone().requires_grad_(True)
    z, _ = block(x, audio)
    weight = torch.linspace(-1, 1, z.numel()).reshape(z.shape)
    (z * weight).sum().backward()
    grads = {"x": x.grad}
    if audio is not None:
        grads["audio"] = audio.grad
    grads.update({n: p.grad for n, p in block.named_parameters() if p.grad is not None})
    return z, grads


@pytest.mark.parametrize("with_audio", [True, False], ids=["va", "vv"])
@pytest.mark.parametrize("mode", TPAVI_MODES)
def test_cheap_form_equals_dense(mode, with_audio):
    """Forward and every gradient (inputs, all parameters) agree to 1e-5 relative."""
    cheap, dense = _pair(mode)
    cheap.eval(), dense.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 5, 4, generator=gen)
    audio = torch.randn(2, 3, 12, generator=gen) if with_audio else None
    z_c, g_c = _grads(cheap, x, audio)
    z_d, g_d = _grads(dense, x, audio)
    assert rel_err(z_c, z_d) < 1e-5
    assert set(g_c) == set(g_d)
    expected = {"x", "W_z.0.weight", "W_z.1.weight", "g.weight", "norm_layer.weight"}
    if with_audio:
        expected |= {"audio", "align_channel.weight"}
    assert expected <= set(g_c)
    largest = max(float(g.abs().max()) for g in g_d.values())
    for name in g_c:
        if g_d[name].abs().max() < 1e-4 * largest:
            # mathematically zero (e.g. align_channel.bias under a softmax over frames)
            assert g_c[name].abs().max() < 1e-4 * largest, name
        else:
            assert rel_err(g_c[name], g_d[name]) < 1e-5, name
    if mode != "gaussian":  # theta and phi take part and get gradients
        assert g_c["theta.weight"].abs().max() > 0 and g_c["phi.weight"].abs().max() > 0


def test_cheap_dot_never_builds_an_n_by_n_matrix():
    block, _ = _pair("dot")
    x = torch.randn(1, 16, 5, 32, 32, requires_grad=True)  # N = 5120, N^2 = 26M
    audio = torch.randn(1, 5, 12)
    largest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z, _ = block(x, audio)
        z_vv, _ = block(x)
    n = 5 * 32 * 32
    assert largest <= 16 * n  # the size of a feature map, far from N^2
    assert z.shape == z_vv.shape == x.shape


def test_align_bias_and_shapes():
    block = TPAVI(32, mode="dot", align_bias=False)
    assert block.align_channel.bias is None
    assert not hasattr(TPAVI(32, mode="gaussian"), "theta")
    x, audio = torch.randn(2, 32, 5, 3, 3), torch.randn(2, 5, 128)
    z, aligned = block.eval()(x, audio)
    assert torch.equal(aligned, audio @ block.align_channel.weight.T)
    # Zero-initialised BN: a fresh block is LayerNorm(x) over channels.
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 4, 1), (32,))
    torch.testing.assert_close(z, expected.permute(0, 4, 1, 2, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid: \\['dot', 'embedded'"):
        TPAVI(16, mode="cosine")
    with pytest.raises(ValueError, match="audio must be"):
        TPAVI(16)(torch.randn(1, 16, 5, 2, 2), torch.randn(1, 4, 128))
