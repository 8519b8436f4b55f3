"""segment-anything weights, read safely, and the automatic mask generator painted as a maskige.

- `load_sam(path, model_type)`: the weights through `state_dicts.safe_torch_load`
  (weights_only: no code from the file ever runs), the architecture read off their shapes
  (`architecture_of`: vit_b, vit_l, vit_h, or any other size built from segment-anything's
  modeling classes, e.g. a tiny test model), built and loaded strictly. A wrong file is one
  `SamWeightsError` line naming it and where the weights come from.
- `MaskigeGenerator`: `SamAutomaticMaskGenerator` with `GeneratorParameters`; `ids(rgb)`
  gives the maskige ids of a frame (`avsbench.data.maskige.paint_maskige`: masks by area,
  smallest first, id k + 1 where no smaller mask is, 0 uncovered).

segment-anything (PyPI segment-anything==1.0) is imported only when a model is built.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsbench.data.maskige import MAX_MASKS, paint_maskige
from avsbench.errors import CheckpointError, InputError

SAM_DOWNLOADS = (
    "download sam_vit_b_01ec64.pth (or vit_l / vit_h) from "
    "https://github.com/facebookresearch/segment-anything#model-checkpoints"
)
# model type -> (embed_dim, depth, num_heads, global attention blocks) of segment-anything's
# build_sam.py; all three: 1024 px input, patch 16, window 14, prompt dim 256
SAM_MODELS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
DECODER_HEADS = 8  # the mask decoder's attention heads (not visible in the weights' shapes)
PIXEL_MEAN = (123.675, 116.28, 103.53)  # segment-anything's Sam defaults
PIXEL_STD = (58.395, 57.12, 57.375)


class SamWeightsError(InputError):
    """A --sam_weights file that is not usable segment-anything weights (one line)."""


@dataclass(frozen=True)
class SamArchitecture:
    """The sizes of a segment-anything model, as read off its weights."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int
    patch_size: int
    window_size: int
    mlp_ratio: float
    out_chans: int  # the prompt embedding dim (256)
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int

    @property
    def model_type(self) -> str:
        """vit_b / vit_l / vit_h when it is one of segment-anything's models, else "custom"."""
        for name, (dim, depth, heads, indexes) in SAM_MODELS.items():
            if (self.embed_dim, self.depth, self.num_heads, self.global_attn_indexes) == (
                dim,
                depth,
                heads,
                indexes,
            ) and (self.img_size, self.patch_size, self.window_size) == (1024, 16, 14):
                return name
        return "custom"

    def describe(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **asdict(self)}


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise KeyError(key)
    return tuple(value.shape)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m[1]) for key in state if (m := pattern.match(key))}
    if found != set(range(len(found))):
        raise KeyError(f"{prefix}<n> (blocks {sorted(found)})")
    return len(found)


def architecture_of(state: dict[str, torch.Tensor]) -> SamArchitecture:
    """The architecture of segment-anything weights (names of its `Sam` state dict); KeyError
    naming a missing key, ValueError for shapes no such model has."""
    embed_dim, _, patch, _ = _shape(state, "image_encoder.patch_embed.proj.weight")
    _, grid, _, _ = _shape(state, "image_encoder.pos_embed")
    depth = _count(state, "image_encoder.blocks.")
    global_blocks, windows, head_dims = [], set(), set()
    for i in range(depth):
        length, head_dim = _shape(state, f"image_encoder.blocks.{i}.attn.rel_pos_h")
        head_dims.add(head_dim)
        size = (length + 1) // 2
        if size == grid:
            global_blocks.append(i)
        else:
            windows.add(size)
    if len(head_dims) != 1 or len(windows) > 1 or embed_dim % next(iter(head_dims)):
        raise ValueError(f"attention sizes no segment-anything model has ({head_dims}, {windows})")
    mlp_dim, _ = _shape(state, "image_encoder.blocks.0.mlp.lin1.weight")
    out_chans = _shape(state, "image_encoder.neck.0.weight")[0]
    mask_in_chans = _shape(state, "prompt_encoder.mask_downscaling.3.weight")[0]
    decoder_mlp_dim = _shape(state, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0]
    iou_hidden = _shape(state, "mask_decoder.iou_prediction_head.layers.0.weight")[0]
    return SamArchitecture(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // next(iter(head_dims)),
        global_attn_indexes=tuple(global_blocks),
        img_size=grid * patch,
        patch_size=patch,
        window_size=windows.pop() if windows else 0,
        mlp_ratio=mlp_dim / embed_dim,
        out_chans=out_chans,
        mask_in_chans=mask_in_chans,
        decoder_depth=_count(state, "mask_decoder.transformer.layers."),
        decoder_mlp_dim=decoder_mlp_dim,
        num_multimask_outputs=_shape(state, "mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(state, "mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=iou_hidden,
    )


def build_sam(arch: SamArchitecture) -> torch.nn.Module:
    """segment-anything's `Sam` of `arch` (random weights), from its modeling classes."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = arch.img_size // arch.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch.img_size,
            patch_size=arch.patch_size,
            embed_dim=arch.embed_dim,
            depth=arch.depth,
            num_heads=arch.num_heads,
            mlp_ratio=arch.mlp_ratio,
            out_chans=arch.out_chans,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=arch.window_size,
            global_attn_indexes=arch.global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.out_chans,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.img_size, arch.img_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.out_chans,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=DECODER_HEADS,
            ),
            transformer_dim=arch.out_chans,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedSam:
    """A segment-anything model on its device with what the provenance reports of it."""

    model: torch.nn.Module
    arch: SamArchitecture
    path: Path
    sha256: str

    @property
    def model_type(self) -> str:
        return self.arch.model_type


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor] | None:
    """The SAM state dict in a loaded file: the dict itself, or under "model"/"state_dict"."""
    if isinstance(obj, dict):
        for candidate in (obj, obj.get("model"), obj.get("state_dict")):
            if isinstance(candidate, dict) and "image_encoder.patch_embed.proj.weight" in candidate:
                return candidate
    return None


def load_sam(
    path: str | os.PathLike[str],
    model_type: str | None = None,
    device: str | torch.device = "cpu",
) -> LoadedSam:
    """The segment-anything model of the weights at `path` (`model_type`, if given, is a
    check: vit_b, vit_l or vit_h); SamWeightsError (one line naming the file) otherwise."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if model_type is not None and model_type not in SAM_MODELS:
        raise SamWeightsError(f"--sam_model {model_type}: choose one of {sorted(SAM_MODELS)}")
    try:
        from avsbench.state_dicts import safe_torch_load

        obj = safe_torch_load(path, "--sam_weights file", fix=SAM_DOWNLOADS)
    except CheckpointError as err:  # missing, a folder, text, pickled code, truncated
        raise SamWeightsError(str(err)) from err
    state = _state_dict_of(obj)
    if state is None:
        raise SamWeightsError(
            f"{path}: not segment-anything weights (no image_encoder.patch_embed.proj.weight "
            f"among its keys); {SAM_DOWNLOADS}"
        )
    try:
        arch = architecture_of(state)
    except (KeyError, ValueError) as err:
        raise SamWeightsError(
            f"{path}: incomplete segment-anything weights ({err.args[0]}); {SAM_DOWNLOADS}"
        ) from err
    if model_type is not None and arch.model_type != model_type:
        raise SamWeightsError(
            f"{path}: --sam_model {model_type} contradicts the file, which holds a "
            f"{arch.model_type} model (embed dim {arch.embed_dim}, {arch.depth} blocks); leave "
            "--sam_model out (it is read off the file)"
        )
    model = build_sam(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise SamWeightsError(
            f"{path}: the weights do not fit a segment-anything {arch.model_type} model "
            f"({first[0].strip()[:160]}); {SAM_DOWNLOADS}"
        ) from err
    return LoadedSam(model.to(device).eval(), arch, path, file_sha256(path))


@dataclass(frozen=True)
class GeneratorParameters:
    """`SamAutomaticMaskGenerator` options (its defaults; docs/MASKIGE.md)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class MaskigeGenerator:
    """A frame -> its maskige ids, with segment-anything's automatic mask generator."""

    def __init__(self, sam: LoadedSam, parameters: GeneratorParameters | None = None) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.sam = sam
        self.parameters = parameters or GeneratorParameters()
        self.generator = SamAutomaticMaskGenerator(sam.model, **asdict(self.parameters))

    @torch.inference_mode()
    def masks(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> bool masks [N, H, W] in the generator's order."""
        records = self.generator.generate(np.ascontiguousarray(rgb, dtype=np.uint8))
        if not records:
            return np.zeros((0, *rgb.shape[:2]), dtype=bool)
        return np.stack([r["segmentation"] for r in records]).astype(bool)

    def ids(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> uint8 maskige ids [H, W] (`paint_maskige`); past 255 masks
        the largest 255 are kept (a uint8 id each; the smallest would be lost anyway under
        no rule, so this keeps the most covered area)."""
        return paint_maskige(keep_largest(self.masks(rgb)))

    def provenance(self) -> dict[str, Any]:
        """What made the maskiges: the mark every report carries (docs/MASKIGE.md)."""
        import segment_anything

        version = getattr(segment_anything, "__version__", "1.0")
        sam = self.sam
        return {
            "source": f"segment-anything {sam.model_type} "
            "(not the published Semantic-SAM maskiges)",
            "generator": f"segment-anything {version} SamAutomaticMaskGenerator",
            "sam_model": sam.model_type,
            "sam_weights": sam.path.name,
            "sam_weights_sha256": sam.sha256,
            "parameters": self.parameters.describe(),
            "painting": "masks by area, smallest first; id k+1 where no smaller mask is, 0 "
            "uncovered; ADE20K palette PNG",
        }


def keep_largest(masks: np.ndarray, limit: int = MAX_MASKS) -> np.ndarray:
    """bool [N, H, W] -> the `limit` largest masks in their input order (all if N <= limit)."""
    if len(masks) <= limit:
        return masks
    areas = masks.sum(axis=(1, 2))
    kept = np.sort(np.argsort(-areas, kind="stable")[:limit])
    return masks[kept]
