"""AVSBench-Robust metrics (Li et al. 2025): how much a model segments when the sound is
not the clip's own (silence, noise, an off-screen sound), and scores that weigh it against
the accuracy with the right sound.

`foreground_fraction` and `FalsePositiveRate` follow `calculate_FPR` of
`jiali-home/AVSBench-Robust` `training_evaluation/code/AVSegFormer/scripts/s4/test.py`
(commit 03e925d): per frame, the fraction of pixels with sigmoid(logit) > 0.5, i.e.
sum / (H * W + 1e-7); the batch value is the mean over the batch's frames; the reported
FPR is the mean over test batches (their `AverageMeter`), like the official mIoU. A
batch-independent variant (`fpr_per_frame`, mean over all frames) is reported beside it.
With class logits (AVSS, K > 1) a pixel counts when its argmax is not background (class 0);
the published code covers S4/MS3 only.

The global scores G-FPR, G-mIoU and G-F are aggregated by hand in their paper (their
README: "manually aggregated ... using Excel") and defined only in the paper's text, which
could not be checked here: `global_scores` is an ASSUMED rule (docs/METRICS.md,
"AVSBench-Robust", lists what was checked and what is assumed): G-FPR is the mean FPR over
the negatives run; G-mIoU and G-F are harmonic means of the own-audio mIoU (F) and
1 - G-FPR. The table says so next to the numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FPR_EPS = 1e-7  # their calculate_FPR: sum / (H * W + eps)
THRESHOLD = 0.5  # their binary_pred = sigmoid(pred) > 0.5
AUDIO_MODES = ("own", "swap", "silence", "noise", "offscreen")
NEGATIVE_MODES = ("silence", "noise", "offscreen")
UNVERIFIED_NOTE = (
    "(G-scores: assumed rule, harmonic mean of own-audio mIoU/F and 1 - G-FPR; not checked "
    "against the paper's definition, see docs/METRICS.md)"
)


def foreground_fraction(logits: torch.Tensor) -> torch.Tensor:
    """Per-frame share of pixels predicted foreground, float64 [n].

    logits: [n, H, W] or [n, 1, H, W] (binary: sigmoid > 0.5) or [n, K, H, W] with K > 1
    (semantic: argmax != 0)."""
    if logits.dim() == 3:
        logits = logits[:, None]  # [n, H, W] -> [n, 1, H, W]
    if logits.dim() != 4:
        raise ValueError(f"logits must be [n, H, W] or [n, K, H, W], got {tuple(logits.shape)}")
    n, k, h, w = logits.shape
    if k == 1:
        positive = torch.sigmoid(logits.float()[:, 0]) > THRESHOLD  # [n, H, W]
    else:
        positive = logits.argmax(dim=1) != 0  # [n, H, W]
    return positive.double().sum(dim=(1, 2)) / (h * w + FPR_EPS)


class FalsePositiveRate:
    """Accumulator of the FPR: `update(logits, frame_valid)` once per TEST BATCH.

    `compute()` -> {"fpr": mean over batches of the batch-mean foreground fraction (their
    protocol), "fpr_per_frame": mean over all frames}. frame_valid [n] (or [B, T]) drops
    padding frames (AVSS); S4/MS3 frames are all valid. State: sums only, so that the
    states of several processes add up (`state_tensors` / `load_state_tensors`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._state = {name: torch.zeros((), dtype=torch.float64) for name in self._names()}

    @staticmethod
    def _names() -> tuple[str, ...]:
        return ("batch_fpr_sum", "num_batches", "frame_fpr_sum", "num_frames")

    def update(self, logits: torch.Tensor, frame_valid: torch.Tensor | None = None) -> None:
        fractions = foreground_fraction(logits.detach()).cpu()  # [n]
        if frame_valid is not None:
            fractions = fractions[frame_valid.reshape(-1).cpu() > 0]
        if fractions.numel() == 0:
            return
        s = self._state
        s["batch_fpr_sum"] += fractions.mean()
        s["num_batches"] += 1
        s["frame_fpr_sum"] += fractions.sum()
        s["num_frames"] += fractions.numel()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self._state)

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._state = {name: tensors[name].detach().double().cpu() for name in self._names()}

    def compute(self) -> dict[str, float]:
        s = self._state
        batches, frames = float(s["num_batches"]), float(s["num_frames"])
        return {
            "fpr": float(s["batch_fpr_sum"]) / batches if batches else 0.0,
            "fpr_per_frame": float(s["frame_fpr_sum"]) / frames if frames else 0.0,
        }


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b); 0 when a + b = 0."""
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def global_scores(miou: float, fscore: float, fprs: Mapping[str, float]) -> dict[str, float]:
    """G-FPR = mean of the negatives' FPR; G-mIoU = H(mIoU, 1 - G-FPR); G-F = H(F, 1 - G-FPR)
    with H the harmonic mean, mIoU and F those of the clips' own audio. An assumed rule, not
    checked against the paper's definition (docs/METRICS.md)."""
    if not fprs:
        raise ValueError("global scores need the FPR of at least one negative")
    g_fpr = sum(fprs.values()) / len(fprs)
    return {
        "g_fpr": g_fpr,
        "g_miou": harmonic_mean(miou, 1.0 - g_fpr),
        "g_fscore": harmonic_mean(fscore, 1.0 - g_fpr),
    }


# ---------------------------------------------------------------------------------------
# One table from the test runs of each audio mode (scripts/demo.sh)
# ---------------------------------------------------------------------------------------
def robustness_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table, one row per audio mode, from test.sh metrics.json contents keyed
    by mode ("own", "swap", ...), then the global scores when own and a negative are in."""
    head = "| audio | mIoU | F-score | mIoU per frame | FPR | FPR per frame |"
    lines = [head, "|---|---|---|---|---|---|"]
    keys = ("miou", "fscore", "miou_per_frame", "fpr", "fpr_per_frame")
    for mode in [m for m in AUDIO_MODES if m in results]:
        m = results[mode]["metrics"]  # AVSS has no miou_per_frame: "-"
        cells = [f"{m[k]:.3f}" if isinstance(m.get(k), int | float) else "-" for k in keys]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    negatives = {k: results[k]["metrics"]["fpr"] for k in NEGATIVE_MODES if k in results}
    if "own" in results and negatives:
        own = results["own"]["metrics"]
        g = global_scores(own["miou"], own["fscore"], negatives)
        lines += [
            "",
            f"G-FPR {g['g_fpr']:.3f} (mean over {', '.join(negatives)}), "
            f"G-mIoU {g['g_miou']:.3f}, G-F {g['g_fscore']:.3f}",
            UNVERIFIED_NOTE,
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m avsbench.metrics_robust RUN.json...`: the table of `robustness_table`,
    each file's mode read from its "audio" field."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m avsbench.metrics_robust METRICS.json...", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            mode = data["audio"]
            data["metrics"]["fpr"]  # noqa: B018 - written by this project's test.sh
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"{path}: not a test.sh metrics.json with an 'audio' mode ({err})",
                  file=sys.stderr)  # fmt: skip
            return 2
        results[mode] = data
    print(robustness_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
