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
from avsbench.data.augment import AUGMENTS
from avsbench.data.datasets import DATA_SOURCES
from avsbench.engine.runs import check_session_name
from avsbench.errors import SetupError
from avsbench.flag_parser import FlagParser
from avsbench.models import registry
from avsbench.models.backbones.visual import resolve_backbone
from avsbench.models.spec import MethodFlag
from avsbench.zoo import weights_argument

if TYPE_CHECKING:
    from avsbench.engine.user_config import UserConfig

AMP_CHOICES = ("off", "bf16", "fp16")


# ---------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------
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


def add_model_arguments(parser: argparse.ArgumentParser, preset: C.Config) -> None:
    """Flags shared by train.py and test.py (model, data and runtime)."""
    m, t = preset.model, preset.train
    g = parser.add_argument_group("official flags")
    g.add_argument("--session_name", help=f"run name (default: {t.session_name})")
    methods = "; ".join(f"{name}: {spec.description}" for name, spec in registry.METHODS.items())
    g.add_argument(
        "--method",
        choices=sorted(registry.METHODS),
        help=f"{methods}. test.sh reads it off the checkpoint; giving it there checks it",
    )
    g.add_argument(
        "--visual_backbone",
        help="resnet (ResNet-50) | pvt (PVT-v2-b5) | any timm model name with 4 feature "
        f"stages (default: {m.backbone}; --synthetic: resnet18)",
    )
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
            "v1m (MS3) clips of AVSBench-semantic, --data_root = its AVSBench_semantic folder; "
            "vct384: VCT's 384-px copies (avsbench_data/README.md)",
        )
    else:
        p.add_argument(
            "--data_source",
            choices=("semantic", "vct384"),
            help="semantic: the AVSBench-semantic release (default); vct384: VCT's 384-px "
            "copies inside it (avsbench_data/README.md)",
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


def method_flags(setting: str, *, train: bool) -> dict[str, list[tuple[str, MethodFlag]]]:
    """flag name -> [(method, its MethodFlag)] of every registered method's flags that
    `setting` and the command (train.sh: train=True) have."""
    found: dict[str, list[tuple[str, MethodFlag]]] = {}
    for name, spec in registry.METHODS.items():
        for flag in spec.flags:
            in_setting = flag.settings is None or setting in flag.settings
            if in_setting and (train or not flag.train_only):
                found.setdefault(flag.name, []).append((name, flag))
    return found


def add_method_arguments(parser: argparse.ArgumentParser, setting: str, *, train: bool) -> None:
    """One group per method with its own flags (a flag several methods share, such as
    --decoder_channels, is listed once, with the first method's options)."""
    groups: dict[str, Any] = {}
    for name, owners in method_flags(setting, train=train).items():
        method, flag = owners[0]
        if method not in groups:
            groups[method] = parser.add_argument_group(f"{method} flags (--method {method})")
        help_text = flag.options.get("help", "")
        if len(owners) > 1:
            help_text += f" [methods: {', '.join(m for m, _ in owners)}]"
        groups[method].add_argument(name, **{**flag.options, "default": None, "help": help_text})


def _method_changes(
    args: argparse.Namespace, method: str, setting: str, train: bool, only_train: bool = False
) -> dict:
    """Dotted config changes of the method flags given (only_train: of its train-only flags
    alone); a flag of another method only is a SetupError naming the methods that take it."""
    changes: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for name, owners in method_flags(setting, train=train).items():
        value = getattr(args, name.lstrip("-"), None)
        if value is None:
            continue
        mine = [flag for owner, flag in owners if owner == method]
        if not mine:
            takes = ", ".join(owner for owner, _ in owners)
            raise SetupError(f"{name} is a flag of --method {takes}, not of {method}: leave it out")
        flag = mine[0]
        if only_train and not flag.train_only:
            continue
        changes.update(flag.also)
        given[flag.key] = tuple(value) if isinstance(value, list) else value
    return {**changes, **given}


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
    preset = registry.preset(setting)
    description, group, batch_flag, batch_help = COMMANDS[prog]
    title = C.setting_info(setting).title
    parser = FlagParser(prog=prog, description=description.format(title=title))
    add_model_arguments(parser, preset)
    official = parser.add_argument_group(group)
    official.add_argument(batch_flag, type=_positive_int, help=batch_help.format(cfg=preset))
    return parser, official, preset


def build_train_parser(setting: str) -> argparse.ArgumentParser:
    """The flags of `avs_scripts/<folder>/train.py`."""
    from avsbench.engine.optim import (  # (optim.py imports this module)
        add_optim_arguments,
        non_negative_number,
        positive_number,
    )

    parser, g, preset = _command_parser(setting, "train.py")
    t = preset.train
    g.add_argument("--val_batch_size", type=_positive_int, help=f"(default: {t.val_batch_size})")
    g.add_argument("--max_epoches", type=_positive_int, help=f"(sic) (default: {t.max_epoches})")
    g.add_argument("--lr", type=positive_number, help=f"learning rate (default: {t.lr})")
    g.add_argument(
        "--wt_dec",
        type=non_negative_number,
        help="accepted for compatibility and, as in the published code, NOT applied",
    )
    g.add_argument(
        "--weights",
        type=weights_argument,
        help="initialise the model from this checkpoint (project or official, or a zoo name "
        "fetched by avsbench download) before training",
    )
    if setting == "ms3":
        g.add_argument("--load_s4_params", action="store_true", default=None,
                       help="initialise from a trained S4 model")  # fmt: skip
        g.add_argument("--trained_s4_model_path", type=weights_argument,
                       help="S4 checkpoint (project or official, or a zoo name)")  # fmt: skip
    if setting == "avss":
        g.add_argument("--start_eval_epoch", type=_non_negative_int,
                       help=f"first validated epoch, 0-based ({t.start_eval_epoch})")  # fmt: skip
        g.add_argument("--eval_interval", type=_positive_int,
                       help=f"validate every N epochs (default: {t.eval_interval})")  # fmt: skip
    add_method_arguments(parser, setting, train=True)

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
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="training augmentation of the train split, in lockstep over a clip's frames, "
        "masks and maskiges (docs/TRAINING.md; default: the method's recipe: COMBO and VCT "
        "theirs, the other methods none)",
    )
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
    add_method_arguments(parser, setting, train=False)
    g.add_argument(
        "--weights",
        type=weights_argument,
        help="checkpoint to test: a project checkpoint, an official flat state dict or a zoo "
        "name fetched by avsbench download (default: <session>_best.pth of the latest run)",
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
        "--audio",
        choices=("own", "swap", "silence", "noise", "offscreen"),
        help="the sound each clip is tested with: its own (default); another clip's (swap); "
        "or an AVSBench-Robust negative: silence, noise, or an off-screen sound of another "
        "category (docs/METRICS.md, 'AVSBench-Robust'); the false-positive rate is reported",
    )
    p.add_argument("--swap_audio", action="store_true", help="the same as --audio swap")
    p.add_argument(
        "--negative_frontend",
        choices=("vggish", "robust"),
        default="vggish",
        help="log-mel of the negatives: VGGish's (default, as the models were trained) or "
        "AVSBench-Robust's librosa-style one at 22.05 kHz",
    )
    p.add_argument(
        "--negative_seed",
        type=int,
        default=42,
        help="seed of the noise and of the off-screen choices (42, as the paper)",
    )
    p.add_argument("--out_json", help="metrics file (default: <log_dir>/<run>/metrics.json)")
    return parser


# ---------------------------------------------------------------------------------------
# Flags -> Config
# ---------------------------------------------------------------------------------------
def model_overrides(
    args: argparse.Namespace,
    user: UserConfig,
    method: str = registry.DEFAULT_METHOD,
) -> dict[str, Any]:
    """Dotted config changes for the model/data/runtime flags that were given, and the
    architecture flags of `method`.

    --visual_backbone also sets the backbone's file (BACKBONE_WEIGHTS of config.py; none
    with --synthetic)."""
    ch: dict[str, Any] = {}
    check_flags(args)
    if args.visual_backbone is not None:
        backbone = resolve_backbone(args.visual_backbone)
        ch["model.backbone"] = backbone
        ch["model.backbone_weights"] = None if args.synthetic else user.backbone_weights(backbone)
    for flag, key in (
        ("image_size", "data.image_size"),
        ("data_root", "data.root"),
        ("data_source", "data.source"),
        ("num_workers", "runtime.num_workers"),
        ("cache_audio_embeddings", "data.embedding_cache"),
        ("frame_cache", "data.frame_cache"),
        ("strict_masks", "data.strict_masks"),
        ("amp", "runtime.amp"),
        ("channels_last", "runtime.channels_last"),
        ("log_dir", "train.log_dir"),
        ("session_name", "train.session_name"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            ch[key] = value
    return {**ch, **_method_changes(args, method, user.setting, train=False)}


def check_flags(args: argparse.Namespace) -> None:
    """Flags that are wrong whatever the config: checked before any file is read."""
    if args.session_name is not None:
        try:
            check_session_name(args.session_name)
        except ValueError as err:
            raise SetupError(str(err)) from err


def train_overrides(
    args: argparse.Namespace, setting: str, method: str = registry.DEFAULT_METHOD
) -> dict[str, Any]:
    """Dotted config changes for the training flags that were given, and the training-only
    flags of `method` (its losses, and settings of its training such as COMBO's
    `model.arch.train_audio_groups`)."""
    from avsbench.engine.optim import OPTIM_FLAGS

    ch: dict[str, Any] = {}
    for flag in ("train_batch_size", "val_batch_size", "max_epoches", "lr", "wt_dec", "seed",
                 "max_steps_per_epoch", "start_eval_epoch", "eval_interval",
                 "freeze_backbone_epochs", *OPTIM_FLAGS):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None:
            ch[f"train.{flag}"] = tuple(value) if isinstance(value, list) else value
    if getattr(args, "augment", None) is not None:
        ch["data.augment"] = args.augment
    return {**ch, **_method_changes(args, method, setting, train=True, only_train=True)}


def check_model_config(cfg: C.Config) -> None:
    """Contradictions in the model / data / runtime settings, as one SetupError each."""
    if cfg.data.image_size % 32:
        raise SetupError(f"image size {cfg.data.image_size} must be a multiple of 32")
    if cfg.runtime.amp not in AMP_CHOICES:
        raise SetupError(f"amp {cfg.runtime.amp!r}: valid {AMP_CHOICES}")
    if cfg.data.source not in DATA_SOURCES:
        raise SetupError(f"data source {cfg.data.source!r}: valid {DATA_SOURCES}")
    if cfg.data.augment not in AUGMENTS:
        raise SetupError(f"augmentation {cfg.data.augment!r}: valid {AUGMENTS}")
    if cfg.data.augment != "none" and cfg.train.seed < 0:
        raise SetupError(f"seed {cfg.train.seed}: an augmented run needs a seed >= 0")


def check_config(cfg: C.Config) -> None:
    """`check_model_config`, loss settings the method does not read (changed from their
    defaults: they would be silently ignored), and the method's own checks."""
    check_model_config(cfg)
    spec = registry.method_spec(cfg.model.method)
    defaults = C.LossConfig()
    foreign = [
        name
        for name in C.LossConfig.__dataclass_fields__
        if name not in spec.loss_fields and getattr(cfg.train.loss, name) != getattr(defaults, name)
    ]
    if foreign:
        raise SetupError(
            f"train.loss.{', train.loss.'.join(foreign)} are not read by the {spec.name} loss: "
            "leave those flags out"
        )
    try:
        spec.check(cfg)
    except ValueError as err:
        raise SetupError(str(err)) from err


def apply(cfg: C.Config, changes: dict[str, Any]) -> C.Config:
    """`cfg` with dotted `changes`; an unknown key or a value a field refuses: SetupError."""
    try:
        return C.override(cfg, changes) if changes else cfg
    except KeyError as err:
        raise SetupError(str(err.args[0])) from err
