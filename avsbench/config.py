"""Configuration: the table of settings, and frozen dataclasses for the model, the data,
training and evaluation.

`SETTINGS` holds, once, what differs between S4, MS3 and AVSS (classes, TPAVI bias, clip
length, script and dataset folders). One preset per setting (`s4()`, `ms3()`, `avss()`)
reproduces the published AVSBench (TPAVI) recipes (docs/ARCHITECTURE.md),
`avsegformer(setting)` AVSegFormer's (docs/AVSEGFORMER.md); `preset(setting, method)` picks
one. `synthetic()` turns any preset
into a small configuration that trains in minutes on a CPU on the project's synthetic
AVSBench. Overrides go through `dataclasses.replace` or `override(cfg, {"train.lr": 3e-4})`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What differs between the AVSBench settings: one row of `SETTINGS`."""

    name: str  # s4 | ms3 | avss
    title: str  # S4 | MS3 | AVSS: printed names and the default session name
    num_classes: int  # output channels: 1 (sigmoid logit, S4/MS3) or 71 (AVSS classes)
    align_bias: bool  # bias of TPAVI's align_channel in the published model (AVSS: none)
    frames_per_clip: int  # 5 for S4/MS3, 10 for AVSS (shorter clips are padded)
    script_folder: str  # avs_scripts/<script_folder>/ holds its config.py, train.sh, test.sh
    dataset_folder: str  # the released dataset's folder, e.g. avsbench_data/Single-source

    @property
    def semantic(self) -> bool:
        """True for class masks (argmax over classes), False for binary masks."""
        return self.num_classes > 1


SETTINGS: dict[str, Setting] = {
    "s4": Setting("s4", "S4", 1, True, 5, "avs_s4", "Single-source"),
    "ms3": Setting("ms3", "MS3", 1, True, 5, "avs_ms3", "Multi-sources"),
    "avss": Setting("avss", "AVSS", 71, False, 10, "avss", "AVSBench_semantic"),
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


METHODS = ("tpavi", "avsegformer")  # AVSBench's TPAVI model | AVSegFormer (docs/AVSEGFORMER.md)


@dataclass(frozen=True)
class ModelConfig:
    method: str = "tpavi"  # tpavi | avsegformer: which model (and losses) the run uses
    setting: str = "s4"  # s4 | ms3 | avss: decides the number of output channels
    backbone: str = "resnet50"  # resnet50 | pvt_v2_b5 | any timm model with 4 feature stages
    num_classes: int = 1  # 1 logit channel for S4/MS3, 71 classes for AVSS
    decoder_channels: int = 256  # model width: TPAVI projections/decoder, AVSegFormer embed (256)
    tpavi_stages: tuple[int, ...] = (0, 1, 2, 3)  # stages (0-based) that get a TPAVI block
    tpavi_va: bool = True  # audio-visual attention (the published training uses this only)
    tpavi_vv: bool = False  # video self-attention; with both on the two results are averaged
    tpavi_mode: str = "dot"  # dot | embedded | gaussian | concatenate
    tpavi_dense: bool = False  # True: the published N x N form of `dot` (slow; for checks)
    window_frames: int = 5  # frames per TPAVI window T' (5 in all published settings)
    align_bias: bool = True  # bias of TPAVI's align_channel (published AVSS: False)
    backbone_weights: str | None = None  # path to resnet50-19c8e357.pth / pvt_v2_b5.pth / timm
    vggish_weights: str | None = None  # path to vggish-10086976.pth (None: random, frozen)
    vggish_pca: str | None = None  # path to vggish_pca_params-970ea276.pth (PCA is off if None)
    # AVSegFormer only (published values; `build_avsegformer`), smaller for synthetic runs
    num_queries: int = 300  # learned queries of the query generator and decoder
    encoder_layers: int = 6  # deformable-attention encoder layers
    decoder_layers: int = 6  # query decoder layers
    generator_layers: int = 6  # audio query generator layers
    num_points: int = 4  # deformable-attention sampling points per head and level
    ffn_dim: int = 2048  # FFN width of the encoder and decoder layers
    generator_ffn_dim: int = 1024  # FFN width of the query generator layers
    mlp_dim: int = 2048  # hidden width of the head's query-to-mask MLP


@dataclass(frozen=True)
class DataConfig:
    root: str = "avsbench_data/Single-source"  # dataset root as released (see its readme)
    image_size: int = 224  # frames and masks are resized to image_size x image_size
    frames_per_clip: int = 5  # 5 for S4/MS3, 10 for AVSS (clips are padded to it)
    num_workers: int = 4  # DataLoader worker processes
    embedding_cache: str | None = None  # "memory" or a folder: frozen VGGish runs once per clip
    frame_cache: str | None = None  # folder: frames/masks decoded once (docs/FRAME_CACHE.md)
    # S4/MS3 only: "object" reads the AVSBench-object release (Single-source, Multi-sources);
    # "semantic" its v1s / v1m copies inside AVSBench-semantic (root = AVSBench_semantic)
    source: str = "object"
    # S4/MS3 masks in another encoding than 0/255 grey (0/1, colour, alpha): an error, not a
    # warning (docs/RELIABILITY.md)
    strict_masks: bool = False


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
    amp: str = "off"  # off | bf16 | fp16 (fp16 uses a grad scaler)
    channels_last: bool = False
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
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _setting_preset(setting: str, train: TrainConfig) -> Config:
    """Model and data of `setting` from `SETTINGS`, with the recipe `train`."""
    row = setting_info(setting)
    return Config(
        model=ModelConfig(setting=row.name, num_classes=row.num_classes, align_bias=row.align_bias),
        data=DataConfig(root=default_data_root(setting), frames_per_clip=row.frames_per_clip),
        train=dataclasses.replace(train, session_name=row.title),
    )


def s4() -> Config:
    """Published S4 recipe: 15 epochs, batch 4, val batch 1, no extra loss."""
    return _setting_preset("s4", TrainConfig(max_epoches=15, val_batch_size=1))


def ms3() -> Config:
    """Published MS3 recipe: 30 epochs, masked AV loss (KL, lambda 0.5) on stages 0-3."""
    loss = LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)
    return _setting_preset("ms3", TrainConfig(max_epoches=30, val_batch_size=1, loss=loss))


def avss() -> Config:
    """Published AVSS recipe: 60 epochs, 71 classes, 10-frame clips in 5-frame windows."""
    loss = LossConfig(masked_av_flag=True, lambda_1=0.5, kl_flag=True)
    train = TrainConfig(
        max_epoches=60, val_batch_size=4, start_eval_epoch=15, eval_interval=2, loss=loss
    )
    return _setting_preset("avss", train)


PRESETS = {"s4": s4, "ms3": ms3, "avss": avss}

# AVSegFormer's published recipe per setting (its configs, docs/AVSEGFORMER.md):
# (batch in clips, epochs, backbone frozen for the first N epochs, validation batch)
AVSEGFORMER_RECIPES = {"s4": (2, 30, 5, 2), "ms3": (2, 60, 10, 2), "avss": (4, 30, 0, 4)}


def avsegformer(setting: str) -> Config:
    """Published AVSegFormer recipe of `setting`: AdamW lr 2e-5, batch 2 / 2 / 4, epochs
    30 / 60 / 30, backbone frozen for the first 5 / 10 / 0 epochs, dice (AVSS: CE) + 0.1 x
    mix loss, validation every epoch. Data and test batch as the AVSBench preset."""
    batch, epochs, frozen, val_batch = AVSEGFORMER_RECIPES[setting_info(setting).name]
    cfg = PRESETS[setting]()
    train = dataclasses.replace(
        cfg.train,
        lr=2e-5,
        optimizer="adamw",
        train_batch_size=batch,
        max_epoches=epochs,
        freeze_backbone_epochs=frozen,
        val_batch_size=val_batch,
        start_eval_epoch=0,
        eval_interval=1,
        loss=LossConfig(),  # the AVM flags are TPAVI's; mix_loss_weight 0.1
    )
    model = dataclasses.replace(cfg.model, method="avsegformer")
    return dataclasses.replace(cfg, model=model, train=train)


def preset(setting: str, method: str = "tpavi") -> Config:
    """The published recipe of `method` (tpavi | avsegformer) for `setting` (s4 | ms3 | avss)."""
    setting_info(setting)  # an unknown name lists the valid ones
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    return avsegformer(setting) if method == "avsegformer" else PRESETS[setting]()


def synthetic(cfg: Config) -> Config:
    """A small, fast variant of `cfg` for the synthetic AVSBench on a CPU.

    ResNet-18 (random init: no weights to download), decoder width 64, 96x96 frames,
    learning rate 1e-3, VGGish embeddings cached; MS3 and AVSS then take the
    `SYNTHETIC_TPAVI` changes (64 px, 18 epochs, no masked AV loss). Data root and TPAVI
    placement are kept from `cfg`. AVSegFormer (`cfg.model.method`) also gets 2 layers of
    each kind, 16 queries, FFN/MLP width 256/128/256, AdamW at lr 5e-4, no frozen epochs
    (the backbone starts random: it must learn from the first step), 64 px frames and 10
    epochs.
    """
    small = {}
    if cfg.model.method == "avsegformer":
        small = {
            "model.num_queries": 16,
            "model.encoder_layers": 2,
            "model.decoder_layers": 2,
            "model.generator_layers": 2,
            "model.ffn_dim": 256,
            "model.generator_ffn_dim": 128,
            "model.mlp_dim": 256,
            "train.lr": 5e-4,
            "train.freeze_backbone_epochs": 0,
            # its output convs run at full resolution (128 -> 32 channels, 3x3): 64 px and
            # 10 epochs (measured: 12 min of training on the 2-core CPU at load 2-3, test
            # mIoU 0.911 own audio vs 0.396 swapped; README, synthetic results)
            "data.image_size": 64,
            "train.max_epoches": 10,
        }
    return override(
        cfg,
        {
            "model.backbone": "resnet18",
            "model.decoder_channels": 64,
            "data.image_size": 96,
            "data.num_workers": 2,
            "data.embedding_cache": "memory",  # the frozen VGGish runs once per clip
            "train.lr": 1e-3,
            "train.max_epoches": 16 if cfg.model.setting == "s4" else 8,
            "train.train_batch_size": 4,
            "train.start_eval_epoch": 0,
            "train.eval_interval": 1,
            **(SYNTHETIC_TPAVI.get(cfg.model.setting, {}) if not small else {}),
            **small,
        },
    )


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


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Inverse of `to_dict` (unknown keys are an error; missing keys take defaults; the
    `REMOVED_FIELDS` of older checkpoints are skipped)."""

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

    return build(Config, d)


_DATACLASS_FIELDS = {
    (Config, "model"): ModelConfig,
    (Config, "data"): DataConfig,
    (Config, "train"): TrainConfig,
    (Config, "eval"): EvalConfig,
    (TrainConfig, "loss"): LossConfig,
}

# Fields that configs stored in older checkpoints may hold and that nothing ever read.
REMOVED_FIELDS = {
    (EvalConfig, "save_pred_mask"),  # test.sh reads its --save_pred_mask flag
    (EvalConfig, "save_overlays"),
    (EvalConfig, "report"),  # test.sh reads its --report flag
}


def override(cfg: Config, changes: dict[str, Any]) -> Config:
    """Return `cfg` with dotted keys replaced, e.g. {"train.lr": 1e-3, "model.tpavi_stages": (0,)}.

    Unknown keys raise KeyError listing the valid ones.
    """
    d = to_dict(cfg)
    for dotted, value in changes.items():
        node = d
        parts = dotted.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise KeyError(f"unknown config section {dotted!r}")
            node = node[part]
        if parts[-1] not in node:
            raise KeyError(f"unknown config field {dotted!r}; valid: {sorted(node)}")
        node[parts[-1]] = value
    return from_dict(d)


def with_user_paths(
    cfg: Config,
    *,
    data_root: str,
    backbone_weights: str | None,
    vggish_weights: str | None,
    vggish_pca: str | None,
    log_dir: str,
    synthetic_data: bool = False,
) -> Config:
    """`cfg` with the paths of an `avs_scripts/<folder>/config.py`.

    synthetic_data=True gives the small CPU configuration of `synthetic()` and drops the
    pretrained files (the synthetic AVSBench needs none).
    """
    cfg = override(
        cfg,
        {
            "data.root": data_root,
            "model.backbone_weights": backbone_weights,
            "model.vggish_weights": vggish_weights,
            "model.vggish_pca": vggish_pca,
            "train.log_dir": log_dir,
        },
    )
    if synthetic_data:
        no_files = {"model.backbone_weights": None, "model.vggish_weights": None}
        cfg = override(synthetic(cfg), {**no_files, "model.vggish_pca": None})
    return cfg
