"""VCT against the published code's golden outputs (tests/golden/vct/, the spec's protocol).

For each release (S4, MS3, AVSS) the model is built at full size, loaded through the
official names with the golden weight rule, and run once on the golden clip with the
stored decisions (assignment, attention masks) forced:
  1. arrays before the first decision (backbones, fusion, pixel decoder, audio, feat_*):
     max |diff| <= 1e-4 x max |golden|;
  2. own decisions (computed in the same run, given the stored earlier ones) equal the
     stored ones wherever their margin > 1e-4 x the largest |value| behind them;
  3. the other arrays within 3e-4 x max |golden|.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from avsbench.models.backbones.vggish import VGGish
from avsbench.models.vct import VCTTrace, build_vct
from avsbench.models.vct.official_names import load_official_state_dict
from tests.models.vct.vct_helpers import (
    SETTINGS,
    TAGS,
    golden,
    golden_rule_tensor,
    normalise,
    rule_state_dict,
)

BEFORE, AFTER, DECISION = 1e-4, 3e-4, 1e-4
AUDIO_LEVEL_LAYERS = (0, 4, 8)  # decoder layers attending the audio (no attention mask)
pytestmark = pytest.mark.slow


WORST: dict[str, tuple[float, str]] = {}  # step -> (largest max|diff| / max|golden|, array)


def _assert_close(name: str, own: torch.Tensor | np.ndarray, ref: np.ndarray, tol: float) -> None:
    own = own.detach().cpu().numpy() if isinstance(own, torch.Tensor) else np.asarray(own)
    assert own.shape == ref.shape, f"{name}: shape {own.shape} vs golden {ref.shape}"
    scale = float(np.abs(ref).max())
    err = float(np.abs(own.astype(np.float64) - ref).max())
    assert err <= tol * scale, f"{name}: max |diff| {err:.3g} > {tol:g} x {scale:.3g}"
    step = "before" if tol == BEFORE else "after"
    if err / scale >= WORST.get(step, (-1.0, ""))[0]:
        WORST[step] = (err / scale, name)


def _record(module: torch.nn.Module, store: dict, key: str) -> None:
    module.register_forward_hook(lambda m, args, out: store.__setitem__(key, out))


def _run_forced(tag: str, g: dict[str, np.ndarray]):
    """The model of `tag` with the golden weights, run on the golden clip with the stored
    decisions forced; returns (outputs, trace, intermediate arrays, VGGish's conv map)."""
    setting = SETTINGS[tag]
    t = g["maskige"].shape[0]
    state = rule_state_dict(tag, skip=("audio_backbone.embeddings.",))
    vggish = VGGish().eval()
    features = {
        k[len("audio_backbone.features.") :]: v for k, v in state.items() if ".features." in k
    }
    vggish.features.load_state_dict(features)
    model = build_vct(setting).eval()
    report = load_official_state_dict(model, state)
    assert report.dropped == ["criterion.empty_weight"]

    seen: dict[str, object] = {}
    _record(model.visual.backbone, seen, "backbone")
    _record(model.visual.pre_sam_backbone, seen, "maskige")
    _record(model.visual, seen, "fused")
    _record(model.sem_seg_head.pixel_decoder, seen, "pixel_decoder")
    _record(model.sem_seg_head.audio_transformation, seen, "audio")

    stored = torch.from_numpy(g["assign_index"].astype(np.int64))
    trace = VCTTrace(force_assign=stored, keep_logits=True)
    for layer in range(model.sem_seg_head.predictor.num_layers):
        if layer not in AUDIO_LEVEL_LAYERS:
            packed = g[f"attn_mask_{layer}"]
            hw = {1: 12 * 12, 2: 24 * 24, 3: 48 * 48}[layer % 4]
            trace.force[layer] = torch.from_numpy(np.unpackbits(packed, axis=-1)[..., :hw] > 0)
    gen = torch.Generator().manual_seed(1)
    frames = normalise(torch.randint(0, 256, (t, 3, 384, 384), generator=gen).float())
    maskige = normalise(torch.from_numpy(g["maskige"]).float())
    valid = torch.from_numpy(g["vid_temporal_mask_flag"])
    with torch.no_grad():
        audio = vggish.features(torch.from_numpy(g["audio_log_mel"]))  # [T, 512, 6, 4]
        out = model(frames, audio, valid, maskige=maskige, trace=trace)
    return model, out, trace, seen, audio


@pytest.mark.parametrize("tag", TAGS)
def test_vct_reproduces_the_published_outputs(tag: str) -> None:
    start = time.perf_counter()
    g = golden(tag)
    model, out, trace, seen, audio = _run_forced(tag, g)

    # 1. before the first decision
    _assert_close("audio_backbone_out", audio, g["audio_backbone_out"], BEFORE)
    for source in ("backbone", "maskige", "fused"):
        for level, fmap in enumerate(seen[source]):
            name = f"{source}_res{level + 2}_mean"
            _assert_close(name, fmap.mean(1), g[name], BEFORE)
    mask_features, multi_scale = seen["pixel_decoder"]
    _assert_close(
        "pixel_mask_features_mean", mask_features.mean(1), g["pixel_mask_features_mean"], BEFORE
    )
    _assert_close("mask_features_mean", mask_features.mean(1), g["mask_features_mean"], BEFORE)
    _assert_close(
        "mask_features_sub", mask_features[:, ::16, ::4, ::4], g["mask_features_sub"], BEFORE
    )
    for level, fmap in enumerate(multi_scale):
        _assert_close(
            f"multi_scale_{level}_mean", fmap.mean(1), g[f"multi_scale_{level}_mean"], BEFORE
        )
    _assert_close("predictor_audio", seen["audio"], g["predictor_audio"], BEFORE)
    if "feat_proto" in g:
        _assert_close("feat_audio", out.extras["feat_audio"], g["feat_audio"], BEFORE)
        _assert_close("feat_proto", out.extras["feat_proto"], g["feat_proto"], BEFORE)
        published = golden_rule_tensor("criterion.logit_scale", ())  # loaded into the model
        assert float(out.extras["logit_scale"].detach()) == float(published)
    else:
        assert out.extras == {}

    # 2. own decisions, given the stored earlier ones
    sure = trace.assign_gap > DECISION * trace.assign_largest
    stored = torch.from_numpy(g["assign_index"].astype(np.int64))
    assert torch.equal(trace.assign_index[sure], stored[sure]), "assignment differs"
    assert sure.float().mean() > 0.99  # the check covers nearly every pixel
    flips = int((trace.assign_index != stored).sum())  # all of them below the margin
    assert sorted(trace.masks) == [i for i in range(9) if i not in AUDIO_LEVEL_LAYERS]
    for layer, computed in trace.masks.items():
        margin = trace.logits[layer].abs()  # each element's own |mask logit|
        sure = margin > DECISION * margin.max()
        assert torch.equal(computed[sure], trace.force[layer][sure]), f"attn_mask_{layer} differs"
        flips += int((computed != trace.force[layer]).sum())

    # 3. the rest, with the stored decisions
    init_logits, init_masks = out.aux_outputs[0]
    _assert_close("init_logits", init_logits, g["init_logits"], AFTER)
    _assert_close("init_masks", init_masks[..., ::8, ::8], g["init_masks"], AFTER)
    _assert_close("visual_queries", trace.visual_queries, g["visual_queries"], AFTER)
    _assert_close("pred_logits", out.pred_logits, g["pred_logits"], AFTER)
    _assert_close("pred_masks", out.pred_masks[..., ::4, ::4], g["pred_masks"], AFTER)
    stride = int(g["sem_seg_stride"])
    sem_seg = trace.sem_seg
    _assert_close("sem_seg", sem_seg[..., ::stride, ::stride], g["sem_seg"], AFTER)
    if "sem_seg_argmax" in g:  # AVSS: the class of every pixel, where no tolerance can flip it
        top2 = sem_seg.topk(2, dim=1).values
        sure = (top2[:, 0] - top2[:, 1]) > 2 * AFTER * float(np.abs(g["sem_seg"]).max())
        argmax = torch.from_numpy(g["sem_seg_argmax"].astype(np.int64))
        assert torch.equal(sem_seg.argmax(1)[sure], argmax[sure])
        torch.testing.assert_close(out.logits, sem_seg)
    else:  # S4/MS3: the contract's logit is object minus background
        torch.testing.assert_close(out.logits, sem_seg[:, 1:2] - sem_seg[:, 0:1])
    worst = ", ".join(f"{step} {r:.2g} ({name})" for step, (r, name) in WORST.items())
    print(f"\n{tag}: {time.perf_counter() - start:.1f} s; worst relative error: {worst}; "
          f"{flips} own decisions differ, all within the margin")  # fmt: skip
    WORST.clear()
