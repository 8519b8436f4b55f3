"""TPAVI's architecture fields and the published AVSBench recipes (Zhou et al., ECCV 2022;
IJCV 2024; docs/TRAINING.md), plus its small configuration for the synthetic AVSBench."""

from __future__ import annotations

from dataclasses import dataclass

from avsbench import config as C


@dataclass(frozen=True)
class TPAVIArch:
    decoder_channels: int = 256  # width of the projections, TPAVI blocks and decoder
    tpavi_stages: tuple[int, ...] = (0, 1, 2, 3)  # stages (0-based) that get a TPAVI block
    tpavi_va: bool = True  # audio-visual attention (the published training uses this only)
    tpavi_vv: bool = False  # video self-attention; with both on the two results are averaged
    tpavi_mode: str = "dot"  # dot | embedded | gaussian | concatenate
    tpavi_dense: bool = False  # True: the published N x N form of `dot` (slow; for checks)
    window_frames: int = 5  # frames per TPAVI window T' (5 in all published settings)
    align_bias: bool = True  # bias of TPAVI's align_channel (published AVSS: False)


# Fields a checkpoint does not fix (the same function with any value)
NOT_ARCHITECTURE = ("tpavi_dense",)


def _preset(setting: str, train: C.TrainConfig) -> C.Config:
    # the published AVSS model has no align_channel bias
    arch = TPAVIArch(align_bias=not C.setting_info(setting).semantic)
    return C.setting_preset(setting, train, C.ModelConfig(method="tpavi", arch=arch))


def s4() -> C.Config:
    """Published S4 recipe: 15 epochs, batch 4, val batch 1, no extra loss."""
    return _preset("s4", C.TrainConfig(max_epoches=15, val_batch_size=1))


def ms3() -> C.Config:
    """Published MS3 recipe: 30 epochs, masked AV loss (KL, lambda 0.5) on stages 0-3."""
    loss = C.LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)
    return _preset("ms3", C.TrainConfig(max_epoches=30, val_batch_size=1, loss=loss))


def avss() -> C.Config:
    """Published AVSS recipe: 60 epochs, 71 classes, 10-frame clips in 5-frame windows."""
    loss = C.LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)
    train = C.TrainConfig(
        max_epoches=60, val_batch_size=4, start_eval_epoch=15, eval_interval=2, loss=loss
    )
    return _preset("avss", train)


PRESETS = {"s4": s4, "ms3": ms3, "avss": avss}


def preset(setting: str) -> C.Config:
    """The published AVSBench recipe of `setting` (s4 | ms3 | avss)."""
    return PRESETS[C.setting_info(setting).name]()


def synthetic(cfg: C.Config) -> C.Config:
    """Decoder width 64 over `config.synthetic_base`; MS3 and AVSS take `SYNTHETIC_TPAVI`."""
    changes = {"model.arch.decoder_channels": 64, **SYNTHETIC_TPAVI.get(cfg.model.setting, {})}
    return C.override(cfg, changes)


# The synthetic MS3 / AVSS runs of the TPAVI model (scripts/demo.sh --setting ms3 | avss):
# no masked AV (KL) loss, 64 px frames and more epochs. With the KL term, summed over the
# 20 frames and 256 channels of a batch (5.5 at the start against a BCE of 0.7), the W_z
# BatchNorm gates of the TPAVI blocks, which open the audio branch, grow three times slower.
# What decides whether the audio branch opens is the number of steps on enough distinct
# clips: MS3 with 128 train clips at 64 px opens its gates after ~250 steps and segments
# what it hears by 576 (18 epochs; 64 clips and 320 steps never did); with the 256 of
# `synthetic.MS3_CLIPS` (1152 steps) the gates reach 0.39. 64 px costs the large
# synthetic objects nothing and makes a step ~2x cheaper than 96 px. AVSS opens its
# gates more slowly: with 104 train clips 0.12 after 18 epochs (MS3: 0.32) and it listened
# only a little; with the 208 of `synthetic.AVSS_CLIPS` (936 steps) they reach 0.26 and
# swapping the audio costs 0.12 present-classes mIoU (README, "Results on the synthetic
# AVSBench"). The published presets keep the KL term.
SYNTHETIC_TPAVI = {
    "ms3": {
        "data.image_size": 64,
        "train.max_epoches": 18,
        "train.loss.masked_av_flag": False,
        "train.loss.lambda_1": 0.0,
    },
    "avss": {
        "data.image_size": 64,
        "train.max_epoches": 18,
        "train.loss.masked_av_flag": False,
        "train.loss.lambda_1": 0.0,
    },
}
