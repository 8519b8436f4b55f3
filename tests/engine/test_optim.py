"""engine/optim.py: each lr schedule against its formula computed by hand, parameter groups
and the backbone multiplier, full-model gradient clipping against clip_grad_norm_, SGD /
AdamW / Adam updates against their update rules, method hooks, schedule state, flags."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from avsbench import config as C
from avsbench.engine import optim
from avsbench.engine import options as O
from avsbench.engine.resume import RunPlan
from avsbench.models import registry


class _Net(nn.Module):
    """A model shaped like the project's: a `visual` backbone and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.visual = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(x))


def _cfg(**train: object) -> C.Config:
    return C.override(registry.preset("s4"), {f"train.{k}": v for k, v in train.items()})


def _lrs(cfg: C.Config, iterations: int, total: int) -> list[list[float]]:
    """The lrs of every group before each of `iterations` iterations."""
    opt = optim.build_optimizer(_Net(), cfg)
    schedule = optim.LRSchedule(opt, cfg, total)
    seen = []
    for _ in range(iterations):
        seen.append(schedule.lrs())
        schedule.step()
    return seen


# ---------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------
def test_poly_schedule_follows_its_formula_and_ends_at_zero():
    base = 2e-4
    seen = _lrs(_cfg(lr=base, schedule="poly", poly_power=0.9), 12, total=10)
    for it in range(10):
        assert seen[it] == [pytest.approx(base * (1 - it / 10) ** 0.9, rel=1e-12, abs=0)]
    assert seen[10] == seen[11] == [0.0]  # past the horizon: 0, not a complex number


def test_step_schedule_multiplies_at_each_milestone():
    base = 0.1
    seen = _lrs(_cfg(lr=base, schedule="step", lr_steps=(3, 6), lr_gamma=0.5), 8, total=100)
    expected = [base] * 3 + [base * 0.5] * 3 + [base * 0.25] * 2
    assert [lr for (lr,) in seen] == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_ramps_from_the_factor_then_hands_over():
    base = 1.0
    seen = _lrs(_cfg(lr=base, warmup_iters=4, warmup_factor=0.25), 6, total=100)
    # 0.25 * (1 - i/4) + i/4: 0.25, 0.4375, 0.625, 0.8125, then the constant lr
    assert [lr for (lr,) in seen] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0])


def test_warmup_multiplies_the_poly_schedule():
    base, total = 1e-3, 20
    cfg = _cfg(lr=base, schedule="poly", warmup_iters=5, warmup_factor=0.1, poly_power=0.9)
    seen = _lrs(cfg, 8, total)
    for it in range(8):
        warm = 0.1 * (1 - it / 5) + it / 5 if it < 5 else 1.0
        assert seen[it] == [pytest.approx(base * warm * (1 - it / total) ** 0.9, rel=1e-12)]


def test_constant_schedule_keeps_the_lr_bit_exact():
    cfg = _cfg(lr=1e-4)
    assert {lr for (lr,) in _lrs(cfg, 50, total=10)} == {1e-4}  # ==, not approx


# ---------------------------------------------------------------------------------------
# Parameter groups and hooks
# ---------------------------------------------------------------------------------------
def test_default_optimizer_is_the_published_one_group_adam():
    model = _Net()
    opt = optim.build_optimizer(model, _cfg(lr=1e-4))
    assert type(opt) is torch.optim.Adam and len(opt.param_groups) == 1
    (group,) = opt.param_groups
    assert group["params"] == list(model.parameters())  # the model's order, as before
    assert group["lr"] == 1e-4 and group["weight_decay"] == 0  # wt_dec not applied


def test_backbone_group_gets_the_multiplied_lr_through_the_schedule():
    model, base, total = _Net(), 1e-3, 10
    cfg = _cfg(lr=base, backbone_lr_mult=0.1, schedule="poly")
    opt = optim.build_optimizer(model, cfg)
    backbone, rest = opt.param_groups
    assert backbone["params"] == list(model.visual.parameters())
    assert rest["params"] == list(model.head.parameters())
    schedule = optim.LRSchedule(opt, cfg, total)
    for it in range(4):
        poly = (1 - it / total) ** 0.9
        assert backbone["lr"] == pytest.approx(base * 0.1 * poly, rel=1e-12)
        assert rest["lr"] == pytest.approx(base * poly, rel=1e-12)
        schedule.step()


def test_method_hooks_choose_the_backbone_and_freeze_it():
    class Other(nn.Module):  # a method whose backbone is not `.visual`
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = nn.Linear(2, 2), nn.Linear(2, 2)

    def groups(model):
        return {"backbone": list(model.encoder.parameters()),
                "rest": list(model.decoder.parameters())}  # fmt: skip

    hooks = optim.MethodHooks(
        param_groups=groups,
        set_backbone_trainable=lambda model, on: model.encoder.requires_grad_(on),
    )
    model, cfg = Other(), _cfg(lr=1.0, backbone_lr_mult=0.5, freeze_backbone_epochs=2)
    opt = optim.build_optimizer(model, cfg, hooks)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 1.0]
    assert opt.param_groups[0]["params"] == list(model.encoder.parameters())
    for epoch, trainable in [(0, False), (1, False), (2, True)]:
        assert optim.set_backbone_trainable(model, epoch, cfg, hooks) is trainable
        assert all(p.requires_grad is trainable for p in model.encoder.parameters())
        assert all(p.requires_grad for p in model.decoder.parameters())
    with pytest.raises(AttributeError):  # the default hook: `.visual`, which Other lacks
        optim.set_backbone_trainable(model, 0, cfg)


def test_param_groups_that_do_not_partition_the_model_are_refused():
    model = _Net()
    lost = optim.MethodHooks(param_groups=lambda m: {"rest": list(m.head.parameters())})
    with pytest.raises(ValueError, match="4 are in no group"):
        optim.build_optimizer(model, _cfg(), lost)
    twice = optim.MethodHooks(
        param_groups=lambda m: {"backbone": list(m.parameters()), "rest": list(m.parameters())}
    )
    with pytest.raises(ValueError, match="in groups 'backbone' and 'rest'"):
        optim.build_optimizer(model, _cfg(), twice)


# ---------------------------------------------------------------------------------------
# Clipping and updates
# ---------------------------------------------------------------------------------------
def _loss(model: nn.Module) -> torch.Tensor:
    x = torch.linspace(-2, 2, 15).reshape(5, 3)
    return (model(x) ** 2).sum() * 10  # large gradients: the clip is active


def test_clipping_equals_clip_grad_norm_by_hand_and_the_norm_formula():
    cfg = _cfg(lr=1e-2, optimizer="sgd", momentum=0.0)
    a = _Net()
    b = copy.deepcopy(a)
    opt_a, opt_b = optim.build_optimizer(a, cfg), optim.build_optimizer(b, cfg)
    scaler = optim.make_scaler(torch.device("cpu"), "off")

    _loss(b).backward()  # by hand: the raw gradients, their norm, clip_grad_norm_, step
    raw = [p.grad.clone() for p in b.parameters()]
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in raw))
    assert norm > 0.5
    torch.nn.utils.clip_grad_norm_(list(b.parameters()), 0.5)
    for g, p in zip(raw, b.parameters()):
        assert torch.allclose(p.grad, g * (0.5 / (norm + 1e-6)), rtol=1e-5)
    opt_b.step()

    optim.optimizer_step(_loss(a), opt_a, scaler, clip_norm=0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_clipping_sees_the_unscaled_gradients_of_an_fp16_scaler():
    """With the fp16 gradient scaler (loss x 65536, a power of two: exact), the gradients are
    unscaled before the clip, so the clipped update equals the one without a scaler."""
    cfg = _cfg(lr=1e-2, optimizer="sgd")  # not scale invariant, unlike Adam
    a = _Net()
    b = copy.deepcopy(a)
    opt_a, opt_b = optim.build_optimizer(a, cfg), optim.build_optimizer(b, cfg)
    scaled = optim.make_scaler(torch.device("cpu"), "fp16")
    assert scaled.is_enabled() and scaled.get_scale() == 65536.0
    for _ in range(2):
        optim.optimizer_step(_loss(a), opt_a, scaled, clip_norm=0.5)
        optim.optimizer_step(_loss(b), opt_b, optim.make_scaler(b.head.weight.device, "off"),
                             clip_norm=0.5)  # fmt: skip
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_sgd_with_momentum_and_decay_follows_its_update_rule():
    lr, mu, wd = 0.05, 0.9, 0.01
    model = _Net()
    opt = optim.build_optimizer(model, _cfg(lr=lr, optimizer="sgd", momentum=mu, weight_decay=wd))
    assert type(opt) is torch.optim.SGD
    scaler = optim.make_scaler(torch.device("cpu"), "off")
    w0 = model.head.weight.detach().clone()
    optim.optimizer_step(_loss(model), opt, scaler)
    g0 = model.head.weight.grad.clone()
    buf = g0 + wd * w0
    w1 = w0 - lr * buf
    assert torch.allclose(model.head.weight, w1, rtol=1e-6, atol=1e-7)
    optim.optimizer_step(_loss(model), opt, scaler)
    buf = mu * buf + model.head.weight.grad + wd * w1
    state = opt.state[model.head.weight]["momentum_buffer"]
    assert torch.allclose(state, buf, rtol=1e-6, atol=1e-6)
    assert torch.allclose(model.head.weight, w1 - lr * buf, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weight_decay,applied", [(None, 0.01), (0.05, 0.05)])
def test_adamw_first_step_and_its_decay(weight_decay, applied):
    lr = 1e-3
    model = _Net()
    cfg = _cfg(lr=lr, optimizer="adamw", weight_decay=weight_decay)
    opt = optim.build_optimizer(model, cfg)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == applied
    w0 = model.head.weight.detach().clone()
    optim.optimizer_step(_loss(model), opt, optim.make_scaler(torch.device("cpu"), "off"))
    g = model.head.weight.grad
    # step 1: m_hat = g, v_hat = g^2 -> w (1 - lr wd) - lr g / (|g| + eps)
    expected = w0 * (1 - lr * applied) - lr * g / (g.abs() + 1e-8)
    assert torch.allclose(model.head.weight, expected, rtol=1e-5, atol=1e-7)
    state = opt.state[model.head.weight]
    assert float(state["step"]) == 1.0
    assert torch.allclose(state["exp_avg"], 0.1 * g) and torch.allclose(
        state["exp_avg_sq"], 0.001 * g * g
    )


# ---------------------------------------------------------------------------------------
# Schedule state, plan, config and flags
# ---------------------------------------------------------------------------------------
def test_schedule_state_round_trips_and_a_position_mismatch_is_refused():
    cfg = _cfg(lr=1e-3, schedule="poly", warmup_iters=3, backbone_lr_mult=0.1)
    opt = optim.build_optimizer(_Net(), cfg)
    running = optim.LRSchedule(opt, cfg, 10)
    for _ in range(4):
        running.step()
    state = running.state_dict()
    assert state == {"iteration": 4, "base_lrs": [pytest.approx(1e-4), 1e-3]}

    fresh_opt = optim.build_optimizer(_Net(), cfg)
    optim.LRSchedule(fresh_opt, cfg, 10).resume(4, state)
    assert [g["lr"] for g in fresh_opt.param_groups] == running.lrs()
    derived_opt = optim.build_optimizer(_Net(), cfg)  # an older checkpoint: no state
    optim.LRSchedule(derived_opt, cfg, 10).resume(4, None)
    assert [g["lr"] for g in derived_opt.param_groups] == running.lrs()
    with pytest.raises(O.SetupError, match="at iteration 4, its position at 5"):
        optim.LRSchedule(optim.build_optimizer(_Net(), cfg), cfg, 10).resume(5, state)


def test_run_plan_by_iterations():
    cfg = _cfg(max_iters=7, eval_interval_iters=2)
    plan = RunPlan(cfg, steps_per_epoch=3)
    assert plan.by_iters and plan.total_iters == 7 and plan.num_epochs == 3
    assert [plan.epoch_steps(e) for e in range(3)] == [3, 3, 1]
    assert [it for it in range(1, 8) if plan.validation_due(0, it)] == [2, 4, 6, 7]
    by_epochs = RunPlan(_cfg(max_epoches=4), steps_per_epoch=3)
    assert by_epochs.total_iters == 12 and by_epochs.num_epochs == 4
    assert by_epochs.epoch_steps(3) == 3


@pytest.mark.parametrize(
    "change,message",
    [
        ({"optimizer": "lion"}, "unknown train.optimizer 'lion'"),
        ({"schedule": "cosine"}, "unknown train.schedule 'cosine'"),
        ({"backbone_lr_mult": -0.1}, "train.backbone_lr_mult must be >= 0"),
        ({"lr_steps": (5, 3)}, "train.lr_steps must be increasing"),
        ({"grad_clip_norm": 0.0}, "train.grad_clip_norm must be > 0"),
        ({"warmup_factor": 0.0}, "train.warmup_factor must be in (0, 1]"),
    ],
)
def test_config_values_that_cannot_work_are_refused(change, message):
    with pytest.raises(O.SetupError, match=message.replace("(", r"\(").replace("]", r"\]")):
        optim.build_optimizer(_Net(), _cfg(**change))


def test_flags_map_onto_the_config_and_nonsense_is_refused(capsys):
    parser = O.build_train_parser("s4")
    args = parser.parse_args(
        "--max_iters 90000 --eval_interval_iters 5000 --optimizer adamw --weight_decay 0.05 "
        "--schedule poly --poly_power 0.9 --warmup_iters 10 --backbone_lr_mult 0.1 "
        "--grad_clip_norm 0.01 --lr_steps 100 200".split()
    )
    cfg = O.apply(registry.preset("s4"), O.train_overrides(args, "s4"))
    t = cfg.train
    assert (t.max_iters, t.eval_interval_iters, t.optimizer, t.weight_decay) == (
        90000, 5000, "adamw", 0.05)  # fmt: skip
    assert (t.schedule, t.poly_power, t.warmup_iters, t.backbone_lr_mult) == ("poly", 0.9, 10, 0.1)
    assert t.grad_clip_norm == 0.01 and t.lr_steps == (100, 200)
    assert registry.config_from_dict(C.to_dict(cfg)) == cfg  # a checkpoint's config round-trips
    assert O.train_overrides(parser.parse_args([]), "s4") == {}  # absent: the config
    for bad, text in [
        ("--backbone_lr_mult -1", "must be in [0, inf), got -1"),
        ("--grad_clip_norm 0", "must be in (0, inf), got 0"),
        ("--weight_decay inf", "must be in [0, inf), got inf"),
        ("--max_iters 0", "must be in [1, inf), got 0"),
        ("--lr_gamma 1.5", "must be in (0, 1], got 1.5"),
        ("--schedule cosine", "invalid choice: 'cosine'"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(bad.split())
        assert text in capsys.readouterr().err
