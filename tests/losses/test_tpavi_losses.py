"""Tests of the TPAVI losses (avsbench.models.tpavi.losses) against plain float64 loop
implementations written here, for every combination of the official flags, plus small cases
with known values."""

from __future__ import annotations

import dataclasses
import itertools
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from avsbench.config import LossConfig
from avsbench.models.tpavi.losses import (
    avss_background_index,
    avss_masked_av_loss,
    avss_seg_loss,
    masked_av_loss,
    ms3_seg_loss,
    s4_seg_loss,
    sa_loss,
    tpavi_loss,
)

# stage sizes of a tiny model on 16 x 16 frames; 3 x 3 checks non-divisible adaptive pooling
STAGE_SIZES = [(8, 8), (4, 4), (3, 3), (2, 2)]
CHANNELS = 6


def make_output(frames, num_classes=1, seed=0, tpavi_stages=(0, 1, 2, 3), size=16):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, num_classes, size, size, generator=gen) * 2
    visual = [torch.randn(frames, CHANNELS, h, w, generator=gen) for h, w in STAGE_SIZES]
    audio = [
        torch.randn(frames, CHANNELS, generator=gen) if s in tpavi_stages else None
        for s in range(4)
    ]
    return SimpleNamespace(logits=logits, visual_maps=visual, audio_maps=audio)


# ---------------------------------------------------------------- plain references


def ref_pool(mask, h, w, kind):
    """Adaptive pooling of one [H, W] map with loops (PyTorch's cell boundaries)."""
    H, W = mask.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            r0, r1 = (i * H) // h, -((-(i + 1) * H) // h)
            c0, c1 = (j * W) // w, -((-(j + 1) * W) // w)
            cell = mask[r0:r1, c0:c1]
            out[i, j] = cell.mean() if kind == "avg" else cell.max()
    return out


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def ref_bce(logit, target):
    p = sigmoid(logit.double())
    t = target.double()
    return (-(t * torch.log(p) + (1 - t) * torch.log(1 - p))).mean()


def ref_normalize(x):
    return x / max(math.sqrt(float((x * x).sum())), 1e-12)


def ref_softmax(x):
    e = torch.exp(x - x.max())
    return e / e.sum()


def ref_kl(feature, target):
    """sum_c softmax(target) * (log softmax(target) - log softmax(feature))."""
    p, q = ref_softmax(target), ref_softmax(feature)
    return float((p * (torch.log(p) - torch.log(q))).sum())


def ref_euclid(x, y):
    return math.sqrt(float(((x - y + 1e-6) ** 2).sum()))


def ref_masked_feature(v, mask, threshold):
    """v [C, h, w], mask [h, w] (float64)."""
    if threshold:
        binary = (mask > 0.5).double()
        return (v * binary).sum(dim=(1, 2)) / (binary.sum() + 1e-6)
    return (v * mask).mean(dim=(1, 2))


def ref_nearest(audio):
    n = audio.shape[0]
    idx = []
    for j in range(n):
        best, arg = None, None
        for i in range(n):
            d = math.sqrt(float(((audio[i] - audio[j]) ** 2).sum())) + (10.0 if i == j else 0.0)
            if best is None or d < best:
                best, arg = d, i
        idx.append(arg)
    return idx


def ref_avm(out, stages, setting, flags, gt_valid=None, background=0):
    """Official AVM losses (S4 sa, MS3 and AVSS masked AV) with loops over frames.
    AVSS: `background` is the class index that is not an object (published today: 0)."""
    logits = out.logits.double()
    frames = logits.shape[0]
    total = 0.0
    for s in stages:
        v_all = out.visual_maps[s].double()
        a_all = out.audio_maps[s].double()
        h, w = v_all.shape[-2:]
        masks = []
        for f in range(frames):
            if setting == "s4":
                masks.append(ref_pool(sigmoid(logits[f, 0]), h, w, flags["pool"]))
            elif setting == "ms3":
                masks.append(sigmoid(ref_pool(logits[f, 0], h, w, flags["pool"])))
            else:
                cls = logits[f].argmax(0)
                masks.append(ref_pool((cls != background).double(), h, w, flags["pool"]))
        if setting == "s4":
            losses = []
            for f in range(frames):
                m = ref_normalize(ref_masked_feature(v_all[f], masks[f], True))
                a = ref_normalize(a_all[f])
                losses.append(-math.log(max(float((m * a).sum()), 0.0) + 1e-6))
            total += sum(losses) / frames
            continue
        audio = [ref_normalize(a) if flags["norm"] else a for a in a_all]
        if flags["closer"]:
            feats = [ref_masked_feature(v_all[f], masks[f], False) for f in range(frames)]
            feats = [ref_normalize(m) if flags["norm"] else m for m in feats]
            near = ref_nearest(torch.stack(audio))
            if flags["euclid"]:
                per = [ref_euclid(feats[near[f]], feats[f]) for f in range(frames)]
            elif setting == "ms3":
                per = [ref_kl(feats[f], feats[near[f]]) for f in range(frames)]
            else:  # published AVSS: KL against the audio
                per = [ref_kl(feats[f], audio[f]) for f in range(frames)]
        else:
            feats = [ref_masked_feature(v_all[f], masks[f], flags["thr"]) for f in range(frames)]
            feats = [ref_normalize(m) if flags["norm"] else m for m in feats]
            if flags["euclid"]:
                per = [ref_euclid(audio[f], feats[f]) for f in range(frames)]
            else:
                per = [ref_kl(feats[f], audio[f]) for f in range(frames)]
        if setting == "ms3":
            total += sum(per) / frames if flags["euclid"] else sum(per)
        else:
            wts = gt_valid.double().tolist()
            total += sum(p * wt for p, wt in zip(per, wts)) / sum(wts)
    return total / len(stages)


# ---------------------------------------------------------------- segmentation losses


def test_s4_seg_loss_uses_annotated_first_frames_only():
    out = make_output(10)  # 2 clips x 5 frames
    gen = torch.Generator().manual_seed(1)
    masks = (torch.rand(10, 16, 16, generator=gen) > 0.5).float()
    gt_valid = torch.tensor([1.0, 0, 0, 0, 0] * 2)
    expected = sum(float(ref_bce(out.logits[f, 0], masks[f])) for f in (0, 5)) / 2
    got = s4_seg_loss(out.logits, masks, gt_valid)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # equal to the published sigmoid + nn.BCELoss on frames 0, 5 (moderate logits)
    published = nn.BCELoss()(torch.sigmoid(out.logits[[0, 5]]), masks[[0, 5]].unsqueeze(1))
    assert float(got) == pytest.approx(float(published), rel=1e-5)
    # unannotated frames have no influence
    changed = out.logits.clone()
    changed[1:5] += 7.0
    assert float(s4_seg_loss(changed, masks, gt_valid)) == pytest.approx(float(got), rel=1e-7)


def test_ms3_seg_loss_all_frames():
    out = make_output(10, seed=2)
    masks = (torch.rand(10, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.7).float()
    expected = sum(float(ref_bce(out.logits[f, 0], masks[f])) for f in range(10)) / 10
    assert float(ms3_seg_loss(out.logits, masks)) == pytest.approx(expected, rel=1e-6)
    published = nn.BCELoss()(torch.sigmoid(out.logits), masks.unsqueeze(1))
    assert float(ms3_seg_loss(out.logits, masks)) == pytest.approx(float(published), rel=1e-5)
    # known value: logit 0 -> BCE = log 2 whatever the target
    assert float(ms3_seg_loss(torch.zeros(2, 1, 3, 3), masks[:2, :3, :3])) == pytest.approx(
        math.log(2)
    )


def test_avss_seg_loss_weighted_frame_mean():
    out = make_output(6, num_classes=5, seed=3)
    masks = torch.randint(0, 5, (6, 16, 16), generator=torch.Generator().manual_seed(3))
    gt_valid = torch.tensor([1.0, 0, 1, 1, 0, 0])
    per_frame = []
    for f in range(6):
        log_probs = torch.log_softmax(out.logits[f].double(), dim=0)  # [K, H, W]
        total = 0.0
        for i in range(16):
            for j in range(16):
                total -= float(log_probs[masks[f, i, j], i, j])
        per_frame.append(total / 256)
    expected = sum(p * w for p, w in zip(per_frame, gt_valid.tolist())) / 3
    got = avss_seg_loss(out.logits, masks, gt_valid)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="int64"):
        avss_seg_loss(out.logits, masks.float(), gt_valid)


def test_seg_loss_shape_errors():
    out = make_output(4)
    with pytest.raises(ValueError, match="same size"):
        ms3_seg_loss(out.logits, torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="gt_valid"):
        s4_seg_loss(out.logits, torch.zeros(4, 16, 16), torch.ones(5))


# ---------------------------------------------------------------- AVM losses


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_sa_loss_equals_loops(pool):
    out = make_output(5, seed=4)
    stages = (0, 2, 3)
    expected = ref_avm(out, stages, "s4", {"pool": pool})
    got = sa_loss(out.logits, out.audio_maps, out.visual_maps, stages, pool)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_sa_loss_known_value():
    # visual features equal to the audio everywhere and a full mask: cosine 1 -> -log(1+1e-6)
    audio = torch.randn(3, CHANNELS)
    visual = audio[:, :, None, None].expand(3, CHANNELS, 4, 4).contiguous()
    logits = torch.full((3, 1, 8, 8), 5.0)
    got = sa_loss(logits, [audio], [visual], (0,))
    assert float(got) == pytest.approx(-math.log(1 + 1e-6), abs=1e-6)


MS3_FLAGS = [
    dict(zip(("pool", "thr", "norm", "closer", "euclid"), combo))
    for combo in itertools.product(
        ["avg", "max"], [False, True], [False, True], [False, True], [False, True]
    )
]


@pytest.mark.parametrize(
    "flags", MS3_FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items())
)
def test_masked_av_loss_equals_loops(flags):
    out = make_output(6, seed=5)
    stages = (0, 1, 2, 3)
    expected = ref_avm(out, stages, "ms3", flags)
    got = masked_av_loss(
        out.logits,
        out.audio_maps,
        out.visual_maps,
        stages,
        mask_pooling_type=flags["pool"],
        threshold=flags["thr"],
        norm_fea=flags["norm"],
        closer=flags["closer"],
        euclidean=flags["euclid"],
        kl=not flags["euclid"],
    )
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_masked_av_loss_flag_rules():
    out = make_output(4, seed=6)
    args = (out.logits, out.audio_maps, out.visual_maps, (1,))
    euclid = masked_av_loss(*args, euclidean=True)
    both = masked_av_loss(*args, euclidean=True, kl=True)  # euclidean wins, as published
    assert float(both) == float(euclid)
    with pytest.raises(ValueError, match="euclidean_flag or kl_flag"):
        masked_av_loss(*args)
    # closer ignores the threshold flag
    closer = masked_av_loss(*args, closer=True, kl=True)
    closer_thr = masked_av_loss(*args, closer=True, kl=True, threshold=True)
    assert float(closer) == float(closer_thr)
    # identical audio and masked features -> KL 0
    audio = torch.randn(2, CHANNELS)
    visual = audio[:, :, None, None].expand(2, CHANNELS, 2, 2).contiguous()
    zero = masked_av_loss(
        torch.full((2, 1, 4, 4), 9.0), [audio], [visual], (0,), threshold=True, kl=True
    )
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    # euclidean of identical features: torch's pairwise_distance adds 1e-6 to the difference
    # (normalised, so that the masked mean's 1e-6 does not matter)
    eps_only = masked_av_loss(
        torch.full((2, 1, 4, 4), 9.0),
        [audio],
        [visual],
        (0,),
        threshold=True,
        norm_fea=True,
        euclidean=True,
    )
    assert float(eps_only) == pytest.approx(1e-6 * math.sqrt(CHANNELS), rel=0.1)


AVSS_FLAGS = [
    dict(zip(("pool", "thr", "norm", "closer", "euclid"), combo))
    for combo in itertools.product(
        ["avg", "max"], [False, True], [False, True], [False, True], [False, True]
    )
    if combo[0] == "avg" or not combo[2]  # keep the grid small: max pooling without norm
]


AVSS_BACKGROUNDS = {"first": 0, "last": 3}  # the class index of each choice with 4 classes


@pytest.mark.parametrize("background", sorted(AVSS_BACKGROUNDS))
@pytest.mark.parametrize(
    "flags", AVSS_FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items())
)
def test_avss_masked_av_loss_equals_loops(flags, background):
    out = make_output(6, num_classes=4, seed=7)
    out.logits[:, 3] += 0.8  # the last class (the background before the fix) wins often
    gt_valid = torch.tensor([1.0, 0, 1, 1, 0, 1])
    stages = (0, 2)
    kwargs = dict(
        mask_pooling_type=flags["pool"],
        threshold=flags["thr"],
        norm_fea=flags["norm"],
        closer=flags["closer"],
        euclidean=flags["euclid"],
        kl=not flags["euclid"],
    )
    index = avss_background_index(background, num_classes=4)
    assert index == AVSS_BACKGROUNDS[background]
    args = (out.logits, out.audio_maps, out.visual_maps, gt_valid, stages)
    got = avss_masked_av_loss(*args, background_index=index, **kwargs)
    expected = ref_avm(out, stages, "avss", flags, gt_valid=gt_valid, background=index)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # the default is the published code today: class 0 is the background
    default = avss_masked_av_loss(*args, **kwargs)
    expected_bg0 = ref_avm(out, stages, "avss", flags, gt_valid=gt_valid, background=0)
    assert float(default) == pytest.approx(expected_bg0, rel=1e-5, abs=1e-7)


def test_avss_background_choices_differ_and_default_is_class_0():
    # 71 classes as AVSBench-semantic: background 0, and 70 ("woman"), the pre-fix background.
    # Class 0 wins the left half of every frame, class 70 the top half, so the two object
    # masks differ (the top-right quarter is an object for one choice only, and vice versa).
    out = make_output(4, num_classes=71, seed=12)
    out.logits[:, 0, :, :8] += 20.0
    out.logits[:, 70, :8, :] += 40.0
    masks = torch.randint(0, 71, (4, 16, 16), generator=torch.Generator().manual_seed(12))
    gt_valid = torch.tensor([1.0, 1, 0, 1])
    flags = {"pool": "avg", "thr": False, "norm": False, "closer": False, "euclid": False}
    published = LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)  # the AVSS preset
    assert published.avss_background == "first"
    before_fix = dataclasses.replace(published, avss_background="last")
    seg = float(avss_seg_loss(out.logits, masks, gt_valid))

    _, parts = tpavi_loss("avss", out, masks, gt_valid, published)
    _, parts_before = tpavi_loss("avss", out, masks, gt_valid, before_fix)
    av_bg0 = ref_avm(out, (0, 1, 2, 3), "avss", flags, gt_valid=gt_valid, background=0)
    av_bg70 = ref_avm(out, (0, 1, 2, 3), "avss", flags, gt_valid=gt_valid, background=70)
    assert parts["sa_loss"] == pytest.approx(av_bg0, rel=1e-5)
    assert parts["total_loss"] == pytest.approx(seg + 0.5 * av_bg0, rel=1e-5)
    assert parts_before["sa_loss"] == pytest.approx(av_bg70, rel=1e-5)
    assert abs(av_bg0 - av_bg70) > 0.05 * abs(av_bg0)  # a real difference, not rounding
    assert parts["iou_loss"] == parts_before["iou_loss"]  # only the AVM term changes


def test_avss_background_errors():
    out = make_output(2, num_classes=4, seed=13)
    args = (out.logits, out.audio_maps, out.visual_maps, torch.ones(2), (0,))
    with pytest.raises(ValueError, match="not a class"):
        avss_masked_av_loss(*args, kl=True, background_index=4)
    with pytest.raises(ValueError, match=r"valid: \['first', 'last'\]"):
        avss_background_index("middle", 71)
    assert avss_background_index("last", 71) == 70


def test_avm_stage_errors():
    out = make_output(4, tpavi_stages=(0, 1))
    with pytest.raises(ValueError, match="no TPAVI block"):
        masked_av_loss(out.logits, out.audio_maps, out.visual_maps, (2,), kl=True)
    with pytest.raises(ValueError, match="does not exist"):
        sa_loss(out.logits, out.audio_maps, out.visual_maps, (4,))
    with pytest.raises(ValueError, match="no stage"):
        sa_loss(out.logits, out.audio_maps, out.visual_maps, ())
    with pytest.raises(ValueError, match="mask_pooling_type"):
        sa_loss(out.logits, out.audio_maps, out.visual_maps, (0,), "median")


# ---------------------------------------------------------------- tpavi_loss


def test_tpavi_loss_s4_ms3_avss_totals():
    gen = torch.Generator().manual_seed(8)
    out = make_output(5, seed=8)
    masks = (torch.rand(5, 16, 16, generator=gen) > 0.5).float()
    gt_first = torch.tensor([1.0, 0, 0, 0, 0])

    total, parts = tpavi_loss("s4", out, masks, gt_first, LossConfig())
    assert float(total) == pytest.approx(float(ref_bce(out.logits[0, 0], masks[0])), rel=1e-6)
    assert parts["sa_loss"] == 0.0 and parts["total_loss"] == pytest.approx(float(total))

    cfg = LossConfig(sa_loss_flag=True, lambda_1=0.3, av_stages=(1, 3))
    total, parts = tpavi_loss("s4", out, masks, gt_first, cfg)
    sa = ref_avm(out, (1, 3), "s4", {"pool": "avg"})
    assert parts["sa_loss"] == pytest.approx(sa, rel=1e-5)
    assert float(total) == pytest.approx(parts["iou_loss"] + 0.3 * sa, rel=1e-5)
    assert total.requires_grad is False  # inputs without grad; with grad it back-propagates

    cfg = LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)  # the MS3 preset
    total, parts = tpavi_loss("ms3", out, masks, torch.ones(5), cfg)
    av = ref_avm(
        out,
        (0, 1, 2, 3),
        "ms3",
        {"pool": "avg", "thr": False, "norm": False, "closer": False, "euclid": False},
    )
    assert parts["iou_loss"] == pytest.approx(float(ms3_seg_loss(out.logits, masks)), rel=1e-7)
    assert float(total) == pytest.approx(parts["iou_loss"] + 0.5 * av, rel=1e-5)

    out = make_output(5, num_classes=4, seed=9)
    labels = torch.randint(0, 4, (5, 16, 16), generator=gen)
    gt_valid = torch.tensor([1.0, 1, 0, 1, 0])
    total, parts = tpavi_loss("avss", out, labels, gt_valid, cfg)
    av = ref_avm(
        out,
        (0, 1, 2, 3),
        "avss",
        {"pool": "avg", "thr": False, "norm": False, "closer": False, "euclid": False},
        gt_valid=gt_valid,
        background=0,  # the default: the published code since 2024-09-06
    )
    seg = float(avss_seg_loss(out.logits, labels, gt_valid))
    assert float(total) == pytest.approx(seg + 0.5 * av, rel=1e-5)


def test_tpavi_loss_backpropagates():
    out = make_output(5, seed=10)
    out.logits.requires_grad_(True)
    for v in out.visual_maps:
        v.requires_grad_(True)
    cfg = LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)
    total, _ = tpavi_loss("ms3", out, torch.zeros(5, 16, 16), torch.ones(5), cfg)
    total.backward()
    assert out.logits.grad is not None and out.logits.grad.abs().sum() > 0
    assert all(v.grad.abs().sum() > 0 for v in out.visual_maps)


def test_tpavi_loss_errors():
    out = make_output(5, seed=11)
    masks = torch.zeros(5, 16, 16)
    ones = torch.ones(5)
    with pytest.raises(ValueError, match="sa_loss_flag"):
        tpavi_loss("s4", out, masks, ones, LossConfig(masked_av_flag=True, kl_flag=True))
    with pytest.raises(ValueError, match="S4 option"):
        tpavi_loss("ms3", out, masks, ones, LossConfig(sa_loss_flag=True))
    with pytest.raises(ValueError, match="none of the options"):
        tpavi_loss("s4", out, masks, ones, LossConfig(sa_loss_flag=True, kl_flag=True))
    with pytest.raises(ValueError, match="unknown setting"):
        tpavi_loss("s5", out, masks, ones, LossConfig())
    with pytest.raises(FloatingPointError, match="not finite"):
        tpavi_loss("s4", out, masks, torch.zeros(5), LossConfig())  # no annotated frame
    out.logits[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        tpavi_loss("ms3", out, masks, ones, LossConfig())
