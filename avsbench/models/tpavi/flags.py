"""TPAVI's command-line flags (the published scripts' names): architecture and losses.

The engine adds them to train.sh / test.sh from the spec and maps each given flag to its
config field; a flag of TPAVI given with another --method is refused there.
"""

from __future__ import annotations

import argparse

from avsbench.models.spec import MethodFlag
from avsbench.models.tpavi.block import TPAVI_MODES
from avsbench.models.tpavi.losses import AVSS_BACKGROUND


def _stage(text: str) -> int:
    value = int(text)
    if value not in range(4):
        raise argparse.ArgumentTypeError(f"stages are 0, 1, 2 or 3, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _switch(help: str) -> dict:
    """An official on/off flag: `--name` turns it on, `--no-name` off; absent: the config."""
    return {"action": argparse.BooleanOptionalAction, "help": help}


ARCH = "model.arch."
LOSS = "train.loss."
MS3_AVSS = ("ms3", "avss")

FLAGS = (
    MethodFlag(
        "--tpavi_stages",
        ARCH + "tpavi_stages",
        {
            "type": _stage,
            "nargs": "*",
            "metavar": "S",
            "help": "stages (0-3) with a TPAVI block; give none for no TPAVI (default: 0 1 2 3)",
        },
    ),  # fmt: skip
    MethodFlag(
        "--tpavi_vv_flag",
        ARCH + "tpavi_vv",
        {
            "action": "store_true",
            "help": "video self-attention in TPAVI. As in the official scripts, giving "
            "--tpavi_vv_flag and/or --tpavi_va_flag sets both (absent = off); giving neither "
            "keeps the config (audio-visual only)",
        },
        also={ARCH + "tpavi_va": False},
    ),  # fmt: skip
    MethodFlag(
        "--tpavi_va_flag",
        ARCH + "tpavi_va",
        {"action": "store_true", "help": "audio-visual TPAVI"},
        also={ARCH + "tpavi_vv": False},
    ),
    MethodFlag(
        "--tpavi_dense",
        ARCH + "tpavi_dense",
        _switch("the published N x N form of TPAVI (same result, slower; for checks)"),
    ),
    MethodFlag(
        "--tpavi_mode", ARCH + "tpavi_mode", {"choices": TPAVI_MODES, "help": "default: dot"}
    ),
    MethodFlag(
        "--decoder_channels",
        ARCH + "decoder_channels",
        {"type": _positive, "help": "model width (published: 256)"},
    ),
    # the audio-visual matching losses (train.sh)
    MethodFlag(
        "--lambda_1",
        LOSS + "lambda_1",
        {"type": float, "help": "weight of the matching loss"},
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--mask_pooling_type",
        LOSS + "mask_pooling_type",
        {"choices": ("avg", "max"), "help": "mask downsampling (default: avg)"},
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--sa_loss_flag",
        LOSS + "sa_loss_flag",
        _switch("the optional S4 matching (sa) loss (off in the official run)"),
        settings=("s4",),
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--sa_loss_stages",
        LOSS + "av_stages",
        {"type": _stage, "nargs": "*", "metavar": "S"},
        settings=("s4",),
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--masked_av_flag",
        LOSS + "masked_av_flag",
        _switch("the masked audio-visual (AVM) loss (on in the official run)"),
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--masked_av_stages",
        LOSS + "av_stages",
        {"type": _stage, "nargs": "*", "metavar": "S"},
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--threshold_flag",
        LOSS + "threshold_flag",
        _switch("binarise the pooled mask at 0.5"),
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--norm_fea_flag",
        LOSS + "norm_fea_flag",
        _switch("L2-normalise the audio and masked visual features"),
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--closer_flag",
        LOSS + "closer_flag",
        _switch("AVM-VV: the target is the nearest other frame's visual feature"),
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    # one distance: choosing one explicitly turns the other off
    MethodFlag(
        "--euclidean_flag",
        LOSS + "euclidean_flag",
        _switch("euclidean distance instead of KL"),
        also={LOSS + "kl_flag": False},
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--kl_flag",
        LOSS + "kl_flag",
        _switch("KL(softmax(audio) || softmax(visual)) (the official run)"),
        also={LOSS + "euclidean_flag": False},
        settings=MS3_AVSS,
        train_only=True,
    ),  # fmt: skip
    MethodFlag(
        "--avss_background",
        LOSS + "avss_background",
        {
            "choices": sorted(AVSS_BACKGROUND),
            "help": "background class of the masked AV loss: first = class 0 (the published "
            "code today, default), last = class 70 (before 2024-09-06)",
        },
        settings=("avss",),
        train_only=True,
    ),  # fmt: skip
)
