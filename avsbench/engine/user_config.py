"""The user's `avs_scripts/<folder>/config.py`, where paths resolve, and the files a run needs
(docs/ARCHITECTURE.md, "Paths").

config.py holds only what differs between the folders: `SETTING` and the paths
`DATA_ROOT`, `BACKBONE_WEIGHTS` {timm name: file}, `VGGISH_WEIGHTS`, `VGGISH_PCA`,
`TRAIN_LOG_DIR`, `TEST_LOG_DIR`. Everything else is the preset of the setting
(`avsbench.config`). Relative paths resolve:
- in config.py: against the folder of that config.py, wherever the command runs from;
- on the command line (`--weights`, `--data_root`, ...: `PATH_FLAGS`): against the folder
  where the user typed the command. `avs_scripts/launch.sh` records it in `AVSBENCH_CWD`
  before it changes into the script folder; without it, the current folder.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

from avsbench import config as C
from avsbench.errors import SetupError
from avsbench.models import registry

REPO_ROOT = Path(__file__).resolve().parents[2]
CWD_ENV = "AVSBENCH_CWD"  # the folder the command was typed in (set by avs_scripts/launch.sh)
# flags holding a path, and the literal values of them that are not paths
PATH_FLAGS = {
    "weights": (),
    "vggish_weights": (),
    "data_root": (),
    "resume": ("auto",),
    "trained_s4_model_path": (),
    "log_dir": (),
    "train_log_dir": (),
    "out_json": (),
    "cache_audio_embeddings": ("memory",),
    "frame_cache": (),
}


def user_cwd() -> Path:
    """Where the user typed the command: $AVSBENCH_CWD, else the current folder."""
    return Path(os.environ.get(CWD_ENV) or os.getcwd())


def resolve_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """`path` (with ~ expanded) as an absolute, normalised path; relative ones join `base`."""
    expanded = os.path.expanduser(os.fspath(path))
    return os.path.normpath(os.path.join(os.fspath(base), expanded))


def resolve_path_flags(args: argparse.Namespace) -> argparse.Namespace:
    """The `PATH_FLAGS` of `args` made absolute against `user_cwd()` (in place)."""
    cwd = user_cwd()
    for flag, literals in PATH_FLAGS.items():
        value = getattr(args, flag, None)
        if isinstance(value, str) and value not in literals:
            setattr(args, flag, resolve_path(value, cwd))
    return args


class UserConfig:
    """What the engine reads from `avs_scripts/<folder>/config.py` (the module docstring).

    Without a module (library use, tests) the presets are used as they are."""

    def __init__(self, setting: str, module: ModuleType | None = None) -> None:
        row = C.setting_info(setting)
        declared = getattr(module, "SETTING", setting)
        if declared != setting:
            raise ValueError(f"config.py of setting {declared!r} given to the {setting} command")
        self.setting = setting
        self.module = module
        self.synthetic = False  # get_config(synthetic=...): what missing-file messages suggest
        default_file = REPO_ROOT / "avs_scripts" / row.script_folder / "config.py"
        source = getattr(module, "__file__", None)
        file = Path(source or default_file).resolve()
        self.folder = file.parent if source else None  # relative paths in config.py join it
        try:
            self.file = str(file.relative_to(REPO_ROOT))  # how messages name config.py
        except ValueError:
            self.file = str(file)

    def _value(self, name: str, default: Any = None) -> Any:
        return getattr(self.module, name, default) if self.module is not None else default

    def path(self, value: str | None) -> str | None:
        """A path of config.py, resolved against its folder (None stays None)."""
        if value is None or self.folder is None:
            return value
        return resolve_path(value, self.folder)

    def get_config(self, synthetic: bool, method: str | None = None) -> C.Config:
        """The preset of the setting and `method` (default: the registry's) with config.py's
        paths (`synthetic`: the method's small CPU configuration, no pretrained files)."""
        cfg = registry.preset(self.setting, method or registry.DEFAULT_METHOD)
        if self.module is not None:
            cfg = C.with_user_paths(
                cfg,
                data_root=self.path(self._value("DATA_ROOT", cfg.data.root)),
                backbone_weights=self.backbone_weights(cfg.model.backbone),
                vggish_weights=self.path(self._value("VGGISH_WEIGHTS")),
                vggish_pca=self.path(self._value("VGGISH_PCA")),
                log_dir=self.log_dir("train"),
            )
        self.synthetic = synthetic  # what the messages of a missing file suggest
        if not synthetic:
            return cfg
        no_files = {"model.backbone_weights": None, "model.vggish_weights": None}
        return C.override(registry.synthetic(cfg), {**no_files, "model.vggish_pca": None})

    def backbone_weights(self, backbone: str) -> str | None:
        """BACKBONE_WEIGHTS[backbone] of config.py, resolved (None if not listed)."""
        return self.path((self._value("BACKBONE_WEIGHTS") or {}).get(backbone))

    def log_dir(self, kind: str) -> str:
        """TRAIN_LOG_DIR / TEST_LOG_DIR of config.py, resolved (default ./train_logs ...)."""
        name, default = {"train": ("TRAIN_LOG_DIR", "./train_logs"),
                         "test": ("TEST_LOG_DIR", "./test_logs")}[kind]  # fmt: skip
        return str(self.path(self._value(name, default)))


# ---------------------------------------------------------------------------------------
# Files the run needs
# ---------------------------------------------------------------------------------------
def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def toy_data_hint(setting: str, lead: str = "or make the synthetic AVSBench instead") -> str:
    folder = C.setting_info(setting).script_folder
    return (
        f"{lead} (no downloads):\n"
        f"  cd {REPO_ROOT} && avsbench make-toy-data --out avsbench_data\n"
        f"  cd avs_scripts/{folder} && bash train.sh --synthetic"
    )


def missing_data_message(setting: str, root: str, user: UserConfig, detail: str = "") -> str:
    """Data not found at `root`: where to set it, and how to make the synthetic data; with
    --synthetic already given, the make-toy-data command that writes this very root."""
    lines = [
        f"AVSBench {setting.upper()} data not found at {_abs(root)}"
        + (f" ({detail})" if detail else "")
    ]
    folder = C.setting_info(setting).dataset_folder
    if user.synthetic and Path(root).name == folder and not Path(root).exists():
        out = shlex.quote(str(Path(_abs(root)).parent))
        lines += [
            "Fix: make the synthetic AVSBench there (no downloads):",
            f"  avsbench make-toy-data --out {out} --settings {setting}",
            f"or pass --data_root the folder that holds it (a {folder} folder).",
        ]
        return "\n".join(lines)
    lines += [
        f"Fix: set DATA_ROOT in {user.file} to your copy of the dataset (or pass --data_root),",
        toy_data_hint(setting),
    ]
    return "\n".join(lines)


def check_files(cfg: C.Config, user: UserConfig, *, need_backbone: bool = True) -> None:
    """Data root and pretrained files exist; else one SetupError naming config.py's field."""
    setting = cfg.model.setting
    if not Path(cfg.data.root).is_dir():
        raise SetupError(missing_data_message(setting, cfg.data.root, user))
    files = [
        ("VGGISH_WEIGHTS", cfg.model.vggish_weights, "vggish-10086976.pth"),
        ("VGGISH_PCA", cfg.model.vggish_pca, "vggish_pca_params-970ea276.pth"),
    ]
    if need_backbone:
        name = f"BACKBONE_WEIGHTS[{cfg.model.backbone!r}]"
        files.insert(0, (name, cfg.model.backbone_weights, "the backbone file"))
    for constant, path, expected in files:
        if path and not Path(path).is_file():
            raise SetupError(
                f"pretrained file not found: {_abs(path)} ({expected}).\n"
                f"Fix: set {constant} in {user.file} to where the file is (see "
                "pretrained_backbones/README.md), or set it to None to train from random "
                "initialisation"
                # training only: a synthetic run needs no files (a test of a checkpoint does)
                + (
                    ";\n"
                    + toy_data_hint(
                        setting, "or try the synthetic AVSBench, which needs no pretrained files"
                    )
                    if need_backbone
                    else ""
                )
            )


def explain_data_error(err: Exception, cfg: C.Config, user: UserConfig) -> SetupError:
    """A dataset error as one SetupError: when the data root or its metadata CSV is missing
    (layouts.DataNotFoundError), with where to set DATA_ROOT; otherwise (a malformed row, a
    broken file of a dataset that is there) its own message, which names the file, line
    and problem."""
    from avsbench.data.layouts import DataNotFoundError

    if isinstance(err, DataNotFoundError) or not Path(cfg.data.root).is_dir():
        return SetupError(missing_data_message(cfg.model.setting, cfg.data.root, user, str(err)))
    return SetupError(str(err))
