"""Distributed data parallel (DDP) helpers: process-group setup from torchrun's environment,
samplers that make a multi-process run equal a single-process one, metric all-reduce.

Conventions (docs/TRAINING.md):
- `train_batch_size` is the GLOBAL batch: with N processes each one takes
  train_batch_size / N clips per step (it must divide evenly), so that the gradient of a
  step is the gradient of the same global batch a single process would see (DDP averages
  the per-process gradients of per-process means). Training uses `DistributedSampler`
  (same seeded permutation per epoch in every process, `set_epoch`): the union of the
  per-process batches of step j is exactly batch j of a one-process run with the same
  global batch size.
- Evaluation shards whole official test batches: batch j (clips j*b .. j*b+b-1, in order)
  goes to process j mod N, nothing is padded or duplicated, and the metric accumulators'
  `state_tensors()` are summed over processes, so the official (batch-dependent) numbers
  equal those of one process.
- Only rank 0 writes logs, TensorBoard scalars and checkpoints.

Launch: `torchrun --standalone --nproc_per_node N train.py ...` (or `bash train.sh --gpus N`);
nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank among world_size processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """The device to run on: `requested` ("cpu", "cuda", "cuda:1", ...) or the GPU when there
    is one, else the CPU. Under torchrun each process takes GPU `local_rank`."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {requested}: CUDA is not available on this machine; use --device cpu"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {requested}: only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return device


def init_distributed(requested_device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (env WORLD_SIZE > 1), else return a
    single-process `DistInfo`. Backend: nccl for CUDA devices, gloo otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=30),
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def per_process_batch_size(global_batch_size: int, world_size: int, flag: str) -> int:
    """global_batch_size / world_size; an uneven split is an error naming `flag`."""
    if global_batch_size < 1:
        raise ValueError(f"{flag} must be >= 1, got {global_batch_size}")
    if global_batch_size % world_size != 0:
        raise ValueError(
            f"{flag} {global_batch_size} is the GLOBAL batch and must be divisible by the "
            f"number of processes ({world_size}); use e.g. {flag} "
            f"{max(1, global_batch_size // world_size) * world_size} or "
            f"--gpus {_divisor_hint(global_batch_size, world_size)}"
        )
    return global_batch_size // world_size


def _divisor_hint(n: int, world_size: int) -> int:
    """Largest process count <= world_size that divides n."""
    return max(d for d in range(1, world_size + 1) if n % d == 0)


class ShardedBatchSampler(Sampler[list[int]]):
    """Evaluation batches without padding: the dataset in order is cut into batches of
    `batch_size` (the last one may be smaller, as in a plain DataLoader), and process `rank`
    takes batches rank, rank + world_size, ... Every official batch is evaluated whole by
    exactly one process."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def all_batches(self) -> list[list[int]]:
        starts = range(0, self.num_samples, self.batch_size)
        return [list(range(s, min(s + self.batch_size, self.num_samples))) for s in starts]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.all_batches()[self.rank :: self.world_size])


def all_reduce_state(state: dict[str, torch.Tensor], info: DistInfo) -> dict[str, torch.Tensor]:
    """Element-wise sum of a metric accumulator's `state_tensors()` over all processes.

    float64 sums on the reduction device (CPU tensors for gloo, the GPU for nccl)."""
    if not info.distributed:
        return state
    reduce_device = info.device if dist.get_backend() == "nccl" else torch.device("cpu")
    out = {}
    for key in sorted(state):  # the same order in every process
        value = state[key].detach().to(reduce_device, torch.float64).clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        out[key] = value
    return out


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a python float over processes (for logging only)."""
    if not info.distributed:
        return value
    reduce_device = info.device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=reduce_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def broadcast_object(obj: object, info: DistInfo) -> object:
    """`obj` of rank 0 in every process (e.g. the run folder chosen by rank 0)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
