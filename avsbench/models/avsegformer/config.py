"""AVSegFormer's architecture fields and its published recipes (Gao et al., AAAI 2024; its
configs, docs/AVSEGFORMER.md), plus its small configuration for the synthetic AVSBench."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from avsbench import config as C


@dataclass(frozen=True)
class AVSegFormerArch:
    embed_dim: int = 256  # width of the transformer, the head and the audio projection
    num_queries: int = 300  # learned queries of the query generator and decoder
    encoder_layers: int = 6  # deformable-attention encoder layers
    decoder_layers: int = 6  # query decoder layers
    generator_layers: int = 6  # audio query generator layers
    num_points: int = 4  # deformable-attention sampling points per head and level
    ffn_dim: int = 2048  # FFN width of the encoder and decoder layers
    generator_ffn_dim: int = 1024  # FFN width of the query generator layers
    mlp_dim: int = 2048  # hidden width of the head's query-to-mask MLP

    # configs of older versions named the width after TPAVI's field (config.from_dict)
    LEGACY_NAMES: ClassVar[dict[str, str]] = {"decoder_channels": "embed_dim"}


# (batch in clips, epochs, backbone frozen for the first N epochs, validation batch)
RECIPES = {"s4": (2, 30, 5, 2), "ms3": (2, 60, 10, 2), "avss": (4, 30, 0, 4)}


def preset(setting: str) -> C.Config:
    """Published AVSegFormer recipe of `setting`: AdamW lr 2e-5, batch 2 / 2 / 4, epochs
    30 / 60 / 30, backbone frozen for the first 5 / 10 / 0 epochs, dice (AVSS: CE) + 0.1 x
    mix loss, validation every epoch; test batch 4 as AVSBench's."""
    batch, epochs, frozen, val_batch = RECIPES[C.setting_info(setting).name]
    train = C.TrainConfig(
        lr=2e-5,
        optimizer="adamw",
        train_batch_size=batch,
        max_epoches=epochs,
        freeze_backbone_epochs=frozen,
        val_batch_size=val_batch,
        start_eval_epoch=0,
        eval_interval=1,
        loss=C.LossConfig(),  # mix_loss_weight 0.1
    )
    model = C.ModelConfig(method="avsegformer", arch=AVSegFormerArch())
    return C.setting_preset(setting, train, model)


def synthetic(cfg: C.Config) -> C.Config:
    """Over `config.synthetic_base`: 2 layers of each kind, 16 queries, width 64, FFN/MLP
    width 256/128/256, AdamW at lr 5e-4, no frozen epochs (the backbone starts random: it
    must learn from the first step), 64 px frames and 10 epochs. Its output convs run at
    full resolution (128 -> 32 channels, 3x3), hence 64 px (measured: 12 min of training on
    the 2-core CPU at load 2-3, test mIoU 0.911 own audio vs 0.396 swapped; README)."""
    arch = dataclasses.replace(
        cfg.model.arch or AVSegFormerArch(),
        embed_dim=64,
        num_queries=16,
        encoder_layers=2,
        decoder_layers=2,
        generator_layers=2,
        ffn_dim=256,
        generator_ffn_dim=128,
        mlp_dim=256,
    )
    changes = {
        "model.arch": arch,
        "train.lr": 5e-4,
        "train.freeze_backbone_epochs": 0,
        "data.image_size": 64,
        "train.max_epoches": 10,
    }
    return C.override(cfg, changes)
