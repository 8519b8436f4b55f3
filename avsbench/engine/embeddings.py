"""Frozen VGGish audio embeddings for the engine, with an optional per-clip cache.

VGGish is frozen in every published run (eval mode, no gradients): the same clip always
gives the same embeddings, so they can be computed once per clip and reused across epochs.
`AudioEmbedder` maps a batch of log-mel examples [B, T, 1, 96, 64] to [B*T, D] (D = 128,
the embedding; 12288 for a method that reads VGGish's conv map, `MethodSpec.audio_input`,
through `models.backbones.vggish.VGGishConvMap`); with a
cache it runs VGGish only for the clips it has not seen yet. Cache keys are
`<setting>/<split>/<category>/<video_id>` followed by a hash of the clip's log-mel array,
so that a changed log-mel file (or wav) is recomputed, never served stale (docs/
RELIABILITY.md); the on-disk form is one `.npy` file [T, D] float32 per clip and content,
`<cache_dir>/<vggish fingerprint>/<setting>/<split>/<category>/<video_id>-<content>.npy`,
where the fingerprint hashes the VGGish weights so that changing them never reuses stale
embeddings either.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avsbench.fileio import atomic_save_npy

MEMORY = "memory"  # --cache_audio_embeddings without a folder: keep them in RAM only


def vggish_fingerprint(vggish: nn.Module) -> str:
    """A short hash of the VGGish parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(vggish.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def content_digest(log_mel: torch.Tensor) -> str:
    """A short hash of one clip's log-mel examples (shape, dtype and values)."""
    array = log_mel.detach().cpu().contiguous().numpy()
    digest = hashlib.sha1(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _safe(part: str) -> str:
    """A file-name-safe version of a key part (ids are YouTube ids / uids)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", part) or "_"


class AudioEmbedder:
    """Frozen VGGish with an optional per-clip embedding cache.

    Args:
        vggish: the frozen network (`models.backbones.vggish.build_vggish`); moved to
            `device`, put in eval mode, requires_grad False.
        device: where VGGish runs.
        cache: None (no cache), "memory" (a dict), or a folder for `.npy` files (also kept
            in memory once read).

    `__call__(audio [B, T, 1, 96, 64], keys: one cache key per clip | None) -> [B*T, D]`
    float32 on `device`, always computed in float32 outside autocast (`clip_keys(namespace,
    batch)` gives the keys; they are required when the cache is on). With the cache VGGish
    sees one clip at a time (`embed`), so a clip's cached value is the same bit for bit
    whatever batch it first came in; without it VGGish sees the whole batch (faster), and
    the values differ from the cached ones by float rounding (up to ~1e-5).
    """

    def __init__(
        self,
        vggish: nn.Module,
        device: torch.device | str,
        cache: str | os.PathLike | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.vggish = vggish.to(self.device).eval().requires_grad_(False)
        self.memory: dict[str, torch.Tensor] | None = None
        self.folder: Path | None = None
        if cache is not None:
            self.memory = {}
            if str(cache) != MEMORY:
                self.folder = Path(cache) / vggish_fingerprint(self.vggish)
        self.vggish_runs = 0  # clips embedded by VGGish (for tests and logs)

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder.joinpath(*[_safe(p) for p in key.split("/")]).with_suffix(".npy")

    def _lookup(self, key: str) -> torch.Tensor | None:
        if self.memory is None:
            return None
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None:
            path = self._path(key)
            if path.is_file():
                try:
                    emb = torch.from_numpy(np.load(path, allow_pickle=False))
                except (OSError, ValueError):  # lost in a crash: computed again
                    return None
                self.memory[key] = emb
                return emb
        return None

    def _store(self, key: str, emb: torch.Tensor) -> None:
        if self.memory is None:
            return
        emb = emb.detach().float().cpu()
        self.memory[key] = emb
        if self.folder is not None:
            # atomic: concurrent processes never read half a file; no fsync, it is a cache
            atomic_save_npy(self._path(key), emb.numpy(), durable=False)

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, *, one_clip_per_call: bool = False) -> torch.Tensor:
        """audio [B, T, 1, 96, 64] -> [B, T, D] through VGGish (float32, no autocast).

        one_clip_per_call: run VGGish on each clip alone, so that a clip's embeddings are a
        function of the clip only. With more than one thread the CPU kernels round
        differently for another number of rows (measured: up to 1.4e-5 between a clip
        alone and in a batch of two); the cache needs this, or cached values (computed in
        the batch the clip first came in) would differ from fresh ones, and a resumed run
        (empty memory cache, other groupings) from an uninterrupted one (docs/
        RELIABILITY.md). It costs ~25% more VGGish time (CPU, 4 clips), once per clip."""
        b, t = audio.shape[:2]
        log_mel = audio.to(self.device, torch.float32)
        with torch.autocast(self.device.type, enabled=False):
            if one_clip_per_call:
                emb = torch.stack([self.vggish(clip) for clip in log_mel.unbind(0)])
            else:
                emb = self.vggish(log_mel.reshape(b * t, *audio.shape[2:]))
        self.vggish_runs += b
        return emb.float().reshape(b, t, -1)  # [B, T, D]

    def __call__(
        self,
        audio: torch.Tensor,
        keys: list[str] | None = None,
    ) -> torch.Tensor:
        """audio [B, T, 1, 96, 64] -> embeddings [B*T, D] on `device`.

        keys: one cache key per clip (`clip_keys`); required when the cache is on."""
        b, t = audio.shape[:2]
        if self.memory is None:
            return self.embed(audio).reshape(b * t, -1)
        if keys is None or len(keys) != b:
            raise ValueError(f"the embedding cache needs one key per clip ({b}), got {keys}")
        keys = [f"{key}-{content_digest(audio[i])}" for i, key in enumerate(keys)]
        found = [self._lookup(k) for k in keys]
        todo = [i for i, e in enumerate(found) if e is None or e.shape[0] != t]
        if todo:
            fresh = self.embed(audio[todo], one_clip_per_call=True)  # [len(todo), T, D]
            for j, i in enumerate(todo):
                self._store(keys[i], fresh[j])
                found[i] = fresh[j].detach().float().cpu()
        out = torch.stack([e for e in found if e is not None])  # [B, T, D]
        return out.to(self.device).reshape(b * t, -1)  # [B*T, D]


def clip_keys(namespace: str, batch: dict) -> list[str]:
    """Cache keys `<namespace>/<category>/<audio id>` of a collated batch.

    The audio id is `audio_id` when the batch carries one (audio swapped from another clip,
    see `evaluate.SwappedAudio`), else `video_id`; namespace e.g. "s4/train"."""
    ids = batch.get("audio_id", batch["video_id"])
    categories = batch.get("audio_category", batch.get("category", [""] * len(ids)))
    return [f"{namespace}/{c or '_'}/{v}" for c, v in zip(categories, ids)]
