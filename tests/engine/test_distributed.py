"""Samplers and batch splitting that make multi-process runs equal one-process runs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from avsbench.engine.distributed import (
    DistInfo,
    ShardedBatchSampler,
    all_reduce_state,
    per_process_batch_size,
    select_device,
)
from avsbench.metrics import BinaryMetrics


@pytest.mark.parametrize("n, batch, world", [(10, 4, 2), (9, 4, 3), (3, 4, 2), (8, 1, 4)])
def test_sharded_batches_cover_every_official_batch_once(n, batch, world):
    single = list(ShardedBatchSampler(n, batch))
    assert single == [list(range(s, min(s + batch, n))) for s in range(0, n, batch)]
    shards = [list(ShardedBatchSampler(n, batch, r, world)) for r in range(world)]
    assert sum(len(s) for s in shards) == len(single)
    merged = sorted((b for s in shards for b in s), key=lambda b: b[0])
    assert merged == single  # whole batches, no padding, no duplicate
    assert [len(ShardedBatchSampler(n, batch, r, world)) for r in range(world)] == [
        len(s) for s in shards
    ]


def test_distributed_sampler_gives_the_one_process_global_batches():
    """Per-process batches of step j together = batch j of one process (global batch)."""
    n, world, per_process = 22, 2, 3
    dataset = list(range(n))
    one = list(DistributedSampler(dataset, 1, 0, shuffle=True, seed=123, drop_last=True))
    global_batches = [one[i : i + per_process * world] for i in range(0, n, per_process * world)]
    ranks = [
        list(DistributedSampler(dataset, world, r, shuffle=True, seed=123, drop_last=True))
        for r in range(world)
    ]
    local = [[idx[i : i + per_process] for i in range(0, len(idx), per_process)] for idx in ranks]
    for j, expected in enumerate(global_batches):
        assert sorted(local[0][j] + local[1][j]) == sorted(expected)


def test_global_batch_split():
    assert per_process_batch_size(8, 4, "--train_batch_size") == 2
    with pytest.raises(ValueError, match="--train_batch_size 6 is the GLOBAL batch.*4"):
        per_process_batch_size(6, 4, "--train_batch_size")


def test_metric_states_sum_to_the_one_process_result():
    """What all_reduce_state does across processes, done by hand: the shards' summed
    states give exactly the metrics of one process that saw every batch."""
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(n, 16, 16, generator=g), (torch.rand(n, 16, 16, generator=g) > 0.6).float())
        for n in (20, 20, 20, 10)
    ]
    one = BinaryMetrics()
    for logits, gt in batches:
        one.update(logits, gt)
    shards = []
    for rank in range(2):
        m = BinaryMetrics()
        for b in ShardedBatchSampler(len(batches), 1, rank, 2):
            m.update(*batches[b[0]])
        shards.append(m.state_tensors())
    merged = BinaryMetrics()
    merged.load_state_tensors({k: shards[0][k] + shards[1][k] for k in shards[0]})
    a, b = one.compute(), merged.compute()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k
    state = {"x": torch.ones(2)}
    assert all_reduce_state(state, DistInfo()) is state  # one process: untouched


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device(None) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
