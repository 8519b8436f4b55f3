"""VCT's architecture fields and its published recipes (Huang et al., CVPR 2025; configs
`configs/{s4,ms3,ss}_swinb_384/COMBO_SWINB.yaml` of spyflying/VCT_AVS; docs/VCT.md), plus
its small configuration for the synthetic AVSBench.

VCT's input size is part of its architecture: the query mixer is a linear layer over the
(S/4) x (S/4) pixels of the mask features, so a network works at the one size S it was
built for (`VCTArch.image_size`; published: 384, a 96 x 96 mixer). A config whose
`data.image_size` is not the architecture's is refused with one line (`check_image_size`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from avsbench import config as C
from avsbench.models.vct.swin import INPUT_SIZE, SwinSizes

BACKBONE = "swin_base_patch4_window12_384"  # the one published backbone (timm's name)
BACKBONE_ALIASES = ("swinb", "swin_b", BACKBONE)  # names --backbone accepts for it
# prototypes of the ProtoVCQ block: S4's 23 categories, AVSS's 71 classes; MS3 has none
PROTOTYPES = {"s4": 23, "ms3": 0, "avss": 71}


@dataclass(frozen=True)
class VCTArch:
    swin_embed_dim: int = 128  # Swin width of stage 1 (Swin-B: 128; stage i: x 2**i)
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)  # Swin blocks per stage
    swin_num_heads: tuple[int, ...] = (4, 8, 16, 32)  # Swin heads per stage
    swin_window: int = 12  # Swin window side (shift: half of it)
    drop_path_rate: float = 0.3  # Swin stochastic depth (training)
    hidden_dim: int = 256  # width of the pixel decoder, the queries and the decoder
    num_queries: int = 100  # object queries
    decoder_layers: int = 9  # masked-attention layers (published DEC_LAYERS 10 - 1)
    decoder_heads: int = 8  # heads of the decoder's attentions
    decoder_ffn_dim: int = 2048  # FFN width of the decoder layers
    encoder_layers: int = 6  # deformable-attention layers of the pixel decoder
    encoder_ffn_dim: int = 1024  # their FFN width
    audio_hidden_dim: int = 4096  # hidden width of the audio transformation (512 -> . -> .)
    mixer_dim: int = 256  # hidden width of the query mixer (96*96 -> . -> . -> queries)
    num_prototypes: int | None = None  # None: the setting's (S4 23, MS3 0 = none, AVSS 71)
    # input side S (frames and maskiges S x S); the query mixer takes the (S/4)^2 pixels of
    # the mask features. Published: 384. A multiple of 32 (the Swin's stride-32 stage).
    image_size: int = INPUT_SIZE

    @property
    def mixer_pixels(self) -> int:
        """Inputs of the query mixer: the (S/4) x (S/4) mask-feature pixels."""
        return (self.image_size // 4) ** 2

    @property
    def swin(self) -> SwinSizes:
        return SwinSizes(
            embed_dim=self.swin_embed_dim,
            depths=tuple(self.swin_depths),
            num_heads=tuple(self.swin_num_heads),
            window_size=self.swin_window,
            drop_path_rate=self.drop_path_rate,
        )

    def prototypes_for(self, setting: str) -> int:
        """Prototype count of `setting` (0: the MS3 block, without prototypes)."""
        if self.num_prototypes is not None:
            return self.num_prototypes
        return PROTOTYPES[C.setting_info(setting).name]


def mask_classes(num_classes: int) -> int:
    """Classes of the set predictions: S4/MS3 (1 logit channel) predict background and
    object (2); AVSS its 71 classes."""
    return 2 if num_classes == 1 else num_classes


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONE_ALIASES:
        raise ValueError(
            f"VCT is published with Swin-B only: backbone {backbone!r} is not one of "
            f"{list(BACKBONE_ALIASES)}"
        )


SIZE_MULTIPLE = 32  # the Swin's last stage has stride 32


def check_arch_size(arch_size: int) -> None:
    """ValueError unless the architecture's input side is a positive multiple of 32."""
    if arch_size <= 0 or arch_size % SIZE_MULTIPLE:
        raise ValueError(
            f"VCT's model.arch.image_size = {arch_size} is not a positive multiple of "
            f"{SIZE_MULTIPLE} (the Swin's stride-32 stage); published: {INPUT_SIZE}"
        )


def check_image_size(
    size: int, arch_size: int = INPUT_SIZE, where: str = "data.image_size"
) -> None:
    """ValueError unless `size` is the architecture's input side `arch_size` (the query
    mixer takes its (arch_size/4)^2 mask-feature pixels)."""
    check_arch_size(arch_size)
    if size != arch_size:
        side = arch_size // 4
        raise ValueError(
            f"this VCT works at {arch_size} x {arch_size} only ({where} = {size}): its query "
            f"mixer takes the {side} x {side} mask-feature pixels of that size; set {where} "
            f"to {arch_size}, or build another network with model.arch.image_size = {size}"
        )


EVAL_SIZE = 224  # VCT's predictions and test GT are compared at 224 x 224 (`gt_masks_224`)


def check(cfg: C.Config) -> None:
    """The contradictions of a VCT config: an input size other than its architecture's,
    another evaluation size or backbone."""
    arch = cfg.model.arch or VCTArch()
    check_image_size(cfg.data.image_size, arch.image_size)
    if cfg.data.eval_mask_size != EVAL_SIZE:
        raise ValueError(
            f"VCT predicts at {EVAL_SIZE} x {EVAL_SIZE} (its published evaluation size), "
            f"data.eval_mask_size = {cfg.data.eval_mask_size}: set data.eval_mask_size to "
            f"{EVAL_SIZE}"
        )
    check_backbone(cfg.model.backbone)


# setting -> (clips per iteration, iterations, validate every N iterations)
RECIPES = {"s4": (2, 45000, 1000), "ms3": (2, 40000, 500), "avss": (8, 45000, 2500)}


def preset(setting: str) -> C.Config:
    """Published VCT recipe of `setting`: AdamW lr 1e-4, weight decay 0.05, backbones at lr x
    0.1, poly schedule (power 0.9, no warm-up), gradient-norm clipping 0.01 over the whole
    model; 2 / 2 / 8 clips per iteration for 45k / 40k / 45k iterations, validation every
    1000 / 500 / 2500 iterations; 384 x 384 frames, val/test masks at 224 x 224."""
    batch, iters, every = RECIPES[C.setting_info(setting).name]
    train = C.TrainConfig(
        lr=1e-4,
        optimizer="adamw",
        weight_decay=0.05,
        train_batch_size=batch,
        max_iters=iters,
        eval_interval_iters=every,
        schedule="poly",
        poly_power=0.9,
        backbone_lr_mult=0.1,
        grad_clip_norm=0.01,
        start_eval_epoch=0,
        eval_interval=1,
    )
    model = C.ModelConfig(method="vct", backbone=BACKBONE, arch=VCTArch())
    cfg = C.setting_preset(setting, train, model)
    return C.override(
        cfg,
        {
            "data.image_size": INPUT_SIZE,
            "data.eval_mask_size": EVAL_SIZE,
            "data.augment": "mask2former",  # every setting (AVSS: frames squared first)
        },
    )


SYNTHETIC_SIZE = 64  # the small configuration's input side (mask features 16 x 16)


def synthetic(cfg: C.Config) -> C.Config:
    """Over `config.synthetic_base`: 64 x 64 inputs (a 16 x 16 query mixer), a tiny Swin
    (width 32, one block per stage, window 4: the 16, 8, 4 px maps partition, the 2 px one
    is padded to one window), width 64, 16 queries, 4 decoder layers (one per memory level),
    1 encoder layer, small MLPs; AdamW lr 1e-3 with the backbones at the same rate (they
    start random), poly schedule over 10 epochs, no clipping; val/test still scored at
    224 x 224 as published. Measured: docs/VCT.md, "Learning on the synthetic data"."""
    arch = dataclasses.replace(
        cfg.model.arch or VCTArch(),
        swin_embed_dim=32,
        swin_depths=(1, 1, 1, 1),
        swin_num_heads=(1, 2, 4, 8),
        swin_window=4,
        drop_path_rate=0.0,
        hidden_dim=64,
        num_queries=16,
        decoder_layers=4,
        decoder_ffn_dim=128,
        encoder_layers=1,
        encoder_ffn_dim=128,
        audio_hidden_dim=128,
        mixer_dim=64,
        image_size=SYNTHETIC_SIZE,
    )
    changes = {
        "model.arch": arch,
        "model.backbone": BACKBONE,
        "data.image_size": SYNTHETIC_SIZE,
        "data.eval_mask_size": EVAL_SIZE,
        "train.lr": 1e-3,
        "train.backbone_lr_mult": 1.0,
        "train.grad_clip_norm": None,
        "train.max_epoches": 10,
        "train.max_iters": None,  # epochs of the small data, not the published 40k+ iterations
        "train.eval_interval_iters": None,
        # the 15-minute learning run was measured without the recipe's augmentation (the
        # synthetic clips are already varied); `--augment mask2former` puts it back
        "data.augment": "none",
    }
    return C.override(cfg, changes)
