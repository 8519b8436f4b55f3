"""VCT's own parts against independent computations: the Swin names of the published
layouts, the hard assignment, the 384-only input."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

from avsbench import config as C
from avsbench.models.vct import config as vct_config
from avsbench.models.vct.query_block import AssignAttention, VisualQueryBlock
from avsbench.models.vct.swin import SwinBackbone, SwinSizes, from_d2_state, to_d2_state
from tests.models.vct.vct_helpers import TAGS, read_layout

TINY_SWIN = SwinSizes(embed_dim=16, depths=(1, 2, 1, 2), num_heads=(1, 2, 2, 4), window_size=12)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("prefix", ["backbone.", "pre_sam_backbone."])
def test_swin_names_round_trip_every_published_layout(tag: str, prefix: str) -> None:
    """D2's Swin layout of each release -> SwinBackbone keys (all, nothing left over) -> the
    same names, shapes and order back, index buffers included."""
    layout = [(n[len(prefix) :], shape) for n, shape, _ in read_layout(tag) if n.startswith(prefix)]
    with torch.device("meta"):
        swin = SwinBackbone()
    own = swin.state_dict()
    state = {name: torch.empty(shape, device="meta") for name, shape in layout}
    index_names = [n for n, _ in layout if n.endswith("relative_position_index")]
    for name in index_names:  # the constant buffers hold the standard index
        state[name] = swin.relative_position_index()
    mapped, unknown, constants = from_d2_state(swin, state, prefix)
    assert unknown == [] and constants == len(index_names)
    assert sorted(mapped) == sorted(own)
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)
    back = to_d2_state(swin)
    assert [(k, tuple(v.shape)) for k, v in back.items()] == layout
    assert len(index_names) == sum(swin.sizes.depths)


def test_swin_index_buffers_are_rebuilt_not_read_and_their_shape_checked() -> None:
    swin = SwinBackbone(TINY_SWIN)
    state = to_d2_state(swin)
    key = "layers.0.blocks.0.attn.relative_position_index"
    assert torch.equal(state[key], get_relative_position_index(12, 12))
    state[key] = torch.full_like(state[key], 1000)  # e.g. a file of random test values
    mapped, unknown, constants = from_d2_state(swin, state, "backbone.")
    assert unknown == [] and constants == sum(TINY_SWIN.depths) and key not in mapped
    block = swin.body.layers[0].blocks[0].attn
    assert torch.equal(block.relative_position_index, get_relative_position_index(12, 12))
    state[key] = torch.zeros(49, 49, dtype=torch.int64)  # a 7 x 7 window's
    with pytest.raises(
        ValueError,
        match=r"backbone.layers.0.blocks.0.attn.relative_position_index has shape \(49, 49\)",
    ):
        from_d2_state(swin, state, "backbone.")


def test_swin_stage_shapes_and_the_shift_of_the_last_stage() -> None:
    """Four maps at strides 4..32; stage 4 (12 x 12 = one window) keeps its shift, as D2's."""
    swin = SwinBackbone(TINY_SWIN).eval()
    with torch.no_grad():
        maps = swin(torch.randn(1, 3, 384, 384))
    assert [tuple(m.shape) for m in maps] == [
        (1, 16, 96, 96),
        (1, 32, 48, 48),
        (1, 64, 24, 24),
        (1, 128, 12, 12),
    ]
    last = swin.body.layers[3].blocks[1]
    assert tuple(last.shift_size) == (6, 6) and last.attn_mask is not None
    assert float(last.attn_mask.min()) == -100.0


@pytest.mark.parametrize("size", [224, 352])
def test_a_non_384_input_is_refused_with_one_line(size: int) -> None:
    swin = SwinBackbone(TINY_SWIN)
    with pytest.raises(ValueError, match=r"384 x 384 only") as err:
        swin(torch.zeros(1, 3, size, size))
    assert "\n" not in str(err.value)
    cfg = C.override(vct_config.preset("s4"), {"data.image_size": size})
    with pytest.raises(
        ValueError, match=rf"data.image_size = {size}\).*set data.image_size to 384"
    ):
        vct_config.check(cfg)
    block = VisualQueryBlock(dim=8, num_pixels=96 * 96, num_queries=4, mixer_dim=8)
    with pytest.raises(ValueError, match="9216 mask-feature pixels"):
        block(torch.zeros(1, 8, size // 4, size // 4))


@torch.no_grad()
def _loop_assignment(attn: AssignAttention, queries: torch.Tensor, pixels: torch.Tensor):
    """The published hard assignment written pixel by pixel, query by query (float64)."""
    attn = copy.deepcopy(attn).double()
    q, k, v = (
        attn.q_proj(queries.double()),
        attn.k_proj(pixels.double()),
        attn.v_proj(pixels.double()),
    )
    n, nq, c = q.shape
    out = torch.zeros(n, nq, c, dtype=torch.float64)
    index = torch.zeros(n, pixels.shape[1], dtype=torch.long)
    for b in range(n):
        for p in range(pixels.shape[1]):
            scores = [float(q[b, j] @ k[b, p]) / c**0.5 for j in range(nq)]
            index[b, p] = max(range(nq), key=lambda j: scores[j])
        for j in range(nq):
            members = (index[b] == j).nonzero().flatten()
            out[b, j] = v[b, members].sum(0) / (len(members) + 1)
    return attn.proj(out).float(), index


def test_assign_attention_equals_the_pixel_by_pixel_computation() -> None:
    torch.manual_seed(0)
    attn = AssignAttention(dim=16).eval()
    queries, pixels = torch.randn(2, 5, 16), torch.randn(2, 40, 16)
    expected, expected_index = _loop_assignment(attn, queries, pixels)
    with torch.no_grad():
        update, decision = attn(queries, pixels)
    assert torch.equal(decision.index, expected_index)
    torch.testing.assert_close(update, expected, rtol=1e-5, atol=1e-6)
    scores = attn.scores(queries, pixels).detach()
    top = scores.sort(dim=1, descending=True).values
    torch.testing.assert_close(decision.gap, top[:, 0] - top[:, 1])
    # a forced assignment is used as given: every pixel to query 3
    forced = torch.full((2, 40), 3)
    with torch.no_grad():
        update, still = attn(queries, pixels, forced_index=forced)
    assert torch.equal(still.index, expected_index)  # the record is the computed decision
    v = attn.v_proj(pixels)
    only = attn.proj(v.sum(1) / 41)  # [2, C]: query 3 has all 40 pixels
    none = attn.proj(torch.zeros(16))  # the others none: proj's bias
    torch.testing.assert_close(update[:, 3], only.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(update[:, 0], none.detach().expand(2, 16), rtol=1e-5, atol=1e-6)


def test_training_assignment_is_one_hot_and_straight_through() -> None:
    """Training: Gumbel-perturbed one-hot assignment whose gradient is the softmax's (a bare
    argmax would leave q_proj and k_proj without gradient)."""
    torch.manual_seed(1)
    attn = AssignAttention(dim=8).train()
    queries, pixels = torch.randn(1, 4, 8), torch.randn(1, 30, 8)
    update, decision = attn(queries, pixels)
    update.square().sum().backward()
    assert attn.q_proj.weight.grad is not None and attn.q_proj.weight.grad.abs().sum() > 0
    assert attn.k_proj.weight.grad is not None and attn.k_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # the forward value is the hard assignment of its own index
        attn.eval()
        forced, _ = attn(queries, pixels, forced_index=decision.index)
    torch.testing.assert_close(update.detach(), forced, rtol=1e-5, atol=1e-6)
    # the noise changes decisions: over repeated draws not every pixel keeps the eval argmax
    with torch.no_grad():
        plain = attn(queries, pixels)[1].index
        attn.train()
        draws = [attn(queries, pixels)[1].index for _ in range(5)]
    assert any(not torch.equal(d, plain) for d in draws)


def test_prototype_block_uses_the_prototypes_and_ms3_block_has_none() -> None:
    torch.manual_seed(2)
    with_protos = VisualQueryBlock(
        dim=8, num_pixels=16, num_queries=3, num_prototypes=5, mixer_dim=6
    )
    without = VisualQueryBlock(dim=8, num_pixels=16, num_queries=3, num_prototypes=0, mixer_dim=6)
    assert not without.has_prototypes and "prototype.weight" not in without.state_dict()
    assert with_protos.state_dict()["prototype.weight"].shape == (5, 8)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        queries, protos, decision = with_protos.eval()(x)
        assert queries.shape == (2, 3, 8) and protos.shape == (5, 8)
        assert decision.index.shape == (2, 16)
        with_protos.prototype.weight.add_(1.0)
        moved, _, _ = with_protos(x)
    assert not torch.allclose(queries, moved)
