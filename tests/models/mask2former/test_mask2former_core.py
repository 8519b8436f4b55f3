"""The shared Mask2Former core on small inputs, against independent computations: the
normalised sine position, the attention-mask rule (threshold, heads, fully masked rows,
trace and forcing), generic memory levels with unmasked ones (VCT's audio level), the
initial-query override, the semantic inference and the contract's logits, the pixel
decoder's reference points and levels, and the two backbones' channel-weighted fusion with
FrozenBatchNorm ResNets. The full-size agreement with the published code is in
tests/models/combo/test_combo_golden.py."""

from __future__ import annotations

import math

import torch

from avsbench.models.mask2former.dual_backbone import build_dual_backbone
from avsbench.models.mask2former.inference import contract_logits, semantic_inference
from avsbench.models.mask2former.pixel_decoder import DeformableEncoder, MSDeformAttnPixelDecoder
from avsbench.models.mask2former.positions import normalized_sine_positions
from avsbench.models.mask2former.transformer_decoder import (
    AttentionMaskTrace,
    MaskedAttentionDecoder,
)


def test_normalised_sine_position_is_the_formula():
    h, w, f = 3, 5, 8
    pos = normalized_sine_positions(h, w, f).double()
    for k in range(f):
        period = 10000 ** (2 * (k // 2) / f)
        trig = math.sin if k % 2 == 0 else math.cos
        for r in range(h):
            for c in range(w):
                y = (r + 1) / (h + 1e-6) * 2 * math.pi
                x = (c + 1) / (w + 1e-6) * 2 * math.pi
                assert abs(pos[k, r, c] - trig(y / period)) < 1e-6
                assert abs(pos[f + k, r, c] - trig(x / period)) < 1e-6


def _decoder(**kwargs) -> MaskedAttentionDecoder:
    torch.manual_seed(0)
    sizes = dict(hidden_dim=32, num_queries=6, heads=4, ffn_dim=16, layers=5, mask_dim=32)
    return MaskedAttentionDecoder(3, **{**sizes, **kwargs}).eval()


def test_attention_mask_thresholds_repeats_heads_and_unmasks_full_rows():
    decoder = _decoder()
    masks = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]], [[-1.0, -2.0], [-3.0, -4.0]]]])  # [1,2,2,2]
    trace = AttentionMaskTrace(keep_logits=True)
    blocked = decoder.attention_mask(masks, (2, 2), layer=3, trace=trace)
    assert blocked.shape == (4, 2, 4)  # [N * heads, Q, h*w]
    assert blocked[0, 0].tolist() == [True, False, False, True]  # negative logits blocked
    assert not blocked[:, 1].any()  # a fully blocked row attends everywhere
    assert torch.equal(blocked, blocked[:1].expand(4, 2, 4))  # the same for every head
    assert trace.masks[3][0, 1].all()  # recorded before the fix
    assert trace.margins[3] == 1.0
    assert torch.equal(trace.logits[3], masks.flatten(2))

    forced = torch.zeros(1, 2, 4, dtype=torch.bool)
    forced[0, 0, 1] = True
    trace = AttentionMaskTrace(force={3: forced})
    blocked = decoder.attention_mask(masks, (2, 2), layer=3, trace=trace)
    assert torch.equal(blocked[0], forced[0])  # forced decision used
    assert trace.masks[3][0, 0].tolist() == [True, False, False, True]  # own one recorded


def test_unmasked_levels_have_no_decision_and_layers_cycle_the_levels():
    decoder = _decoder(num_levels=4, unmasked_levels=(0,), layers=9)
    memories = [torch.randn(2, 32, 2, 3)] + [torch.randn(2, 32, s, s) for s in (2, 4, 8)]
    trace = AttentionMaskTrace()
    out = decoder(memories, torch.randn(2, 32, 16, 16), trace=trace)
    assert sorted(trace.masks) == [1, 2, 3, 5, 6, 7]  # layers 0, 4, 8 attend the audio level
    assert trace.masks[1].shape == (2, 6, 4) and trace.masks[3].shape == (2, 6, 64)
    assert len(out.aux_outputs) == 9  # the initial queries and 8 earlier layers
    assert out.pred_logits.shape == (2, 6, 4) and out.pred_masks.shape == (2, 6, 16, 16)


def test_initial_queries_default_to_query_feat_and_can_be_replaced():
    decoder = _decoder(layers=2)
    memories = [torch.randn(1, 32, s, s) for s in (2, 4, 8)]
    features = torch.randn(1, 32, 16, 16)
    default = decoder(memories, features)
    same = decoder(memories, features, queries=decoder.query_feat.weight[:, None].clone())
    assert torch.equal(default.pred_logits, same.pred_logits)
    init_logits, init_masks = decoder.prediction_heads(decoder.initial_queries(1), features)
    assert torch.equal(default.aux_outputs[0][0], init_logits)
    other = decoder(memories, features, queries=torch.zeros(6, 1, 32))
    assert not torch.allclose(other.pred_logits, default.pred_logits)


def test_semantic_inference_and_contract_logits():
    gen = torch.Generator().manual_seed(0)
    logits, masks = torch.randn(2, 4, 3, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    flag = torch.tensor([1.0, 0.0])
    sem_seg = semantic_inference(logits, masks, (8, 8), frame_flag=flag)  # no resize at 8
    probs = logits.softmax(-1)
    expected = sum(probs[0, q, :2, None, None] * masks[0, q].sigmoid() for q in range(4))
    torch.testing.assert_close(sem_seg[0], expected)
    assert torch.all(sem_seg[1] == 0)  # the frame flag
    binary = contract_logits(sem_seg, 1)
    torch.testing.assert_close(binary.sigmoid()[:, 0], sem_seg.softmax(1)[:, 1])
    assert contract_logits(torch.zeros(1, 71, 2, 2), 71).shape == (1, 71, 2, 2)
    up = semantic_inference(logits, masks, (16, 16), output_size=(4, 4))
    assert up.shape == (2, 2, 4, 4)


def test_pixel_decoder_levels_and_reference_points():
    ref = DeformableEncoder.reference_points([(2, 2), (1, 2)], torch.device("cpu"))
    assert ref.shape == (1, 6, 2, 2)
    assert ref[0, :4, 0].tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    assert ref[0, 4:, 1].tolist() == [[0.25, 0.5], [0.75, 0.5]]  # same points for each level
    torch.manual_seed(0)
    decoder = MSDeformAttnPixelDecoder(
        (8, 16, 24, 40), conv_dim=32, mask_dim=32, encoder_layers=1, ffn_dim=16
    ).eval()
    feats = [torch.randn(2, c, 64 // r, 64 // r) for c, r in zip((8, 16, 24, 40), (4, 8, 16, 32))]
    mask_features, memory = decoder(feats)
    assert mask_features.shape == (2, 32, 16, 16)
    assert [m.shape[-1] for m in memory] == [2, 4, 8]  # strides 32, 16, 8
    with torch.autocast("cpu", dtype=torch.bfloat16):  # published: autocast off inside
        half = decoder(feats)
    assert half[0].dtype == torch.float32
    torch.testing.assert_close(half[0], mask_features)
    names = set(decoder.state_dict())
    assert {"adapter_1.weight", "adapter_1.norm.weight", "layer_1.norm.bias"} <= names
    assert "transformer.encoder.layers.0.self_attn.sampling_offsets.weight" in names


def test_dual_backbone_fuses_with_channel_weights_and_frozen_batchnorm():
    torch.manual_seed(0)
    dual = build_dual_backbone("resnet18")
    frames, maskiges = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    before = {k: v.clone() for k, v in dual.state_dict().items()}
    dual.train()
    fused = dual(frames, maskiges)
    assert all(torch.equal(before[k], v) for k, v in dual.state_dict().items())  # stats fixed
    assert not any("bn" in name for name, _ in dual.backbone.named_parameters())
    images, masks = dual.backbone(frames), dual.pre_sam_backbone(maskiges)
    for level, block in enumerate(dual.scale_factor_module):
        pooled = masks[level].mean((2, 3))
        weight = torch.sigmoid(block.fc2(torch.relu(block.fc1(pooled))))[:, :, None, None]
        torch.testing.assert_close(fused[level], images[level] + weight * masks[level])
    assert dual.scale_factor_module[3].fc1.out_features == 512 // 16
