"""Configuration: the table of settings, and frozen dataclasses for the model, the data,
training and evaluation.

`SETTINGS` holds, once, what differs between S4, MS3 and AVSS (classes, clip length, script
and dataset folders). The recipes are the methods' own: each method package has its presets
and its architecture dataclass (`ModelConfig.arch`), and `avsbench.models.registry.preset(
setting, method)` picks one. `synthetic_base()` holds what every method's small CPU
configuration for the synthetic AVSBench shares. Overrides go through
`dataclasses.replace` or `override(cfg, {"train.lr": 3e-4, "model.arch.num_queries": 16})`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What differs between the AVSBench settings: one row of `SETTINGS`."""

    name: str  # s4 | ms3 | avss
    title: str  # S4 | MS3 | AVSS: printed names and the default session name
    num_classes: int  # output channels: 1 (sigmoid logit, S4/MS3) or 71 (AVSS classes)
    frames_per_clip: int  # 5 for S4/MS3, 10 for AVSS (shorter clips are padded)
    script_folder: str  # avs_scripts/<script_folder>/ holds its config.py, train.sh, test.sh
    dataset_folder: str  # the released dataset's folder, e.g. avsbench_data/Single-source

    @property
    def semantic(self) -> bool:
        """True for class masks (argmax over classes), False for binary masks."""
        return self.num_classes > 1


SETTINGS: dict[str, Setting] = {
    "s4": Setting("s4", "S4", 1, 5, "avs_s4", "Single-source"),
    "ms3": Setting("ms3", "MS3", 1, 5, "avs_ms3", "Multi-sources"),
    "avss": Setting("avss", "AVSS", 71, 10, "avss", "AVSBench_semantic"),
}


def setting_info(name: str) -> Setting:
    """The row of `SETTINGS` for `name`; an unknown name raises ValueError listing the valid."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; valid: {sorted(SETTINGS)}")
    return SETTINGS[name]


def default_data_root(setting: str) -> str:
    """Where `avsbench make-toy-data --out avsbench_data` (or the release) puts the dataset,
    relative to the repository root; the scripts take DATA_ROOT from their config.py."""
    return f"avsbench_data/{setting_info(setting).dataset_folder}"


@dataclass(frozen=True)
class ModelConfig:
    method: str  # a name of avsbench.models.registry.METHODS: model, losses, recipe
    setting: str = "s4"  # s4 | ms3 | avss: decides the number of output channels
    backbone: str = "resnet50"  # resnet50 | pvt_v2_b5 | any timm model with 4 feature stages
    num_classes: int = 1  # 1 logit channel for S4/MS3, 71 classes for AVSS
    backbone_weights: str | None = None  # path to resnet50-19c8e357.pth / pvt_v2_b5.pth / timm
    vggish_weights: str | None = None  # path to vggish-10086976.pth (None: random, frozen)
    vggish_pca: str | None = None  # path to vggish_pca_params-970ea276.pth (PCA is off if None)
    # the method's own architecture (a frozen dataclass of its package, e.g. TPAVIArch);
    # None: that dataclass's defaults (the registry fills it in)
    arch: Any = None


@dataclass(frozen=True)
class DataConfig:
    root: str = "avsbench_data/Single-source"  # dataset root as released (see its readme)
    image_size: int = 224  # frames and masks are resized to image_size x image_size
    # val/test masks at this size instead (None: image_size): VCT feeds 384 x 384 frames and
    # maskiges but evaluates against 224 x 224 GT (its gt_masks_224)
    eval_mask_size: int | None = None
    frames_per_clip: int = 5  # 5 for S4/MS3, 10 for AVSS (clips are padded to it)
    embedding_cache: str | None = None  # "memory" or a folder: frozen VGGish runs once per clip
    frame_cache: str | None = None  # folder: frames/masks decoded once (docs/FRAME_CACHE.md)
    # S4/MS3 only: "object" reads the AVSBench-object release (Single-source, Multi-sources);
    # "semantic" its v1s / v1m copies inside AVSBench-semantic (root = AVSBench_semantic)
    source: str = "object"
    # S4/MS3 masks in another encoding than 0/255 grey (0/1, colour, alpha): an error, not a
    # warning (docs/RELIABILITY.md)
    strict_masks: bool = False
    # training augmentation of the train split (avsbench/data/augment.py, docs/TRAINING.md):
    # "none" | "mask2former" (COMBO S4/MS3, VCT) | "mask2former_color_flip" (COMBO AVSS)
    augment: str = "none"


@dataclass(frozen=True)
class LossConfig:
    sa_loss_flag: bool = False  # S4 only: the optional audio-visual matching (sa) loss
    masked_av_flag: bool = False  # MS3/AVSS: the masked audio-visual (AVM) loss
    lambda_1: float = 0.0  # weight of the AVM / sa loss
    av_stages: tuple[int, ...] = (0, 1, 2, 3)  # --sa_loss_stages / --masked_av_stages
    mask_pooling_type: str = "avg"  # avg | max: how the mask is shrunk to each stage
    threshold_flag: bool = False  # binarise the pooled mask at 0.5
    norm_fea_flag: bool = False  # L2-normalise audio and masked visual features
    closer_flag: bool = False  # AVM-VV: target is the nearest other frame's visual feature
    euclidean_flag: bool = False  # euclidean distance instead of KL
    kl_flag: bool = False  # KL(softmax(audio) || softmax(visual))
    # AVSS: the class the masked AV loss calls background. "first": class 0, as the published
    # code since 2024-09-06; "last": class 70, as before (docs/DIFFERENCES.md)
    avss_background: str = "first"
    mix_loss_weight: float = 0.1  # AVSegFormer only: weight of its mix loss (published: 0.1)


@dataclass(frozen=True)
class TrainConfig:
    session_name: str = "S4"  # runs go to <log_dir>/<session_name>_<YYYYmmdd-HHMMSS>/
    log_dir: str = "./train_logs"
    max_epoches: int = 15  # (sic) official flag name
    train_batch_size: int = 4  # clips per optimisation step
    val_batch_size: int = 1  # clips per validation batch (matters for the official metric)
    lr: float = 1e-4  # learning rate
    optimizer: str = "adam"  # adam (AVSBench) | adamw (AVSegFormer: torch defaults, decay
    # 0.01) | sgd
    freeze_backbone_epochs: int = 0  # the visual backbone is frozen for the first N epochs
    wt_dec: float = 5e-4  # accepted like the official flag and, like it, not applied
    seed: int = 123
    start_eval_epoch: int = 0  # AVSS: first epoch (0-based) with validation
    eval_interval: int = 1  # validate every this many epochs
    max_steps_per_epoch: int | None = None  # cap for quick runs (None: the whole split)
    loss: LossConfig = field(default_factory=LossConfig)
    # Optimizer and schedule (avsbench/engine/optim.py, docs/TRAINING.md). The defaults are
    # the published runs: constant lr, torch's weight decay of the optimizer, no clipping.
    max_iters: int | None = None  # None: train max_epoches epochs; N: N iterations (steps)
    eval_interval_iters: int | None = None  # with max_iters: validate every N iterations
    # (and at the end); None: at the end only. Without max_iters unused (eval_interval)
    momentum: float = 0.9  # sgd only
    weight_decay: float | None = None  # None: the optimizer's torch default (adam 0,
    # adamw 0.01, sgd 0); Mask2Former family: adamw 0.05
    schedule: str = "constant"  # constant | step | poly, stepped per iteration
    poly_power: float = 0.9  # poly: lr * (1 - it / total_iters) ** poly_power
    lr_steps: tuple[int, ...] = ()  # step: iterations at which the lr is multiplied by
    lr_gamma: float = 0.1  # this factor (lr * lr_gamma ** #steps passed)
    warmup_iters: int = 0  # linear warm-up over the first N iterations (any schedule)
    warmup_factor: float = 0.001  # the warm-up starts at lr * warmup_factor
    backbone_lr_mult: float = 1.0  # the method's "backbone" parameter group trains at lr * this
    grad_clip_norm: float | None = None  # clip the L2 norm of ALL gradients together
    # (detectron2's "full_model" clip; Mask2Former family: 0.01); None: no clipping


@dataclass(frozen=True)
class EvalConfig:
    test_batch_size: int = 4  # clips per test batch (official runs: 4; it changes S4/MS3 F)
    # S4/MS3: the official metrics also at these batch sizes (clips), computed on
    # sub-batches of each test batch: 4 = AVSBench's protocol, 2 = AVSegFormer's
    # (docs/METRICS.md, "Comparing the two methods' tables"); sizes must divide the test batch
    official_batch_sizes: tuple[int, ...] = (4, 2)


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run uses the machine: changes nothing of the recipe (a run may resume with
    other values)."""

    amp: str = "off"  # off | bf16 | fp16 (fp16 uses a grad scaler)
    channels_last: bool = False  # channels-last memory format (faster convs on recent GPUs)
    num_workers: int = 4  # DataLoader worker processes


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def setting_preset(setting: str, train: TrainConfig, model: ModelConfig) -> Config:
    """A method's preset of `setting`: `model` and the recipe `train`, with the setting's
    classes, clip length, data folder and session name (`SETTINGS`)."""
    row = setting_info(setting)
    return Config(
        model=dataclasses.replace(model, setting=row.name, num_classes=row.num_classes),
        data=DataConfig(root=default_data_root(setting), frames_per_clip=row.frames_per_clip),
        train=dataclasses.replace(train, session_name=row.title),
    )


def synthetic_base(cfg: Config) -> Config:
    """What every method's small CPU configuration for the synthetic AVSBench shares:
    ResNet-18 (random init: no weights to download), 96x96 frames, learning rate 1e-3,
    VGGish embeddings cached, 16 (S4) / 8 epochs of batch 4, validation every epoch. The
    method then shrinks its own architecture (`MethodSpec.synthetic`)."""
    return override(
        cfg,
        {
            "model.backbone": "resnet18",
            "data.image_size": 96,
            "runtime.num_workers": 2,
            "data.embedding_cache": "memory",  # the frozen VGGish runs once per clip
            "train.lr": 1e-3,
            "train.max_epoches": 16 if cfg.model.setting == "s4" else 8,
            "train.train_batch_size": 4,
            "train.start_eval_epoch": 0,
            "train.eval_interval": 1,
        },
    )


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any], arch_types: Mapping[str, type] | None = None) -> Config:
    """Inverse of `to_dict` (unknown keys are an error; missing keys take defaults; the
    `REMOVED_FIELDS` of older checkpoints are skipped).

    arch_types: {method: its architecture dataclass} (the registry's `arch_types()`), to
    rebuild `model.arch`. Configs of older versions kept every method's fields flat in
    `model`: those of the config's method move into its `arch` (renamed by the dataclass's
    `LEGACY_NAMES`), those of other methods are dropped."""

    def build(cls: Any, values: dict[str, Any]) -> Any:
        kwargs = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if (cls, key) in REMOVED_FIELDS:
                continue
            if key not in fields:
                valid = sorted(fields)
                raise KeyError(f"unknown config field {cls.__name__}.{key}; valid: {valid}")
            sub = _DATACLASS_FIELDS.get((cls, key))
            if sub is not None:
                value = build(sub, value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    d = _runtime_moved(dict(d))
    if "model" in d:
        d["model"] = _model_values(dict(d["model"]), arch_types or {})
        arch = d["model"].pop("arch", None)
        cfg = build(Config, d)
        method = cfg.model.method
        if arch is not None:
            if method not in (arch_types or {}):
                raise KeyError(
                    f"unknown model.method {method!r}; valid: {sorted(arch_types or {})}"
                )
            arch = build(arch_types[method], arch)  # type: ignore[index]
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch))
    return build(Config, d)


# (section, field) of configs from before RuntimeConfig -> its field
MOVED_TO_RUNTIME = {("train", "amp"), ("train", "channels_last"), ("data", "num_workers")}


def _runtime_moved(d: dict[str, Any]) -> dict[str, Any]:
    """`d` with the runtime fields of an older config moved from `train` / `data`."""
    runtime = dict(d.get("runtime") or {})
    for section, name in MOVED_TO_RUNTIME:
        if isinstance(d.get(section), Mapping) and name in d[section]:
            d[section] = dict(d[section])
            runtime.setdefault(name, d[section].pop(name))
    if runtime:
        d["runtime"] = runtime
    return d


def _model_values(model: dict[str, Any], arch_types: Mapping[str, type]) -> dict[str, Any]:
    """`model` with an older config's flat architecture fields moved into `arch`."""
    own = {f.name for f in dataclasses.fields(ModelConfig)}
    flat = {k: model.pop(k) for k in list(model) if k not in own}
    if not flat:
        return model
    arch_type = arch_types.get(model.get("method", ""))
    if arch_type is None:
        raise KeyError(f"unknown config fields model.{sorted(flat)}")
    renames = getattr(arch_type, "LEGACY_NAMES", {})
    arch_fields = {f.name for f in dataclasses.fields(arch_type)}
    others = {f.name for t in arch_types.values() for f in dataclasses.fields(t)}
    others |= {old for t in arch_types.values() for old in getattr(t, "LEGACY_NAMES", {})}
    arch = dict(model.get("arch") or {})
    for key, value in flat.items():
        name = renames.get(key, key)
        if name in arch_fields:
            arch.setdefault(name, value)
        elif key not in others:
            raise KeyError(f"unknown config field ModelConfig.{key}; valid: {sorted(own)}")
    model["arch"] = arch
    return model


_DATACLASS_FIELDS = {
    (Config, "model"): ModelConfig,
    (Config, "data"): DataConfig,
    (Config, "train"): TrainConfig,
    (Config, "eval"): EvalConfig,
    (Config, "runtime"): RuntimeConfig,
    (TrainConfig, "loss"): LossConfig,
}

# Fields that configs stored in older checkpoints may hold and that nothing ever read.
REMOVED_FIELDS = {
    (EvalConfig, "save_pred_mask"),  # test.sh reads its --save_pred_mask flag
    (EvalConfig, "save_overlays"),
    (EvalConfig, "report"),  # test.sh reads its --report flag
}


def flat_fields(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict's leaves by dotted key ({"model.arch.tpavi_stages": (0, 1), ...});
    lists (a config read from JSON) become tuples, as in the dataclasses."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(flat_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def override(cfg: Any, changes: Mapping[str, Any]) -> Any:
    """Return `cfg` with dotted keys replaced, e.g. {"train.lr": 1e-3,
    "model.arch.tpavi_stages": (0,)}. Lists become tuples where the field holds a tuple.

    Unknown keys raise KeyError listing the valid ones; `model.method` cannot change here
    (the architecture would not fit: `avsbench.models.registry.preset` makes a method's
    config)."""
    for dotted, value in changes.items():
        cfg = _replace(cfg, dotted.split("."), value, dotted)
    return cfg


def _replace(node: Any, parts: list[str], value: Any, dotted: str) -> Any:
    if not dataclasses.is_dataclass(node):
        raise KeyError(f"unknown config section {dotted!r} (nothing there to set)")
    fields = {f.name for f in dataclasses.fields(node)}
    if parts[0] not in fields:
        raise KeyError(f"unknown config field {dotted!r}; valid: {sorted(fields)}")
    if len(parts) > 1:
        value = _replace(getattr(node, parts[0]), parts[1:], value, dotted)
    elif isinstance(value, list) and isinstance(getattr(node, parts[0]), tuple):
        value = tuple(value)
    if isinstance(node, ModelConfig) and parts == ["method"] and value != node.method:
        raise KeyError(
            f"model.method cannot be overridden ({node.method!r} -> {value!r}): build the "
            "config of that method with avsbench.models.registry.preset(setting, method)"
        )
    return dataclasses.replace(node, **{parts[0]: value})


# TrainConfig fields that belong to the user, not to a method's recipe
USER_TRAIN_FIELDS = ("session_name", "log_dir", "seed")


def recipe_with_user_settings(recipe: Config, base: Config) -> Config:
    """`recipe` (another method's preset of the same setting) with what in `base` is the
    user's: the data (but the recipe's augmentation), the VGGish and backbone files, the
    evaluation, the runtime, and the run's name, log folder and seed (`USER_TRAIN_FIELDS`)."""
    files = ("backbone_weights", "vggish_weights", "vggish_pca")
    model = dataclasses.replace(recipe.model, **{k: getattr(base.model, k) for k in files})
    kept = {name: getattr(base.train, name) for name in USER_TRAIN_FIELDS}
    train = dataclasses.replace(recipe.train, **kept)
    data = dataclasses.replace(base.data, augment=recipe.data.augment)  # part of the recipe
    return dataclasses.replace(
        recipe, model=model, data=data, train=train, eval=base.eval, runtime=base.runtime
    )


def with_user_paths(
    cfg: Config,
    *,
    data_root: str,
    backbone_weights: str | None,
    vggish_weights: str | None,
    vggish_pca: str | None,
    log_dir: str,
) -> Config:
    """`cfg` with the paths of an `avs_scripts/<folder>/config.py`."""
    return override(
        cfg,
        {
            "data.root": data_root,
            "model.backbone_weights": backbone_weights,
            "model.vggish_weights": vggish_weights,
            "model.vggish_pca": vggish_pca,
            "train.log_dir": log_dir,
        },
    )
