"""Files the app tests share: tiny untrained project checkpoints (the synthetic config of
TPAVI ResNet-18 at 64x64, saved as avsbench.engine.checkpoint saves them) and a short
video with sound (tests.video_fixtures: a red square, a blue disc, a tone)."""

from __future__ import annotations

from pathlib import Path

import torch

from avsbench import config as C
from avsbench.engine.checkpoint import make_checkpoint
from avsbench.models import registry
from avsbench.models.registry import build_model_for
from tests.video_fixtures import make_video

IMAGE_SIZE = 64  # model input: fast on a CPU
VIDEO_SECONDS, VIDEO_WIDTH, VIDEO_HEIGHT, VIDEO_FPS = 3, 160, 120, 10


def tiny_config(setting: str, **overrides) -> C.Config:
    """`setting`'s synthetic config at IMAGE_SIZE with a narrow decoder (+ overrides)."""
    cfg = registry.synthetic(registry.preset(setting))
    small = {"data.image_size": IMAGE_SIZE, "model.arch.decoder_channels": 16}
    return C.override(cfg, small | overrides)


def save_tiny_checkpoint(setting: str, path: Path, seed: int = 0, **overrides) -> Path:
    """An untrained model of `tiny_config` saved as a project checkpoint."""
    torch.manual_seed(seed)
    cfg = tiny_config(setting, **overrides)
    model = build_model_for(cfg)
    ckpt = make_checkpoint(
        model.state_dict(), C.to_dict(cfg), epoch=1, best_miou=0.5, history=[], with_rng=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def make_clip(path: Path, *, sound: bool = True) -> Path:
    """A VIDEO_SECONDS s, VIDEO_WIDTH x VIDEO_HEIGHT H.264 MP4 with (or without) AAC sound."""
    return make_video(
        path, VIDEO_SECONDS, VIDEO_FPS, VIDEO_WIDTH, VIDEO_HEIGHT,
        audio_rate=16000 if sound else None,
    )  # fmt: skip
