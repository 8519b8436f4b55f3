"""Two CPU processes (gloo) train and test exactly like one process on the same global batch.

What is compared: the weights after a full epoch (sampler sharding, the global batch split,
DDP gradient averaging, the gt_valid loss weighting of AVSS and the batch-summed KL term of
MS3) and the distributed test metrics (whole official batches per process, summed metric
states). BatchNorm is the one thing DDP does not make equal: each process normalises with
its own batch statistics (SyncBatchNorm, used on CUDA, is not available on the CPU
backend), so this test freezes BatchNorm statistics in both runs.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from avsbench import config as C
from avsbench.data.datasets import build_dataset
from avsbench.data.synthetic import make_toy_data
from avsbench.engine import checkpoint as ckpt_io
from avsbench.engine import evaluate as E
from avsbench.engine import train as T
from avsbench.engine.distributed import (
    DistInfo,
    cleanup_distributed,
    init_distributed,
    per_process_batch_size,
)
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.models import registry
from avsbench.models.contract import unwrap


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            m.train = lambda mode=True, m=m: m  # stays in eval mode under model.train()


def _config(setting: str) -> C.Config:
    return C.override(
        registry.synthetic(registry.preset(setting)),
        {"data.image_size": 64, "model.arch.decoder_channels": 16, "train.train_batch_size": 2,
         "train.lr": 1e-3, "runtime.num_workers": 0},
    )  # fmt: skip


def _train_and_test(info: DistInfo, setting: str, root: str) -> dict:
    from avsbench.models.backbones.vggish import build_vggish
    from avsbench.models.registry import build_model_for

    cfg = _config(setting)
    ckpt_io.seed_everything(cfg.train.seed)
    train_set = build_dataset(setting, root, "train", image_size=64)
    per_process = per_process_batch_size(cfg.train.train_batch_size, info.world_size, "batch")
    loader, sampler = T.build_train_loader(train_set, per_process, info, seed=123, num_workers=0)
    model = build_model_for(cfg)
    _freeze_batchnorm(model)
    model = T.prepare_model(model, cfg, info, sync_bn=None)
    embedder = AudioEmbedder(build_vggish(cfg.model), info.device)
    optimizer = T.build_optimizer(model, cfg)
    scaler = T.make_scaler(info.device, "off")
    sampler.set_epoch(0)
    stats = T.train_one_epoch(model, embedder, loader, optimizer, scaler, cfg, info, 0)
    test_set = build_dataset(setting, root, "test", image_size=64)
    test_loader = E.build_eval_loader(test_set, 1, info, num_workers=0)
    metrics = E.evaluate(model, embedder, test_loader, setting, info.device, info=info,
                         num_classes=cfg.model.num_classes)  # fmt: skip
    state = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
    return {"model": state, "metrics": metrics, "stats": stats}


def _worker(rank: int, world: int, setting: str, root: str, out: str, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        result = _train_and_test(info, setting, root)
        if rank == 0:
            torch.save(result, out)
    finally:
        cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["avss", "ms3"])
def test_two_processes_equal_one(setting, tmp_path):
    base = tmp_path
    # 6 training clips in both settings (AVSS at 0.03: 2 v1s + 3 v1m + 1 v2; MS3: 256 x 0.025)
    scale = {"avss": 0.03, "ms3": 0.025}[setting]
    make_toy_data(base, seed=3, scale=scale, settings=(setting,), num_categories=3)
    root = str(base / C.SETTINGS[setting].dataset_folder)
    out = str(base / "ddp.pth")
    mp.spawn(_worker, args=(2, setting, root, out, _free_port()), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=False)
    one = _train_and_test(DistInfo(), setting, root)

    assert ddp["stats"]["steps"] == one["stats"]["steps"] == 3  # 6 clips, global batch 2
    assert ddp["stats"]["clips"] == one["stats"]["clips"] == 6
    # Adam divides by sqrt(v): float noise in a near-zero gradient can move a weight by a
    # few 1e-6 (seen: 1e-5 once in 3.8M weights). A wrong loss reduction moves weights by
    # ~lr = 1e-3 per step, far outside this tolerance.
    for name, value in one["model"].items():
        assert torch.allclose(ddp["model"][name], value, rtol=1e-4, atol=3e-5), name
    torch.manual_seed(_config(setting).train.seed)
    from avsbench.models.registry import build_model_for

    fresh = build_model_for(_config(setting)).state_dict()
    moved = sum(not torch.allclose(fresh[k], v) for k, v in one["model"].items())
    assert moved > 20  # the epoch trained (the comparison is not of untouched weights)
    for key in ("miou", "fscore"):
        assert ddp["metrics"][key] == pytest.approx(one["metrics"][key], abs=1e-5), key
