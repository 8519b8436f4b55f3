"""Which settings a resumed run may change (docs/RELIABILITY.md, "Changing flags on
resume").

A resume continues a run exactly: the same batches, random numbers and updates as if it
had not stopped. A flag given with --resume that changes the run's config is therefore
refused, naming the flag, its value in the run and the new one, and how to start a new run
from the checkpoint instead, unless it is one of:

    SAFE        loading, caching, where the run's files are, when and how validation runs:
                none of them changes a training step
    run length  --max_epoches / --max_iters, extended or shortened, as long as steps are
                left after the checkpoint's position, and the lr schedule does not depend on
                the run's length (poly's horizon is its length: refused with poly)

Refused on purpose: --amp and --channels_last (other kernels and rounding: the numbers of
the remaining steps change), every optimizer, schedule, loss, batch size, image size or
model flag. `check(old, new, raw, path)` returns the allowed changes as log lines.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from avsbench import config as C
from avsbench.errors import SetupError

SAFE = {
    "runtime.num_workers": "DataLoader workers only load data (an augmentation draws from the "
    "run's seed, the epoch and the sample, not from the workers)",
    "train.log_dir": "the run continues in its own folder",
    "data.root": "the same clips at another place (inside an epoch the sampler's order is checked)",
    "data.frame_cache": "a cache of the same samples",
    "data.embedding_cache": "a cache of the same VGGish embeddings",
    "data.strict_masks": "only stops on an odd mask file",
    "train.val_batch_size": "validation only (the official metrics depend on it)",
    "train.eval_interval": "when validation runs",
    "train.start_eval_epoch": "when validation runs",
    "train.eval_interval_iters": "when validation runs",
}
RUN_LENGTH = ("train.max_epoches", "train.max_iters")
REASONS = {
    "runtime.amp": "mixed precision changes the numbers of every remaining step",
    "runtime.channels_last": "the memory format picks other convolution kernels (other rounding)",
    "train.train_batch_size": "the sampler would skip the steps done x the new batch size: "
    "other batches",
    "data.image_size": "the model would see other inputs",
    "data.augment": "the remaining steps would see other training inputs",
    "data.eval_mask_size": "the validation masks (model selection) would change",
    "train.backbone_lr_mult": "it changes the learning rates (and, across 1.0, the "
    "optimizer's parameter groups the checkpoint's state belongs to)",
    "train.max_steps_per_epoch": "the epochs would hold other steps",
    "train.seed": "the sampler's order and the random numbers would differ",
    "train.session_name": "the run's checkpoints are named after its session",
}
FLAG_NAMES = {
    "data.root": "--data_root",
    "data.source": "--data_source",
    "data.embedding_cache": "--cache_audio_embeddings",
    "model.backbone": "--visual_backbone",
}


def flag_of(key: str) -> str:
    """The flag that sets config field `key` ("train.lr" -> "--lr")."""
    return FLAG_NAMES.get(key, "--" + key.rsplit(".", 1)[-1])


def changes(old: C.Config, new: C.Config) -> dict[str, tuple[Any, Any]]:
    """{field: (old value, new value)} of every config field that differs."""
    a, b = C.flat_fields(dataclasses.asdict(old)), C.flat_fields(dataclasses.asdict(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _left(key: str, value: Any, raw: dict[str, Any], cfg: C.Config) -> str | None:
    """Why the new run length `value` cannot be used, or None."""
    if cfg.train.schedule == "poly":
        return "the poly lr schedule runs over the run's length: every remaining lr would change"
    if key == "train.max_epoches":
        if cfg.train.max_iters is not None:
            return None  # a run by iterations: the epochs do not end it
        done = int(raw.get("epoch", -1)) + 1  # epochs completed
        if value is None or value <= done:
            return f"the run has completed {done} epochs: give more than {done}"
        return None
    done = int((raw.get("scheduler") or {}).get("iteration", 0))
    if value is None or value <= done:
        return f"the run has done {done} iterations: give more than {done}"
    return None


def check(old: C.Config, new: C.Config, raw: dict[str, Any], path: Path) -> list[str]:
    """The changes of `new` (the run's config + the flags given) over `old` (the run's)
    allowed on resume, as log lines; SetupError naming the first refused one."""
    allowed = []
    for key, (before, after) in changes(old, new).items():
        if key in ("model.backbone_weights", "model.vggish_pca"):
            continue  # file paths the checkpoint's own weights replace
        flag = flag_of(key)
        if key in SAFE:
            allowed.append(f"{flag} {before} -> {after} ({SAFE[key]})")
            continue
        if key in RUN_LENGTH:
            why = _left(key, after, raw, new)
            if why is None:
                allowed.append(f"{flag} {before} -> {after} (the run's length)")
                continue
        else:
            why = REASONS.get(key, "it changes the training itself")
        given = f"{flag} {after}"
        if isinstance(after, bool):  # a switch: --channels_last / --no-channels_last
            given = flag if after else f"--no-{flag[2:]}"
        raise SetupError(
            f"--resume {path}: {flag} was {before} in this run, now {after}: {why}; a resume "
            f"continues the run exactly. Leave {flag} out to resume, or start a new run from "
            f"these weights: bash train.sh --weights {shlex.quote(str(path))} {given} "
            "--session_name NEW_NAME"
        )
    return allowed
