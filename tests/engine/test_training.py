"""The training loop: exact resume, run layout, best selection on the official mIoU,
Ctrl-C checkpoints, finite-loss check, bf16 autocast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from avsbench import config as C
from avsbench.commands import train as cmd_train
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import runs, train
from avsbench.engine.distributed import DistInfo
from avsbench.models import registry
from tests.engine.engine_helpers import tiny_flags


def _only_run(log_dir: Path) -> runs.RunDir:
    (root,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return runs.RunDir(root)


@pytest.mark.slow
def test_resume_is_exact_and_the_run_is_laid_out_as_published(tmp_path, s4_toy):
    straight = tmp_path / "straight"
    flags = {"max_steps_per_epoch": 1}
    assert cmd_train.main("s4", tiny_flags(s4_toy, straight, max_epoches=2, **flags)) == 0
    split = tmp_path / "split"
    assert cmd_train.main("s4", tiny_flags(s4_toy, split, max_epoches=1, **flags)) == 0
    first = _only_run(split)
    first_epoch = torch.load(first.last, weights_only=True)
    assert first_epoch["epoch"] == 0
    resumed = tiny_flags(s4_toy, split, max_epoches=2, resume="auto", **flags)
    assert cmd_train.main("s4", resumed) == 0
    assert _only_run(split) == first  # resumed in place

    a = torch.load(_only_run(straight).last, weights_only=True)
    b = torch.load(first.last, weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    assert a["model"].keys() == b["model"].keys()
    changed = 0
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
        changed += not torch.equal(a["model"][name], first_epoch["model"][name])
    assert changed > 10  # the second epoch really trained
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train"]["loss"] == hb["train"]["loss"] and ha["val"] == hb["val"]

    # the published layout: <log_dir>/<session>_<time>/{checkpoints,log}, config, logs
    run = _only_run(straight)
    assert run.root.name.startswith("S4_")
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["S4_best.pth", "last.pth"]
    assert any(p.name.startswith("events.out.tfevents") for p in run.log.iterdir())
    log_text = (run.log / "train.log").read_text()
    assert "epoch 1/2" in log_text and "epoch 2/2" in log_text and "val mIoU" in log_text
    stored = json.loads(run.config_json.read_text())
    sections = ("model", "data", "train", "eval", "runtime")
    cfg = registry.config_from_dict({k: stored[k] for k in sections})
    assert cfg == registry.config_from_dict(a["config"])
    assert cfg.data.image_size == 64 and cfg.model.arch.decoder_channels == 16
    assert (run.root / "command.txt").read_text().startswith("python train.py --synthetic")
    best = torch.load(run.best("S4"), weights_only=True)
    assert "optimizer" not in best and "rng" not in best
    vals = [h["val"]["miou"] for h in a["history"]]
    assert best["best_miou"] == max(vals) == a["best_miou"]
    assert best["epoch"] == vals.index(max(vals))


def test_validation_schedule():
    cfg = registry.preset("avss")  # 60 epochs; published: epoch >= 15 and epoch % 2 == 0 (0-based)
    epochs = [e for e in range(cfg.train.max_epoches) if train.should_validate(e, cfg)]
    assert epochs == list(range(16, 60, 2))
    odd = C.override(cfg, {"train.start_eval_epoch": 3, "train.eval_interval": 4})
    assert [e for e in range(20) if train.should_validate(e, odd)] == [4, 8, 12, 16]
    s4 = registry.preset("s4")
    assert all(train.should_validate(e, s4) for e in range(s4.train.max_epoches))


class _Stub:
    """A training run whose epochs and validations are scripted (no data, no model work)."""

    def __init__(self, monkeypatch, tmp_path, val_results, interrupt_at=None):
        self.epochs = []

        def fake_epoch(model, *args, **kwargs):
            epoch = args[6]
            if epoch == interrupt_at:
                raise KeyboardInterrupt
            with torch.no_grad():
                model.weight.add_(1.0)  # visible change per epoch
            self.epochs.append(epoch)
            return {"loss": 0.5, "steps": 1, "clips": 1, "seconds": 1.0, "clips_per_second": 1}

        results = iter(val_results)
        monkeypatch.setattr(train, "train_one_epoch", fake_epoch)
        monkeypatch.setattr(train, "evaluate", lambda *a, **k: next(results))
        cfg = C.override(registry.preset("s4"), {"train.max_epoches": len(val_results)})
        model = nn.Linear(2, 2)
        sampler = torch.utils.data.DistributedSampler(list(range(4)), 1, 0)
        self.run_dir = runs.create_run_dir(tmp_path, "S4")
        opt = torch.optim.Adam(model.parameters())
        self.trainer = train.Trainer(
            cfg, DistInfo(), model, None, [None], sampler, None, opt,
            train.make_scaler(torch.device("cpu"), "off"), self.run_dir,
        )  # fmt: skip


def test_best_checkpoint_follows_the_official_miou(monkeypatch, tmp_path):
    # the official mIoU peaks at epoch 1; the variants and F peak elsewhere
    vals = [
        {"miou": 0.20, "fscore": 0.90, "miou_per_frame": 0.90},
        {"miou": 0.50, "fscore": 0.10, "miou_per_frame": 0.10},
        {"miou": 0.30, "fscore": 0.95, "miou_per_frame": 0.95},
    ]
    stub = _Stub(monkeypatch, tmp_path, vals)
    result = stub.trainer.fit()
    assert result["best_miou"] == 0.5 and stub.epochs == [0, 1, 2]
    best = torch.load(stub.run_dir.best("S4"), weights_only=True)
    last = torch.load(stub.run_dir.last, weights_only=True)
    assert best["epoch"] == 1 and best["best_miou"] == 0.5
    assert last["epoch"] == 2 and last["best_miou"] == 0.5
    init_minus = last["model"]["weight"] - 3.0  # weights of the best epoch = init + 2
    assert torch.allclose(best["model"]["weight"], init_minus + 2.0, atol=1e-6)
    assert [h["val"]["miou"] for h in last["history"]] == [0.2, 0.5, 0.3]


def test_ctrl_c_saves_an_interrupted_checkpoint(monkeypatch, tmp_path, caplog):
    vals = [{"miou": 0.1, "fscore": 0.1}] * 3
    stub = _Stub(monkeypatch, tmp_path, vals, interrupt_at=1)
    runs.setup_logging(None)
    with pytest.raises(KeyboardInterrupt):
        stub.trainer.fit()
    runs.close_logging()
    ckpt = torch.load(stub.run_dir.interrupted, weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["interrupted_in_epoch"] == 1
    assert "optimizer" in ckpt and "rng" in ckpt
    assert runs.latest_file(tmp_path, "S4", ["last.pth", "interrupted.pth"]) in (
        stub.run_dir.interrupted,
        stub.run_dir.last,
    )


class _ZeroAudio(nn.Module):
    def forward(self, log_mel):
        return torch.zeros(log_mel.shape[0], 128)


class _NaNModel(nn.Module):
    """Logits that turn NaN from the second call on (a diverging model)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, frames, audio_emb, frame_valid=None, target_frames=None):  # as AVSModel
        from avsbench.models.tpavi.model import TPAVIOutput

        self.calls += 1
        logits = frames.mean(1, keepdim=True) * self.scale
        if self.calls > 1:
            logits = logits * float("nan")
        return TPAVIOutput(logits=logits, visual_maps=[logits] * 4, audio_maps=[None] * 4)


def test_non_finite_loss_names_the_step(s4_toy):
    """The loss stops on a non-finite loss (the one finite check); the loop names the
    epoch and step it happened in."""
    from avsbench.data.datasets import build_dataset
    from avsbench.engine.embeddings import AudioEmbedder

    cfg = C.override(
        registry.synthetic(registry.preset("s4")), {"data.image_size": 64, "train.max_epoches": 3}
    )
    info = DistInfo()
    data = build_dataset("s4", s4_toy, "train", image_size=64)
    loader, _ = train.build_train_loader(data, 1, info, seed=0, num_workers=0)
    model = _NaNModel()
    zero_audio = AudioEmbedder(_ZeroAudio(), "cpu")
    opt = torch.optim.Adam(model.parameters())
    scaler = train.make_scaler(info.device, "off")
    with pytest.raises(FloatingPointError, match="epoch 3, step 2: s4 loss is not finite"):
        train.train_one_epoch(model, zero_audio, loader, opt, scaler, cfg, info, 2)


def test_distributed_loss_config_scales_only_the_summed_kl_term():
    ms3 = registry.preset("ms3")  # KL masked-AV loss, summed over the frames of the batch
    assert train.distributed_loss_config(ms3, 1) is ms3.train.loss
    assert train.distributed_loss_config(ms3, 4).lambda_1 == pytest.approx(4 * 0.5)
    avss = registry.preset("avss")  # a gt_valid-weighted mean: handled by ddp_loss_weight instead
    assert train.distributed_loss_config(avss, 4).lambda_1 == 0.5
    euclid = C.override(ms3, {"train.loss.kl_flag": False, "train.loss.euclidean_flag": True})
    assert train.distributed_loss_config(euclid, 4).lambda_1 == 0.5


@pytest.mark.slow
def test_bf16_autocast_steps_change_the_weights(tmp_path, ms3_toy):
    """A few bf16 steps on the CPU: the model runs in bfloat16, the loss stays finite and
    every trained tensor moves."""
    from avsbench.data.datasets import build_dataset
    from avsbench.engine.embeddings import AudioEmbedder
    from avsbench.models.backbones.vggish import build_vggish
    from avsbench.models.registry import build_model_for

    cfg = C.override(
        registry.synthetic(registry.preset("ms3")),
        {"data.image_size": 64, "model.arch.decoder_channels": 16, "runtime.amp": "bf16",
         "runtime.channels_last": True,
         "train.max_steps_per_epoch": 2, "train.train_batch_size": 1,
         "model.arch.tpavi_stages": (3,), "train.loss.av_stages": (3,),
         # the published MS3 masked AV loss (the synthetic preset leaves it out)
         "train.loss.masked_av_flag": True, "train.loss.lambda_1": 0.5},
    )  # fmt: skip
    info = DistInfo()
    data = build_dataset("ms3", ms3_toy, "train", image_size=64)
    loader, _ = train.build_train_loader(data, 1, info, seed=0, num_workers=0)
    torch.manual_seed(0)
    model = build_model_for(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dtypes = []
    model.projections[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    model = train.prepare_model(model, cfg, info, sync_bn=None)  # channels_last
    assert (
        model.projections[0].conv2d_list[0].weight.is_contiguous(memory_format=torch.channels_last)
    )
    embedder = AudioEmbedder(build_vggish(cfg.model), "cpu")
    opt = train.build_optimizer(model, cfg)
    stats = train.train_one_epoch(
        model, embedder, loader, opt, train.make_scaler(info.device, "bf16"), cfg, info, 0
    )
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)
    assert stats["steps"] == 2 and torch.isfinite(torch.tensor(stats["loss"]))
    assert stats["sa_loss"] > 0  # the masked AV term was computed
    after = model.state_dict()
    moved = [k for k, p in model.named_parameters() if not torch.equal(before[k], after[k])]
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert len(moved) >= 0.9 * len(trainable)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    ckpt_io.seed_everything(0)
