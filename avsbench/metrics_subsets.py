"""AVSS metrics per subset (v1s, v1m, v2), as the IJCV paper reports them: the official
accumulator of `avsbench.metrics` kept once for the whole set and once per subset."""

from __future__ import annotations

import torch

from avsbench.metrics import SemanticMetrics

__all__ = ["AVSS_SUBSETS", "SubsetSemanticMetrics", "subset_rows"]

AVSS_SUBSETS = ("v1s", "v1m", "v2")  # the `label` column of metadata.csv
SUBSET_ROW_KEYS = ("miou", "fscore", "miou_present_classes", "fscore_present_classes")


class SubsetSemanticMetrics:
    """AVSS accumulator that also keeps the official metrics of each subset.

    One `SemanticMetrics` per subset, each fed exactly the frames of that subset's clips
    (their padding frames included, as the official protocol counts them), so the numbers
    of subset s are what the official accumulation gives when it is run on s alone. The
    whole-set numbers come from the sum of the subset states, which equals one
    `SemanticMetrics` over every frame.

    update(logits [n, K, H, W], gt [n, H, W], subsets): `subsets` holds one key per clip,
    each covering n / len(subsets) consecutive frames (AVSS: the 10 frames of a clip, in
    the order of `batch["category"]`). Keys outside `subsets` are an error.
    compute() returns the whole-set dict of `SemanticMetrics.compute()` plus
    "subsets": {name: that dict + "num_clips"} for every subset that received frames.
    State: `state_tensors()` / `load_state_tensors()` with keys "<subset>/<name>" (sum
    them over processes, as for the other accumulators).
    """

    def __init__(
        self,
        num_classes: int = 71,
        subsets: tuple[str, ...] = AVSS_SUBSETS,
        device: torch.device | str | None = None,
    ) -> None:
        if not subsets or len(set(subsets)) != len(subsets):
            raise ValueError(f"SubsetSemanticMetrics: subsets must be distinct, got {subsets}")
        self.num_classes = num_classes
        self.subsets = tuple(subsets)
        self._parts = {s: SemanticMetrics(num_classes, device) for s in self.subsets}
        self._clips = {s: 0.0 for s in self.subsets}

    def reset(self) -> None:
        for part in self._parts.values():
            part.reset()
        self._clips = {s: 0.0 for s in self.subsets}

    def update(self, logits: torch.Tensor, gt: torch.Tensor, subsets: list[str]) -> None:
        """Add the frames of len(subsets) clips; `subsets` names the subset of each clip."""
        n = logits.shape[0]
        keys = list(subsets)
        if not keys or n % len(keys):
            raise ValueError(
                f"SubsetSemanticMetrics: {n} frames cannot be split into {len(keys)} clips "
                "of equal length (give one subset name per clip)"
            )
        unknown = sorted(set(keys) - set(self.subsets))
        if unknown:
            raise ValueError(
                f"SubsetSemanticMetrics: unknown subset(s) {unknown}; valid: {list(self.subsets)}"
            )
        per_key = n // len(keys)
        for subset in self.subsets:
            clips = [i for i, key in enumerate(keys) if key == subset]
            if not clips:
                continue
            frames = torch.tensor(
                [i * per_key + f for i in clips for f in range(per_key)], device=logits.device
            )
            self._parts[subset].update(logits.index_select(0, frames), gt.index_select(0, frames))
            self._clips[subset] += len(clips)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        state = {}
        for subset, part in self._parts.items():
            for key, value in part.state_tensors().items():
                state[f"{subset}/{key}"] = value
            state[f"{subset}/num_clips"] = torch.tensor(self._clips[subset], dtype=torch.float64)
        return state

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        for subset, part in self._parts.items():
            prefix = f"{subset}/"
            part_state = {
                k[len(prefix) :]: v
                for k, v in state.items()
                if k.startswith(prefix) and k != f"{subset}/num_clips"
            }
            part.load_state_tensors(part_state)
            self._clips[subset] = float(state[f"{subset}/num_clips"])

    def compute(self) -> dict:
        """Whole-set official metrics and variants, plus "subsets" (see the class docstring)."""
        total = SemanticMetrics(self.num_classes)
        per_subset = {}
        for subset, part in self._parts.items():
            state = part.state_tensors()
            if float(state["num_frames"]) == 0:
                continue
            total.merge(part)
            per_subset[subset] = {**part.compute(), "num_clips": int(self._clips[subset])}
        if not per_subset:
            raise RuntimeError("SubsetSemanticMetrics.compute() called before any update()")
        return {**total.compute(), "subsets": per_subset}


def subset_rows(
    metrics: dict, keys: tuple[str, ...] = SUBSET_ROW_KEYS
) -> list[dict[str, float | int | str]]:
    """Rows for a table of `SubsetSemanticMetrics.compute()`: one per subset that has
    frames, in order, then "all" (the whole set). Each row: subset, num_clips, num_frames
    (padding frames included) and the `keys`."""
    rows: list[dict[str, float | int | str]] = []
    for subset, values in metrics.get("subsets", {}).items():
        rows.append(
            {"subset": subset, "num_clips": values["num_clips"], "num_frames": values["num_frames"]}
            | {k: values[k] for k in keys}
        )
    clips = sum(int(r["num_clips"]) for r in rows)
    rows.append(
        {"subset": "all", "num_clips": clips, "num_frames": metrics["num_frames"]}
        | {k: metrics[k] for k in keys}
    )
    return rows
