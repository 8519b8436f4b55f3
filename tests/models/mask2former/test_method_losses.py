"""COMBO's and VCT's training losses (avsbench/models/combo/losses.py,
avsbench/models/vct/losses.py): the cosine and prototype terms against independent loops,
the totals against their parts, gradients, refusals, and a CUDA-free run."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from avsbench.models.combo.losses import combo_loss, temporal_cosine_loss
from avsbench.models.mask2former.criterion import CriterionConfig, set_criterion, weighted_set_total
from avsbench.models.mask2former.output import Mask2FormerOutput
from avsbench.models.vct.losses import (
    VCT_S4_CATEGORY_IDS,
    prototype_loss,
    s4_prototype_index,
    vct_loss,
)

SMALL = CriterionConfig(num_points=32)


def random_output(n, classes, gen, queries=4, size=4, layers=3, protos=0, dim=8):
    def pair():
        return (
            torch.randn(n, queries, classes + 1, generator=gen).requires_grad_(),
            torch.randn(n, queries, size, size, generator=gen).requires_grad_(),
        )

    logits, masks = pair()
    extras = {}
    if protos:
        extras = {
            "feat_audio": torch.randn(n, dim, generator=gen).requires_grad_(),
            "feat_proto": torch.randn(protos, dim, generator=gen).requires_grad_(),
            "logit_scale": torch.tensor(math.log(1 / 0.07)).requires_grad_(),
        }
    return Mask2FormerOutput(
        logits=torch.zeros(n, 1, 2, 2), pred_logits=logits, pred_masks=masks,
        aux_outputs=[pair() for _ in range(layers)], extras=extras,
    )  # fmt: skip


def s4_batch(clips, gen, size=8):
    masks = (torch.rand(clips * 5, size, size, generator=gen) > 0.6).float()
    gt_valid = torch.zeros(clips * 5)
    gt_valid[::5] = 1.0  # S4 training: frame 1 of each clip
    return masks, gt_valid


def loop_cosine(mask_logits):
    """Independent loop: groups of 5 frames, pairs t, t+1, l e^-l, mean over groups and pairs."""
    flat = mask_logits.double().reshape(mask_logits.shape[0], -1)
    groups = flat.shape[0] // 5
    total = 0.0
    for g in range(groups):
        for t in range(4):
            a, b = flat[5 * g + t].tolist(), flat[5 * g + t + 1].tolist()
            dot = sum(x * y for x, y in zip(a, b))
            cos = dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
            distance = 1 - cos
            total += distance * math.exp(-distance)
    return total / groups / 4


@pytest.mark.parametrize("frames", [5, 10])
def test_cosine_loss_matches_an_independent_loop(frames):
    logits = torch.randn(frames, 3, 4, 4, generator=torch.Generator().manual_seed(frames))
    logits[1] = logits[0] * 2.0  # a pair with cos 1: contributes 0
    assert temporal_cosine_loss(logits).item() == pytest.approx(loop_cosine(logits), rel=1e-5)
    same = logits[:1].repeat(frames, 1, 1, 1)
    assert temporal_cosine_loss(same).item() == pytest.approx(0.0, abs=1e-6)


def test_cosine_loss_refuses_a_partial_group():
    with pytest.raises(ValueError, match="groups of 5 frames; got 7"):
        temporal_cosine_loss(torch.zeros(7, 2, 2, 2))


def test_cosine_loss_leaves_out_padding_groups():
    """AVSS: a v1m clip padded to 10 frames counts as its 5 real frames (published: no
    padding frames in the batch); a v2 clip as two groups."""
    logits = torch.randn(20, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    logits[5:10] = logits[5]  # padding frames look alike: their pairs cost 0
    valid = torch.tensor([1.0] * 5 + [0.0] * 5 + [1.0] * 10)  # v1m clip, v2 clip
    real = torch.cat([logits[:5], logits[10:]])
    got = temporal_cosine_loss(logits, valid)
    assert got.item() == pytest.approx(loop_cosine(real), rel=1e-5)
    assert temporal_cosine_loss(logits).item() == pytest.approx(got.item() * 3 / 4, rel=1e-5)
    with pytest.raises(ValueError, match="mixes real and padding frames"):
        temporal_cosine_loss(logits, torch.tensor([1.0] * 7 + [0.0] * 13))
    with pytest.raises(ValueError, match="no real frame"):
        temporal_cosine_loss(logits, torch.zeros(20))


def test_combo_reads_frame_valid_from_the_output():
    gen = torch.Generator().manual_seed(12)
    masks = torch.randint(0, 71, (10, 8, 8), generator=gen)
    gt_valid = torch.tensor([1.0] * 5 + [0.0] * 5)
    out = random_output(10, 71, gen)
    for _, aux_masks in out.aux_outputs:
        aux_masks.data[5:] = aux_masks.data[5]  # padding frames look alike: cost 0
    _, all_groups = combo_loss("avss", out, masks, gt_valid, criterion=SMALL, generator=gen)
    out.extras["frame_valid"] = gt_valid
    _, real_only = combo_loss("avss", out, masks, gt_valid, criterion=SMALL, generator=gen)
    expected = 10 * sum(loop_cosine(m[:5].detach()) for _, m in out.aux_outputs)
    assert real_only["loss_cosine"] == pytest.approx(expected, rel=1e-5)
    assert all_groups["loss_cosine"] == pytest.approx(expected / 2, rel=1e-5)


def test_combo_total_is_the_weighted_set_losses_plus_ten_cosines():
    gen = torch.Generator().manual_seed(0)
    masks, gt_valid = s4_batch(2, gen)
    out = random_output(10, 2, gen)
    total, parts = combo_loss("s4", out, masks, gt_valid, None, criterion=SMALL,
                              generator=torch.Generator().manual_seed(1))  # fmt: skip
    losses, rows, _ = set_criterion(
        "s4", out, masks, gt_valid, SMALL, torch.Generator().manual_seed(1)
    )
    set_total, _ = weighted_set_total(losses, SMALL)
    cosine = 10 * sum(loop_cosine(m.detach()) for _, m in out.aux_outputs)
    assert rows.tolist() == [0, 5]
    assert total.item() == pytest.approx(set_total.item() + cosine, rel=1e-5)
    assert parts["loss_cosine"] == pytest.approx(cosine, rel=1e-5)
    assert parts["total_loss"] == pytest.approx(total.item())
    assert sum(v for k, v in parts.items() if k != "total_loss") == pytest.approx(
        total.item(), rel=1e-5
    )
    total.backward()
    # set losses read frames 0 and 5 only; the cosine reads every frame of the aux masks
    assert out.pred_masks.grad[[1, 2, 3, 4, 6, 7, 8, 9]].abs().sum() == 0
    assert out.pred_masks.grad[[0, 5]].abs().sum() > 0
    assert out.pred_logits.grad[[0, 5]].abs().sum() > 0
    assert (out.aux_outputs[0][1].grad.abs().sum(dim=(1, 2, 3)) > 0).all()


def test_combo_ignores_the_masks_of_unannotated_frames():
    gen = torch.Generator().manual_seed(2)
    masks, gt_valid = s4_batch(1, gen)
    out = random_output(5, 2, gen)
    first, _ = combo_loss(
        "s4", out, masks, gt_valid, criterion=SMALL, generator=torch.Generator().manual_seed(3)
    )
    masks[1:] = 1 - masks[1:]
    again, _ = combo_loss(
        "s4", out, masks, gt_valid, criterion=SMALL, generator=torch.Generator().manual_seed(3)
    )
    assert again.item() == first.item()


def test_combo_avss_runs_on_class_ids_with_ignored_pixels():
    gen = torch.Generator().manual_seed(4)
    masks = torch.randint(0, 71, (10, 8, 8), generator=gen)
    masks[0, 0] = 255
    out = random_output(10, 71, gen)
    total, parts = combo_loss("avss", out, masks, torch.ones(10), criterion=SMALL, generator=gen)
    assert math.isfinite(total.item()) and set(parts) == {
        "loss_ce", "loss_mask", "loss_dice", "loss_cosine", "total_loss"}  # fmt: skip


def test_combo_refuses_another_methods_output():
    from avsbench.models.contract import AVSOutput

    with pytest.raises(TypeError, match="Mask2FormerOutput"):
        combo_loss(
            "s4", AVSOutput(logits=torch.zeros(5, 1, 4, 4)), torch.zeros(5, 4, 4), torch.ones(5)
        )


def hand_bce(x: float, y: float) -> float:
    return max(x, 0.0) - x * y + math.log(1 + math.exp(-abs(x)))


def hand_proto(audio, proto, scale, y):
    total = 0.0
    for f in range(audio.shape[0]):
        a = audio[f].tolist()
        for c in range(proto.shape[0]):
            p = proto[c].tolist()
            cos = sum(u * v for u, v in zip(a, p)) / math.sqrt(
                sum(u * u for u in a) * sum(v * v for v in p)
            )
            total += hand_bce(math.exp(scale) * cos, y[f][c])
    return total / (audio.shape[0] * proto.shape[0])


def test_vct_s4_proto_loss_by_hand():
    gen = torch.Generator().manual_seed(5)
    masks, gt_valid = s4_batch(2, gen)
    out = random_output(10, 2, gen, protos=23)
    categories = ["race_car", "helicopter"]
    total, parts = vct_loss(
        "s4", out, masks, gt_valid, None, categories=categories, criterion=SMALL,
        generator=torch.Generator().manual_seed(6),
    )  # fmt: skip
    y = [[0.0] * 23 for _ in range(2)]
    y[0][22] = 1.0  # race_car: VCT label 23
    y[1][0] = 1.0  # helicopter: VCT label 1
    extras = out.extras
    expected = hand_proto(extras["feat_audio"][[0, 5]].detach(), extras["feat_proto"].detach(),
                          math.log(1 / 0.07), y)  # fmt: skip
    assert parts["loss_proto"] == pytest.approx(expected, rel=1e-5)
    losses, _, _ = set_criterion(
        "s4", out, masks, gt_valid, SMALL, torch.Generator().manual_seed(6)
    )
    assert total.item() == pytest.approx(
        weighted_set_total(losses, SMALL)[0].item() + expected, rel=1e-5
    )
    total.backward()
    for tensor in (extras["logit_scale"], extras["feat_proto"], out.pred_logits, out.pred_masks):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert extras["feat_audio"].grad[[1, 2, 3, 4]].abs().sum() == 0  # unannotated frames


def test_vct_avss_proto_targets_are_the_frames_classes():
    gen = torch.Generator().manual_seed(7)
    masks = torch.zeros(10, 4, 4, dtype=torch.int64)
    masks[0, :2] = 12
    masks[0, 3, 3] = 255  # ignored: no class
    masks[3] = 70
    gt_valid = torch.zeros(10)
    gt_valid[[0, 3]] = 1
    out = random_output(10, 71, gen, protos=71)
    _, parts = vct_loss("avss", out, masks, gt_valid, criterion=SMALL, generator=gen)
    y = [[0.0] * 71 for _ in range(2)]
    y[0][0] = y[0][12] = 1.0
    y[1][70] = 1.0
    expected = hand_proto(out.extras["feat_audio"][[0, 3]].detach(),
                          out.extras["feat_proto"].detach(), math.log(1 / 0.07), y)  # fmt: skip
    assert parts["loss_proto"] == pytest.approx(expected, rel=1e-5)


def test_prototype_loss_with_one_prototype_copy_per_frame():
    gen = torch.Generator().manual_seed(8)
    audio, protos = torch.randn(2, 6, generator=gen), torch.randn(3, 6, generator=gen)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    shared = prototype_loss(audio, protos, torch.tensor(0.3), y)
    per_frame = prototype_loss(audio, protos.expand(2, 3, 6), torch.tensor(0.3), y)
    assert shared.item() == pytest.approx(hand_proto(audio, protos, 0.3, y.tolist()), rel=1e-6)
    assert per_frame.item() == pytest.approx(shared.item(), rel=1e-6)


def test_vct_ms3_has_no_prototype_term():
    gen = torch.Generator().manual_seed(9)
    masks = (torch.rand(5, 8, 8, generator=gen) > 0.5).float()
    out = random_output(5, 2, gen)
    total, parts = vct_loss("ms3", out, masks, torch.ones(5), criterion=SMALL, generator=gen)
    assert "loss_proto" not in parts and "loss_cosine" not in parts
    assert parts["total_loss"] == pytest.approx(total.item())


def test_vct_refusals_name_the_missing_input():
    gen = torch.Generator().manual_seed(10)
    masks, gt_valid = s4_batch(1, gen)
    with pytest.raises(
        ValueError, match=r"needs each clip's category .*categories=batch\['category'\]"
    ):
        vct_loss("s4", random_output(5, 2, gen, protos=23), masks, gt_valid, criterion=SMALL)
    with pytest.raises(ValueError, match="unknown S4 category 'v1s'"):
        vct_loss("s4", random_output(5, 2, gen, protos=23), masks, gt_valid,
                 categories=["v1s"], criterion=SMALL)  # fmt: skip
    with pytest.raises(ValueError, match=r"needs output.extras \['feat_audio'"):
        vct_loss("s4", random_output(5, 2, gen), masks, gt_valid, categories=["helicopter"],
                 criterion=SMALL)  # fmt: skip


def test_vct_s4_category_order_is_vct_own():
    assert len(VCT_S4_CATEGORY_IDS) == 23
    assert sorted(VCT_S4_CATEGORY_IDS.values()) == list(range(1, 24))
    from avsbench.data.layouts import S4_CATEGORIES

    assert set(VCT_S4_CATEGORY_IDS) == set(S4_CATEGORIES)
    assert s4_prototype_index("helicopter") == 0 and s4_prototype_index("baby_laughter") == 7


def test_losses_run_without_touching_cuda():
    """A fresh interpreter runs both losses on the CPU and never initialises CUDA."""
    code = (
        "import torch, math\n"
        "from tests.models.mask2former.test_method_losses import random_output, s4_batch, SMALL\n"
        "from avsbench.models.combo.losses import combo_loss\n"
        "from avsbench.models.vct.losses import vct_loss\n"
        "g = torch.Generator().manual_seed(0)\n"
        "m, v = s4_batch(1, g)\n"
        "a, _ = combo_loss('s4', random_output(5, 2, g), m, v, criterion=SMALL)\n"
        "b, _ = vct_loss('s4', random_output(5, 2, g, protos=23), m, v, categories=['helicopter'],"
        " criterion=SMALL)\n"
        "(a + b).backward()\n"
        "assert math.isfinite(a.item() + b.item())\n"
        "print('cuda initialised:', torch.cuda.is_initialized())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cuda initialised: False" in done.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu_with_the_same_generator():
    gen = torch.Generator().manual_seed(11)
    masks, gt_valid = s4_batch(2, gen)
    out = random_output(10, 2, gen, protos=23)
    cats = ["dog_barking", "cat_meowing"]
    cpu, _ = vct_loss("s4", out, masks, gt_valid, categories=cats, criterion=SMALL,
                      generator=torch.Generator().manual_seed(1))  # fmt: skip
    moved = Mask2FormerOutput(
        logits=out.logits.cuda(), pred_logits=out.pred_logits.detach().cuda(),
        pred_masks=out.pred_masks.detach().cuda(),
        aux_outputs=[(a.detach().cuda(), b.detach().cuda()) for a, b in out.aux_outputs],
        extras={k: v.detach().cuda() for k, v in out.extras.items()},
    )  # fmt: skip
    gpu, _ = vct_loss("s4", moved, masks.cuda(), gt_valid.cuda(), categories=cats,
                      criterion=SMALL, generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert gpu.device.type == "cuda"
    assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)
