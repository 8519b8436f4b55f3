"""Command-line flags of `train.py` / `test.py` (the official names of the published
scripts, docs/ARCHITECTURE.md, plus the project's own) and their mapping onto
`avsbench.config.Config`.

Every flag defaults to None ("not given"): only the flags a user passes change the
configuration, which comes from `avs_scripts/<folder>/config.py` (`user_config.py`) or, on
resume / test, from the checkpoint. Problems the user fixes in config.py or on the command
line raise `SetupError`, printed as one message without a traceback.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from avsbench import config as C
from avsbench.data.datasets import DATA_SOURCES
from avsbench.engine.runs import check_session_name
from avsbench.losses import AVSS_BACKGROUND

if TYPE_CHECKING:
    from avsbench.engine.user_config import UserConfig

BACKBONE_ALIASES = {"resnet": "resnet50", "pvt": "pvt_v2_b5"}  # official flag values
AMP_CHOICES = ("off", "bf16", "fp16")
TPAVI_MODE_CHOICES = ("dot", "embedded", "gaussian", "concatenate")


class SetupError(Exception):
    """A missing file or an inconsistent setting the user must fix (one clear message)."""


# ---------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------
def _stage_list(text: str) -> int:
    value = int(text)
    if value not in range(4):
        raise argparse.ArgumentTypeError(f"stages are 0, 1, 2 or 3, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _image_size(text: str) -> int:
    value = int(text)
    if value < 32 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32, got {value}")
    return value


def _flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """An official on/off flag: `--name` turns it on, `--no-name` off; absent: the config."""
    parser.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=help)


def add_model_arguments(parser: argparse.ArgumentParser, preset: C.Config) -> None:
    """Flags shared by train.py and test.py (model, data and runtime)."""
    m, t = preset.model, preset.train
    g = parser.add_argument_group("official flags")
    g.add_argument("--session_name", help=f"run name (default: {t.session_name})")
    g.add_argument(
        "--method",
        choices=C.METHODS,
        help="tpavi: AVSBench's model and recipe (default); avsegformer: AVSegFormer's "
        "(docs/AVSEGFORMER.md). test.sh reads it off the checkpoint; giving it there checks it",
    )
    g.add_argument(
        "--visual_backbone",
        help="resnet (ResNet-50) | pvt (PVT-v2-b5) | any timm model name with 4 feature "
        f"stages (default: {m.backbone}; --synthetic: resnet18)",
    )
    g.add_argument(
        "--tpavi_stages",
        type=_stage_list,
        nargs="*",
        metavar="S",
        help="stages (0-3) with a TPAVI block; give none for no TPAVI (default: 0 1 2 3)",
    )
    g.add_argument(
        "--tpavi_vv_flag",
        action="store_true",
        default=None,
        help="video self-attention in TPAVI. As in the official scripts, giving "
        "--tpavi_vv_flag and/or --tpavi_va_flag sets both (absent = off); giving neither "
        "keeps the config (audio-visual only)",
    )
    g.add_argument("--tpavi_va_flag", action="store_true", default=None, help="audio-visual TPAVI")
    g.add_argument("--log_dir", help="folder of the run folders")
    g.add_argument("--num_workers", type=_non_negative_int, help="DataLoader worker processes")

    p = parser.add_argument_group("project flags")
    p.add_argument("--data_root", help="dataset root (default: DATA_ROOT in config.py)")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="the small CPU configuration for the synthetic AVSBench (resnet18, random init, "
        "decoder 64, 96 px; no pretrained files needed)",
    )
    if m.setting in ("s4", "ms3"):
        p.add_argument(
            "--data_source",
            choices=DATA_SOURCES,
            help="object: the AVSBench-object release (default); semantic: the v1s (S4) / "
            "v1m (MS3) clips of AVSBench-semantic, --data_root = its AVSBench_semantic folder",
        )
    p.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision (default: off)")
    p.add_argument(
        "--channels_last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format (faster convolutions on recent GPUs)",
    )
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: the GPU if there is one)")
    p.add_argument(
        "--vggish_weights",
        metavar="FILE",
        help="vggish-10086976.pth (default: the checkpoint's own, else VGGISH_WEIGHTS of "
        "config.py; docs/RELIABILITY.md)",
    )
    p.add_argument(
        "--tpavi_dense",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the published N x N form of TPAVI (same result, slower; for checks)",
    )
    p.add_argument("--tpavi_mode", choices=TPAVI_MODE_CHOICES, help="TPAVI mode (default: dot)")
    p.add_argument("--decoder_channels", type=_positive_int, help="decoder width (published 256)")
    p.add_argument("--image_size", type=_image_size, help="frame size in pixels (published 224)")
    p.add_argument(
        "--cache_audio_embeddings",
        nargs="?",
        const="memory",
        metavar="DIR",
        help="compute the frozen VGGish embeddings once per clip: in memory, or as .npy "
        "files under DIR",
    )
    p.add_argument(
        "--strict_masks",
        action="store_true",
        default=None,
        help="stop on a ground-truth mask in another encoding than 0/255 grey (0/1 values, "
        "colour, alpha) instead of warning once per file",
    )
    p.add_argument(
        "--frame_cache",
        metavar="DIR",
        help="decode frames, masks and log-mels once into memory maps under DIR and load "
        "the same samples from there (docs/FRAME_CACHE.md)",
    )


def _add_loss_arguments(parser: argparse.ArgumentParser, setting: str) -> None:
    g = parser.add_argument_group("audio-visual matching loss (official flags)")
    g.add_argument("--lambda_1", type=float, help="weight of the matching loss")
    g.add_argument(
        "--mask_pooling_type", choices=("avg", "max"), help="mask downsampling (default: avg)"
    )
    if setting == "s4":
        _flag(g, "--sa_loss_flag", "the optional S4 matching (sa) loss (off in the official run)")
        g.add_argument("--sa_loss_stages", type=_stage_list, nargs="*", metavar="S")
        return
    _flag(g, "--masked_av_flag", "the masked audio-visual (AVM) loss (on in the official run)")
    g.add_argument("--masked_av_stages", type=_stage_list, nargs="*", metavar="S")
    _flag(g, "--threshold_flag", "binarise the pooled mask at 0.5")
    _flag(g, "--norm_fea_flag", "L2-normalise the audio and masked visual features")
    _flag(g, "--closer_flag", "AVM-VV: the target is the nearest other frame's visual feature")
    _flag(g, "--euclidean_flag", "euclidean distance instead of KL")
    _flag(g, "--kl_flag", "KL(softmax(audio) || softmax(visual)) (the official run)")
    if setting == "avss":
        g.add_argument(
            "--avss_background",
            choices=sorted(AVSS_BACKGROUND),
            help="background class of the masked AV loss: first = class 0 (the published "
            "code today, default), last = class 70 (before 2024-09-06)",
        )


COMMANDS = {  # prog -> (--help text, its official flags' group, its batch flag and help)
    "train.py": (
        "Train AVSBench {title} (the published recipe by default). Paths to data and "
        "pretrained files are in config.py.",
        "training (official flags)",
        "--train_batch_size",
        "clips per step, the GLOBAL batch: split evenly over the processes of a multi-GPU "
        "run (default: {cfg.train.train_batch_size})",
    ),
    "test.py": (
        "Test an AVSBench {title} model: official metrics and better-defined variants, "
        "written to metrics.json.",
        "testing (official flags)",
        "--test_batch_size",
        "clips per test batch; the official S4/MS3 metrics depend on it (default: "
        "{cfg.eval.test_batch_size}, as the official runs)",
    ),
}


def _command_parser(setting: str, prog: str) -> tuple[argparse.ArgumentParser, Any, C.Config]:
    """A parser with the flags shared by train.py and test.py; its group of official flags
    (holding the batch size flag); the preset its help shows."""
    preset = C.preset(setting)
    description, group, batch_flag, batch_help = COMMANDS[prog]
    title = C.setting_info(setting).title
    parser = argparse.ArgumentParser(prog=prog, description=description.format(title=title))
    add_model_arguments(parser, preset)
    official = parser.add_argument_group(group)
    official.add_argument(batch_flag, type=_positive_int, help=batch_help.format(cfg=preset))
    return parser, official, preset


def build_train_parser(setting: str) -> argparse.ArgumentParser:
    """The flags of `avs_scripts/<folder>/train.py`."""
    parser, g, preset = _command_parser(setting, "train.py")
    t = preset.train
    g.add_argument("--val_batch_size", type=_positive_int, help=f"(default: {t.val_batch_size})")
    g.add_argument("--max_epoches", type=_positive_int, help=f"(sic) (default: {t.max_epoches})")
    g.add_argument("--lr", type=float, help=f"learning rate (default: {t.lr})")
    g.add_argument(
        "--wt_dec",
        type=float,
        help="accepted for compatibility and, as in the published code, NOT applied",
    )
    g.add_argument(
        "--weights",
        help="initialise the model from this checkpoint (project or official) before training",
    )
    if setting == "ms3":
        g.add_argument("--load_s4_params", action="store_true", default=None,
                       help="initialise from a trained S4 model")  # fmt: skip
        g.add_argument("--trained_s4_model_path", help="S4 checkpoint (project or official)")
    if setting == "avss":
        g.add_argument("--start_eval_epoch", type=_non_negative_int,
                       help=f"first validated epoch, 0-based ({t.start_eval_epoch})")  # fmt: skip
        g.add_argument("--eval_interval", type=_positive_int,
                       help=f"validate every N epochs (default: {t.eval_interval})")  # fmt: skip
    _add_loss_arguments(parser, setting)

    p = parser.add_argument_group("training (project flags)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="PATH|auto",
        help="continue a run: a checkpoint path, or 'auto' (default when the flag has no "
        "value) for the newest last.pth / interrupted.pth of this session under --log_dir",
    )
    p.add_argument("--max_steps_per_epoch", type=_positive_int, help="cap steps (quick runs)")
    p.add_argument(
        "--freeze_backbone_epochs",
        type=_non_negative_int,
        help=f"keep the visual backbone frozen for the first N epochs (default: "
        f"{t.freeze_backbone_epochs}; AVSegFormer's recipe: 5 / 10 / 0 for S4 / MS3 / AVSS)",
    )
    p.add_argument("--seed", type=int, help=f"(default: {t.seed})")
    from avsbench.engine.optim import add_optim_arguments  # (optim.py imports this module)

    add_optim_arguments(parser, t)
    p.add_argument(
        "--sync_bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SyncBatchNorm in multi-GPU runs so BatchNorm sees the global batch like a "
        "one-process run (default: on for CUDA multi-process runs; unsupported on CPU)",
    )
    return parser


def build_test_parser(setting: str) -> argparse.ArgumentParser:
    """The flags of `avs_scripts/<folder>/test.py`."""
    parser, g, _ = _command_parser(setting, "test.py")
    g.add_argument(
        "--weights",
        help="checkpoint to test: a project checkpoint or an official flat state dict "
        "(default: <session>_best.pth of the latest training run)",
    )
    g.add_argument("--save_pred_mask", action="store_true", default=None,
                   help="write the predicted masks (and overlays)")  # fmt: skip
    p = parser.add_argument_group("testing (project flags)")
    p.add_argument("--train_log_dir", help="where to look for the latest run (default: config)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--report", action="store_true", help="visual report: a grid per video "
                   "(frames, truth, prediction, overlay); AVSS: per-class IoU chart")  # fmt: skip
    p.add_argument("--report_max_videos", type=_positive_int, default=16)
    p.add_argument(
        "--swap_audio",
        action="store_true",
        help="replace each clip's audio by another clip's: if the model uses sound, the "
        "metrics drop",
    )
    p.add_argument("--out_json", help="metrics file (default: <log_dir>/<run>/metrics.json)")
    return parser


# ---------------------------------------------------------------------------------------
# Flags -> Config
# ---------------------------------------------------------------------------------------
def resolve_backbone(name: str) -> str:
    """Official flag values resnet / pvt -> timm names; other names pass through."""
    return BACKBONE_ALIASES.get(name, name)


def model_overrides(args: argparse.Namespace, user: UserConfig) -> dict[str, Any]:
    """Dotted config changes for the model/data/runtime flags that were given.

    --visual_backbone also sets the backbone's file (BACKBONE_WEIGHTS of config.py; none
    with --synthetic)."""
    ch: dict[str, Any] = {}
    if args.session_name is not None:  # before any data or model is built
        try:
            check_session_name(args.session_name)
        except ValueError as err:
            raise SetupError(str(err)) from err
    if getattr(args, "method", None) is not None:
        ch["model.method"] = args.method
    if args.visual_backbone is not None:
        backbone = resolve_backbone(args.visual_backbone)
        ch["model.backbone"] = backbone
        ch["model.backbone_weights"] = None if args.synthetic else user.backbone_weights(backbone)
    if args.tpavi_stages is not None:
        ch["model.tpavi_stages"] = tuple(args.tpavi_stages)
    if args.tpavi_vv_flag or args.tpavi_va_flag:
        ch["model.tpavi_vv"] = bool(args.tpavi_vv_flag)
        ch["model.tpavi_va"] = bool(args.tpavi_va_flag)
    for flag, key in (
        ("tpavi_dense", "model.tpavi_dense"),
        ("tpavi_mode", "model.tpavi_mode"),
        ("decoder_channels", "model.decoder_channels"),
        ("image_size", "data.image_size"),
        ("data_root", "data.root"),
        ("data_source", "data.source"),
        ("num_workers", "data.num_workers"),
        ("cache_audio_embeddings", "data.embedding_cache"),
        ("frame_cache", "data.frame_cache"),
        ("strict_masks", "data.strict_masks"),
        ("amp", "train.amp"),
        ("channels_last", "train.channels_last"),
        ("log_dir", "train.log_dir"),
        ("session_name", "train.session_name"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            ch[key] = value
    return ch


def train_overrides(args: argparse.Namespace, setting: str) -> dict[str, Any]:
    """Dotted config changes for the training and loss flags that were given."""
    from avsbench.engine.optim import OPTIM_FLAGS

    ch: dict[str, Any] = {}
    for flag in ("train_batch_size", "val_batch_size", "max_epoches", "lr", "wt_dec", "seed",
                 "max_steps_per_epoch", "start_eval_epoch", "eval_interval",
                 "freeze_backbone_epochs", *OPTIM_FLAGS):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None:
            ch[f"train.{flag}"] = tuple(value) if isinstance(value, list) else value
    loss_flags = ["lambda_1", "mask_pooling_type"]
    if setting == "s4":
        loss_flags += ["sa_loss_flag"]
        stages = args.sa_loss_stages
    else:
        loss_flags += ["masked_av_flag", "threshold_flag", "norm_fea_flag", "closer_flag"]
        loss_flags += ["euclidean_flag", "kl_flag"]
        if setting == "avss":
            loss_flags += ["avss_background"]
        stages = args.masked_av_stages
        if args.euclidean_flag and args.kl_flag:
            raise SetupError("--euclidean_flag and --kl_flag contradict each other: give one")
        # one distance: choosing one explicitly turns the other off
        if args.euclidean_flag and args.kl_flag is None:
            ch["train.loss.kl_flag"] = False
        if args.kl_flag and args.euclidean_flag is None:
            ch["train.loss.euclidean_flag"] = False
    for flag in loss_flags:
        value = getattr(args, flag, None)
        if value is not None:
            ch[f"train.loss.{flag}"] = value
    if stages is not None:
        ch["train.loss.av_stages"] = tuple(stages)
    return ch


def check_model_config(cfg: C.Config) -> None:
    """Contradictions in the model / data / runtime settings, as one SetupError each."""
    m = cfg.model
    if m.tpavi_stages and not (m.tpavi_va or m.tpavi_vv):
        raise SetupError("--tpavi_stages given but neither --tpavi_va_flag nor --tpavi_vv_flag")
    if cfg.data.image_size % 32:
        raise SetupError(f"image size {cfg.data.image_size} must be a multiple of 32")
    if cfg.train.amp not in AMP_CHOICES:
        raise SetupError(f"amp {cfg.train.amp!r}: valid {AMP_CHOICES}")
    if cfg.data.source not in DATA_SOURCES:
        raise SetupError(f"data source {cfg.data.source!r}: valid {DATA_SOURCES}")


def check_config(cfg: C.Config) -> None:
    """`check_model_config` plus contradictions of the training / loss settings."""
    check_model_config(cfg)
    loss, m = cfg.train.loss, cfg.model
    if m.method == "avsegformer" and (loss.sa_loss_flag or loss.masked_av_flag):
        raise SetupError(
            "--sa_loss_flag / --masked_av_flag are TPAVI's matching losses; AVSegFormer "
            "trains with its own (dice or CE + 0.1 x mix loss): leave them out"
        )
    s4 = m.setting == "s4"
    flag = "--sa_loss_flag" if s4 else "--masked_av_flag"
    stages_flag = "--sa_loss_stages" if s4 else "--masked_av_stages"
    if not (loss.sa_loss_flag or loss.masked_av_flag):
        return
    if loss.lambda_1 <= 0:
        raise SetupError(f"{flag} is on but --lambda_1 is {loss.lambda_1}: give --lambda_1 > 0")
    if not m.tpavi_va:
        raise SetupError(
            f"{flag} needs the audio-visual TPAVI (--tpavi_va_flag): the matching loss uses the "
            "aligned audio it returns"
        )
    outside = sorted(set(loss.av_stages) - set(m.tpavi_stages))
    if outside:
        raise SetupError(
            f"{stages_flag} {list(loss.av_stages)} includes stages {outside} without a TPAVI "
            f"block (--tpavi_stages {list(m.tpavi_stages)})"
        )
    if loss.euclidean_flag and loss.kl_flag:
        raise SetupError("--euclidean_flag and --kl_flag contradict each other: give one")


# ---------------------------------------------------------------------------------------
# Config helpers
# ---------------------------------------------------------------------------------------
def apply(cfg: C.Config, changes: dict[str, Any]) -> C.Config:
    return C.override(cfg, changes) if changes else cfg


def config_diff(old: C.Config, new: C.Config) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old, new)} for every field that differs."""

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(C.to_dict(old)), flat(C.to_dict(new))
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}
