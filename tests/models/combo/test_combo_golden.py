"""The published COMBO configurations reproduce the golden outputs of the published code
(tests/golden/README.md, "vct/"; the specification's protocol): weights by the golden rule
under the OFFICIAL names, loaded through `load_official_state_dict` (so the name mapping is
tested too), VGGish from the file's `audio_backbone.*` on the stored log-mel examples, the
model in eval mode on the golden frames and the stored maskiges (normalised as the
datasets do).

Protocol (one forward pass per network, with the stored attention-mask decisions forced):
1. before the first decision (backbones, their fusion, pixel decoder, AVFuse, audio MLP,
   VGGish, the head on the initial queries): max |diff| <= 1e-4 x max |golden| per array;
2. each layer's own decision (computed, from the forced upstream) equals the stored one
   wherever its own |mask logit| > 1e-4 x its largest |mask logit|;
3. everything after: within 3e-4 x max |golden| (pred_logits, pred_masks, sem_seg and the
   model's contract logits); AVSS argmax equal where the top-2 gap exceeds twice that.
COMBO S4 and MS3 are one network (one golden file, compared with both): all ten published
configurations of the specification run here with VCT's three (tests/models/vct).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.transforms import normalize_pixels
from avsbench.models.backbones.vggish import VGGish
from avsbench.models.combo.official_names import load_official_state_dict
from avsbench.models.mask2former.inference import semantic_inference
from avsbench.models.mask2former.transformer_decoder import AttentionMaskTrace
from tests.golden_files import VCT, require
from tests.models.combo.combo_helpers import empty_model, rule_state_dict

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)  # spec "The network" 1, 0..255
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
LEVEL_SIZES = (7, 14, 28)  # memory levels at 224 (strides 32, 16, 8)
BEFORE, AFTER = 1e-4, 3e-4


def _golden(tag: str) -> dict[str, np.ndarray]:
    # COMBO's S4 and MS3 networks are one network: the published code gave identical golden
    # files, kept once as combo_s4_* (tests/golden/README.md); the MS3 runs build the MS3
    # preset's network and load the MS3 layout, and must give the same values
    return dict(np.load(require(VCT / f"{tag.replace('combo_ms3_', 'combo_s4_')}.npz")))


def _stored_decision(golden: dict[str, np.ndarray], layer: int) -> np.ndarray:
    size = LEVEL_SIZES[layer % 3] ** 2
    packed = golden[f"attn_mask_{layer}"]
    return np.unpackbits(packed, axis=-1)[..., :size].astype(bool)  # [T, Q, h*w]


def _run(tag: str) -> tuple[dict[str, torch.Tensor], AttentionMaskTrace, dict[str, np.ndarray]]:
    golden = _golden(tag)
    sd = rule_state_dict(tag)
    model = empty_model(tag).eval()
    report = load_official_state_dict(model, {"model": sd, "iteration": 0})
    assert report.loaded == len(model.state_dict())
    assert report.dropped == ["criterion.empty_weight"]
    vggish = VGGish().eval()
    vggish.load_state_dict(report.vggish_state)
    del sd

    t = golden["audio_log_mel"].shape[0]
    pixels = torch.randint(0, 256, (t, 3, 224, 224), generator=torch.Generator().manual_seed(1))
    # the project's normalisation (p / 255 - mean) / std, as the datasets apply it; it equals
    # the published (p - 255 mean) / (255 std) up to float32 rounding
    frames = torch.from_numpy(normalize_pixels(pixels.to(torch.uint8).numpy()))
    maskige = torch.from_numpy(MASKIGE.encode(golden["maskige"]))
    torch.testing.assert_close(frames, (pixels.float() - MEAN) / STD, rtol=0, atol=2e-6)
    flags = torch.from_numpy(golden["vid_temporal_mask_flag"])
    trace = AttentionMaskTrace(keep_logits=True)
    trace.force = {i: torch.from_numpy(_stored_decision(golden, i)) for i in range(9)}

    got: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            got[name] = output

        return hook

    model.visual.backbone.register_forward_hook(keep("backbone"))
    model.visual.pre_sam_backbone.register_forward_hook(keep("maskige"))
    model.visual.register_forward_hook(keep("fused"))
    head = model.sem_seg_head
    head.pixel_decoder.register_forward_hook(keep("pixel_decoder"))
    head.fusion_module.register_forward_hook(keep("fusion"))
    head.audio_transformation.register_forward_hook(keep("predictor_audio"))
    with torch.no_grad():
        emb = vggish(torch.from_numpy(golden["audio_log_mel"]))  # [T, 128]
        out = model(frames, emb, flags, maskige=maskige, trace=trace)
        sem_seg = semantic_inference(out.pred_logits, out.pred_masks, (224, 224))

    arrays = {"audio_backbone_out": emb[:, None], "predictor_audio": got["predictor_audio"]}
    for level in range(4):
        for name in ("backbone", "maskige", "fused"):
            arrays[f"{name}_res{level + 2}_mean"] = got[name][level].mean(1)
    mask_features, multi_scale = got["pixel_decoder"]
    arrays["pixel_mask_features_mean"] = mask_features.mean(1)
    for level in range(3):
        arrays[f"multi_scale_{level}_mean"] = multi_scale[level].mean(1)
    fused_visual = got["fusion"][0]
    arrays["mask_features_mean"] = fused_visual.mean(1)
    arrays["mask_features_sub"] = fused_visual[:, ::16, ::4, ::4]
    init_logits, init_masks = out.aux_outputs[0]
    arrays["init_logits"] = init_logits
    init_stride = int(golden["init_masks_stride"])
    arrays["init_masks"] = init_masks[..., ::init_stride, ::init_stride]
    stride = int(golden["pred_masks_stride"])
    arrays["pred_logits"] = out.pred_logits
    arrays["pred_masks"] = out.pred_masks[..., ::stride, ::stride]
    s = int(golden["sem_seg_stride"])
    arrays["sem_seg"] = sem_seg[..., ::s, ::s]
    arrays["sem_seg_full"] = sem_seg
    arrays["logits"] = out.logits
    return arrays, trace, golden


BEFORE_KEYS = (
    "audio_backbone_out",
    *(f"{n}_res{level}_mean" for level in range(2, 6) for n in ("backbone", "maskige", "fused")),
    "pixel_mask_features_mean",
    "multi_scale_0_mean",
    "multi_scale_1_mean",
    "multi_scale_2_mean",
    "mask_features_mean",
    "mask_features_sub",
    "predictor_audio",
    "init_logits",
    "init_masks",
)
AFTER_KEYS = ("pred_logits", "pred_masks", "sem_seg")


def _relative(got: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(got.shape) == expected.shape
    return float(np.abs(got.numpy() - expected).max() / np.abs(expected).max())


@pytest.mark.slow
@pytest.mark.parametrize(
    "tag",
    [
        "combo_s4_r50",
        "combo_s4_pvt",
        "combo_ms3_r50",
        "combo_ms3_pvt",
        "combo_avss_r50",
        "combo_avss_pvt",
        "combo_avss_r50_trainconfig",
    ],
)
def test_combo_reproduces_the_published_outputs(tag):
    arrays, trace, golden = _run(tag)
    before = {k: _relative(arrays[k], golden[k]) for k in BEFORE_KEYS}
    assert max(before.values()) <= BEFORE, before

    for layer in range(9):
        logits = trace.logits[layer]  # [T, Q, h*w]
        confident = (logits.abs() > BEFORE * logits.abs().max()).numpy()
        own = trace.masks[layer].numpy()
        stored = _stored_decision(golden, layer)
        assert confident.mean() > 0.99, layer  # the check covers nearly every decision
        assert np.array_equal(own[confident], stored[confident]), layer

    after = {k: _relative(arrays[k], golden[k]) for k in AFTER_KEYS}
    assert max(after.values()) <= AFTER, after

    # the contract's logits: S4 object minus background, AVSS the (flagged) scores
    sem_seg = golden["sem_seg"]
    s = int(golden["sem_seg_stride"])
    logits = arrays["logits"][..., ::s, ::s]
    if sem_seg.shape[1] == 2:
        expected = sem_seg[:, 1:2] - sem_seg[:, 0:1]  # a difference of two sem_seg channels
        diff = np.abs(logits.numpy() - expected).max()
        assert diff <= 2 * AFTER * np.abs(sem_seg).max()
    else:
        assert _relative(logits, sem_seg) <= AFTER
        full = arrays["sem_seg_full"]
        top2 = full.topk(2, dim=1).values
        # a top-2 gap wider than twice the tolerance cannot be flipped by an allowed error
        decided = ((top2[:, 0] - top2[:, 1]) > 2 * AFTER * float(full.abs().max())).numpy()
        own_argmax = full.argmax(1).numpy()
        assert decided.mean() > 0.5  # the check covers most pixels
        assert np.array_equal(own_argmax[decided], golden["sem_seg_argmax"][decided])
