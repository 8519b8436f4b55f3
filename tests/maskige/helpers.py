"""Helpers of the maskige tests: a tiny random-weight segment-anything model built here from
segment-anything's own modeling classes (not avsbench's builder), its generator, and the
maskige painting written as a plain loop from the published rule (docs/MASKIGE.md: masks
sorted by area ascending, id k+1 for mask k where no smaller mask is, 0 uncovered)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

# ADE20K palette id 0 and 1 (the spec: id 0 = (120,120,120), 1 = (180,120,120))
ADE20K_ID0, ADE20K_ID1 = (120, 120, 120), (180, 120, 120)

# generator options that keep every mask of the random model (fast: 4 points)
PARAMETERS = {
    "points_per_side": 2,
    "pred_iou_thresh": -100.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}
FLAGS = [x for k, v in PARAMETERS.items() for x in (f"--{k}", str(v))]


def tiny_sam(seed: int = 0) -> Sam:
    """A 64-px, 2-block ViT SAM (embed dim 32) with random weights."""
    torch.manual_seed(seed)
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
            out_chans=32, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=8
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=32, num_heads=8),
            transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=16,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()  # fmt: skip


def save_tiny_sam(path: Path, seed: int = 0) -> Path:
    torch.save(tiny_sam(seed).state_dict(), path)
    return path


def reference_generator(weights: Path) -> SamAutomaticMaskGenerator:
    """segment-anything's own generator on the weights of `save_tiny_sam`."""
    model = tiny_sam(seed=123)
    model.load_state_dict(torch.load(weights, weights_only=True))
    return SamAutomaticMaskGenerator(model, **PARAMETERS)


def loop_painting(records: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """The spec's painting, mask by mask: smallest area first, each on the pixels still 0."""
    ids = np.zeros(shape, dtype=np.uint8)
    by_area = sorted(range(len(records)), key=lambda k: int(records[k]["segmentation"].sum()))
    for rank, k in enumerate(by_area):
        seg = records[k]["segmentation"]
        ids[seg & (ids == 0)] = rank + 1
    return ids


def reference_ids(generator: SamAutomaticMaskGenerator, rgb: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        records = generator.generate(rgb)
    return loop_painting(records, rgb.shape[:2])
