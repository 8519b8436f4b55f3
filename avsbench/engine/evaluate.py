"""Evaluation: `evaluate` (official metrics and variants of a model over a loader), the
evaluation loader, and swapped audio (does the model listen?).

Metrics follow docs/METRICS.md through `avsbench.metrics`: S4/MS3 accumulate one update per
TEST BATCH (the official mIoU and F average batch values, so the batch size is part of the
protocol and is reported); AVSS accumulates frame by frame over the whole split, padding
frames included. In a multi-process run each process evaluates whole batches
(`ShardedBatchSampler`) and the accumulators' states are summed, which gives exactly the
one-process numbers. The forward pass is `step.forward_batch`, the same as training's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avsbench import config as C
from avsbench.engine import runs
from avsbench.engine.distributed import DistInfo, ShardedBatchSampler, all_reduce_state
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.engine.step import flat_targets, forward_batch
from avsbench.metrics_protocols import protocol_metrics
from avsbench.models.contract import unwrap


def make_metric(setting: str, num_classes: int = 71, per_subset: bool = False) -> Any:
    """The accumulator of `setting`: BinaryMetrics (S4, MS3) or SemanticMetrics (AVSS);
    with `per_subset`, AVSS gets SubsetSemanticMetrics (v1s / v1m / v2 beside the whole set)."""
    from avsbench.metrics import BinaryMetrics, SemanticMetrics
    from avsbench.metrics_subsets import SubsetSemanticMetrics

    if C.setting_info(setting).semantic:
        if per_subset:
            return SubsetSemanticMetrics(num_classes=num_classes)
        return SemanticMetrics(num_classes=num_classes)
    return BinaryMetrics()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    embedder: AudioEmbedder,
    loader: DataLoader,
    setting: str,
    device: torch.device,
    *,
    amp: str = "off",
    channels_last: bool = False,
    info: DistInfo | None = None,
    cache_namespace: str = "",
    num_classes: int = 71,
    on_batch: Callable[[dict[str, Any], torch.Tensor], None] | None = None,
    desc: str = "eval",
    per_subset: bool = False,
    official_batch_sizes: Sequence[int] = (),
    protocols: bool = False,
) -> dict[str, Any]:
    """Official metrics and variants of `model` over `loader` (one update per batch).

    In a multi-process run, `loader` holds this process's share of whole batches and the
    accumulator states are summed over processes before `compute()`.
    on_batch(batch, logits [B*T, K, S, S]) is called for every batch (masks, reports).
    Returns the dict of `BinaryMetrics.compute()` / `SemanticMetrics.compute()`; AVSS with
    `per_subset` adds "subsets" (`SubsetSemanticMetrics`: each subset's clips, from the
    AVSS sample's `category`, the subset label, accumulated alone).
    S4/MS3 with `official_batch_sizes` (e.g. (4, 2)) add `miou_test_batch_<s>` and
    `fscore_test_batch_<s>`: the official values as a test run at batch s clips gives them,
    from consecutive sub-batches of s clips of each batch (exact when s divides the
    loader's batch size: the batches of s clips then nest in the loader's). At s equal to
    the loader's batch size those are the batches themselves: `miou` / `fscore` are used.
    With `protocols`, the values of VCT's and COMBO's own evaluators are added
    (`avsbench.metrics_protocols`: S4/MS3 `miou_per_clip`, ...; AVSS `*_vct_combo_avss`).
    """
    info = info or DistInfo(device=device)
    model = unwrap(model)
    was_training = model.training
    model.eval()
    metric = make_metric(setting, num_classes, per_subset)
    by_subset = per_subset and C.setting_info(setting).semantic
    sizes = () if C.setting_info(setting).semantic else tuple(official_batch_sizes)
    loader_batch = getattr(loader.batch_sampler, "batch_size", None)  # clips per batch
    at_batch = {s: make_metric(setting) for s in sizes if s != loader_batch}
    published = (
        protocol_metrics(C.setting_info(setting).semantic, num_classes) if protocols else None
    )
    try:
        for batch in tqdm(
            loader, desc=desc, leave=False, disable=not runs.show_progress(info.is_main)
        ):
            output = forward_batch(
                model, embedder, batch, device, amp=amp, channels_last=channels_last,
                cache_namespace=cache_namespace,
            )  # fmt: skip
            masks, _ = flat_targets(batch, device)
            if by_subset:
                metric.update(output.logits, masks, list(batch["category"]))
            else:
                metric.update(output.logits, masks)
            if at_batch:
                _update_sub_batches(at_batch, output.logits, masks, batch["frames"].shape[0])
            if published is not None:
                published.update(output.logits, masks, batch["frame_valid"])  # [B, T]
            if on_batch is not None:
                on_batch(batch, output.logits)
    finally:
        model.train(was_training)
    metric.load_state_tensors(all_reduce_state(metric.state_tensors(), info))
    result = metric.compute()
    for size in sizes:
        values = result
        if size in at_batch:
            sub = at_batch[size]
            sub.load_state_tensors(all_reduce_state(sub.state_tensors(), info))
            values = sub.compute()
        result[f"miou_test_batch_{size}"] = values["miou"]
        result[f"fscore_test_batch_{size}"] = values["fscore"]
    if published is not None:
        published.load_state_tensors(all_reduce_state(published.state_tensors(), info))
        result.update(published.compute())
    return result


def _update_sub_batches(
    metrics: dict[int, Any], logits: torch.Tensor, masks: torch.Tensor, clips: int
) -> None:
    """One update per consecutive group of s clips of the batch, for each s of `metrics`.
    logits [B*T, 1, H, W], masks [B*T, H, W] in clip order; clips = B."""
    frames = logits.shape[0] // clips  # T
    for size, metric in metrics.items():
        step = size * frames
        for start in range(0, logits.shape[0], step):
            metric.update(logits[start : start + step], masks[start : start + step])


def build_eval_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, num_workers: int
) -> DataLoader:
    """Whole batches of `batch_size` in dataset order, this process's share."""
    sampler = ShardedBatchSampler(len(dataset), batch_size, info.rank, info.world_size)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        persistent_workers=False,
    )


# ---------------------------------------------------------------------------------------
# Swapped audio: does the model listen?
# ---------------------------------------------------------------------------------------
class SwappedAudio(Dataset):
    """`dataset` with the audio of clip i replaced by that of clip (i + n // 2) mod n.

    Everything else (frames, masks, validity) is clip i's. A model that uses sound loses
    accuracy; one that ignores it keeps the same metrics. Samples gain `audio_id` and
    `audio_category` (the donor's) so that cached embeddings stay correct."""

    def __init__(self, dataset: Dataset) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if n < 2:
            raise ValueError("--swap_audio needs at least 2 clips in the split")
        self.dataset = dataset
        self.n = n

    def donor(self, index: int) -> int:
        return (index + self.n // 2) % self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        other = self.dataset[self.donor(index)]
        sample["audio"] = other["audio"]
        sample["audio_id"] = other["video_id"]
        sample["audio_category"] = other["category"]
        return sample
