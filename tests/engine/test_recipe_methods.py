"""COMBO and VCT through the engine features the other methods have, with their recipes'
augmentation on: exact resume (Ctrl-C mid-epoch, then --resume), TensorBoard, test --report,
torchrun-style DDP (2 CPU processes, gloo) and bf16 autocast.

These models are large for a CPU even in their synthetic configuration, so the runs are as
short as still tests something: one clip per step, two or three steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.data.augment import AugmentedDataset
from avsbench.data.datasets import build_dataset
from avsbench.data.extra_inputs import MASKIGE
from avsbench.engine import train
from avsbench.engine.distributed import DistInfo, cleanup_distributed, init_distributed
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.engine.step import forward
from avsbench.models import registry
from avsbench.models.contract import unwrap
from tests.engine.test_ddp import _free_port, _freeze_batchnorm

COMBO_FLAGS = {"method": "combo", "train_batch_size": 1, "val_batch_size": 1,
               "max_epoches": 1, "max_steps_per_epoch": 3}  # fmt: skip
# the recipe's augmentation on (the synthetic configs measured without it turn it off)
TINY_COMBO = {"data.augment": "mask2former", "model.arch.num_queries": 4,
              "model.arch.hidden_dim": 32, "model.arch.heads": 2,
              "model.arch.decoder_layers": 1, "model.arch.encoder_layers": 1,
              "model.arch.decoder_ffn_dim": 32, "model.arch.encoder_ffn_dim": 32,
              "model.arch.audio_hidden_dim": 32}  # fmt: skip
TINY_VCT = {"data.augment": "mask2former", "model.arch.swin_embed_dim": 16,
            "model.arch.num_queries": 4,
            "model.arch.hidden_dim": 32, "model.arch.decoder_heads": 2,
            "model.arch.decoder_ffn_dim": 32, "model.arch.encoder_ffn_dim": 32,
            "model.arch.audio_hidden_dim": 32, "model.arch.mixer_dim": 16}  # fmt: skip


def tiny_synthetic(monkeypatch) -> None:
    """--synthetic builds the method's synthetic config shrunk further (TINY_*)."""
    original = registry.synthetic

    def shrunk(cfg):
        cfg = original(cfg)
        tiny = {"combo": TINY_COMBO, "vct": TINY_VCT}.get(cfg.model.method)
        return C.override(cfg, tiny) if tiny else cfg

    monkeypatch.setattr(registry, "synthetic", shrunk)


def _flags(root: Path, log_dir: Path, **values: object) -> list[str]:
    argv = ["--synthetic", "--data_root", str(root), "--log_dir", str(log_dir),
            "--num_workers", "0", "--device", "cpu"]  # fmt: skip
    for key, value in values.items():
        argv += [f"--{key}", str(value)]
    return argv


def _last(log_dir: Path) -> dict:
    (run,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return torch.load(run / "checkpoints" / "last.pth", weights_only=True)


@pytest.mark.slow
def test_combo_recipe_run_resumes_exactly_and_reports(tmp_path, s4_toy, monkeypatch):
    tiny_synthetic(monkeypatch)
    straight = tmp_path / "straight"
    assert cmd_train.main("s4", _flags(s4_toy, straight, **COMBO_FLAGS)) == 0

    def ctrl_c(self, epoch, steps):  # Ctrl-C after step 1 of epoch 0
        if (epoch, steps) == (0, 1):
            self.interrupt.requested = True

    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        patch.setattr(train.Trainer, "after_step", ctrl_c)
        assert cmd_train.main("s4", _flags(s4_toy, stopped, **COMBO_FLAGS)) == 130
    assert cmd_train.main("s4", _flags(s4_toy, stopped, resume="auto", **COMBO_FLAGS)) == 0

    a, b = _last(straight), _last(stopped)
    cfg = registry.config_from_dict(a["config"])
    assert cfg.model.method == "combo" and cfg.data.augment == "mask2former"
    assert a["epoch"] == b["epoch"] == 0 and cfg.model.arch.num_queries == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    history = [{k: v for k, v in h["train"].items() if "second" not in k} for h in a["history"]]
    assert history == [
        {k: v for k, v in h["train"].items() if "second" not in k} for h in b["history"]
    ]
    assert history[0]["loss_cosine"] > 0 and history[0]["loss_ce"] > 0
    (run,) = [p for p in straight.iterdir() if p.is_dir()]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "log").iterdir())

    out_json = tmp_path / "metrics.json"
    test_flags = ["--synthetic", "--data_root", str(s4_toy), "--num_workers", "0",
                  "--device", "cpu", "--train_log_dir", str(straight), "--log_dir",
                  str(tmp_path / "test"), "--out_json", str(out_json), "--report",
                  "--report_max_videos", "1"]  # fmt: skip
    assert cmd_test.main("s4", test_flags) == 0
    (test_run,) = (tmp_path / "test").iterdir()
    assert len(list((test_run / "report").glob("*.png"))) == 1


def _tiny_combo() -> C.Config:
    return C.override(
        registry.synthetic(registry.preset("s4", method="combo")),
        {**TINY_COMBO, "train.train_batch_size": 2, "train.max_steps_per_epoch": 2,
         "runtime.num_workers": 0},
    )  # fmt: skip


def _ddp_worker(rank: int, world: int, root: str, out: str, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        from avsbench.models.backbones.vggish import build_vggish
        from avsbench.models.registry import build_model_for

        cfg = _tiny_combo()
        torch.manual_seed(cfg.train.seed)
        data = build_dataset("s4", root, "train", image_size=64, extra_inputs=(MASKIGE,),
                             augment=cfg.data.augment, augment_seed=cfg.train.seed)  # fmt: skip
        assert isinstance(data, AugmentedDataset)
        loader, sampler = train.build_train_loader(data, 1, info, seed=0, num_workers=0)
        model = build_model_for(cfg)
        _freeze_batchnorm(model)
        model = train.prepare_model(model, cfg, info, sync_bn=None)
        embedder = AudioEmbedder(build_vggish(cfg.model), info.device)
        optimizer = train.build_optimizer(model, cfg)
        sampler.set_epoch(1)
        batches = [batch for _, batch in zip(range(2), loader)]  # what the epoch will see
        seen = [b["video_id"][0] for b in batches]
        scaler = train.make_scaler(info.device, "off")
        stats = train.train_one_epoch(model, embedder, loader, optimizer, scaler, cfg, info, 1)
        state = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
        torch.save({"model": state, "stats": stats, "seen": seen,
                    "frames": [b["frames"] for b in batches]}, f"{out}.{rank}")  # fmt: skip
    finally:
        cleanup_distributed()


@pytest.mark.slow
def test_combo_ddp_two_processes_stay_in_sync_on_augmented_shards(tmp_path, s4_toy):
    """Each process trains on its shard of the augmented batches (the augmentation of a clip
    is the one a single process would draw) and DDP keeps both replicas identical."""
    out = str(tmp_path / "ddp")
    mp.spawn(_ddp_worker, args=(2, str(s4_toy), out, _free_port()), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    assert ranks[0]["stats"]["steps"] == 2 and set(ranks[0]["seen"]).isdisjoint(ranks[1]["seen"])
    for name, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][name]), name

    cfg = _tiny_combo()
    single = build_dataset("s4", s4_toy, "train", image_size=64, extra_inputs=(MASKIGE,),
                           augment=cfg.data.augment, augment_seed=cfg.train.seed)  # fmt: skip
    loader, sampler = train.build_train_loader(single, 2, DistInfo(), seed=0, num_workers=0)
    sampler.set_epoch(1)
    first = next(iter(loader))  # the global batch 0 = rank 0's and rank 1's first clips
    assert first["video_id"] == [ranks[0]["seen"][0], ranks[1]["seen"][0]]
    for r in range(2):
        assert torch.equal(first["frames"][r], ranks[r]["frames"][0][0])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["combo", "vct"])
def test_bf16_autocast_step_is_finite_and_trains(method):
    if method == "combo":
        cfg = _tiny_combo()
    else:
        cfg = C.override(registry.synthetic(registry.preset("s4", method="vct")), TINY_VCT)
    size = cfg.data.image_size
    torch.manual_seed(0)
    from avsbench.models.registry import build_model_for

    model = build_model_for(cfg).train()
    frames = torch.randn(5, 3, size, size)
    audio = torch.randn(5, 128 if method == "combo" else 12288)
    maskige = torch.randn(5, 3, size, size)
    out = forward(model, frames, audio, torch.ones(5), amp="bf16", maskige=maskige)
    assert out.pred_masks.dtype == torch.float32 and out.pred_logits.dtype == torch.float32
    masks = (torch.rand(5, size, size) > 0.5).float()
    masks[0, :, size // 2 :] = 255  # padding of the augmentation
    gt_valid = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    reads = {"category": ["dog_barking"]} if method == "vct" else {}
    loss, parts = registry.method_spec(method).loss("s4", out, masks, gt_valid, None, **reads)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(loss) and parts["total_loss"] == pytest.approx(loss.item())
