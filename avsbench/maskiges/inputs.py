"""The maskige of a frame as a model input for `avsbench predict`, and the provenance mark.

`SamMaskigeInputs` is the `make_extra_inputs` of the COMBO and VCT specs
(`avsbench.models.spec.MethodSpec`): called with a video frame and the model's image size,
it gives {"maskige": float32 [3, S, S]} exactly as the datasets read a maskige file
(`dataset_base._read_extras`): S4/MS3 frames are first brought to the release's 224 x 224
(`media.inputs.preprocess_frame`'s cv2 resize), the masks are made on that frame, painted,
coloured with the ADE20K palette, resized NEAREST to S and normalised like a frame; AVSS
frames are segmented at their own size. The specs hold one without a generator:
`attach_sam` (predict's one call, from --sam_weights) gives the predictor one with a
generator, or refuses in one line naming the fix.

This module imports neither torch nor segment-anything at import time (the model specs
import it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.maskige import maskige_colours
from avsbench.errors import PredictError

OFFICIAL_FRAME_SIZE = 224  # S4/MS3 frames as the release stores them (media.inputs)


def prepared_frame(rgb: np.ndarray, semantic: bool) -> np.ndarray:
    """The frame the masks are made on: S4/MS3 at the release's 224 x 224 (cv2 bilinear, as
    predict's frames), AVSS as it is (the AVSBench-semantic frames are the raw frames)."""
    if semantic:
        return rgb
    import cv2

    return cv2.resize(rgb, (OFFICIAL_FRAME_SIZE, OFFICIAL_FRAME_SIZE))


def maskige_input(ids: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 ids [H, W] -> float32 [3, S, S]: the palette colours resized NEAREST to S and
    normalised like a frame, as a dataset reads the maskige file of these ids."""
    from PIL import Image

    from avsbench.data.transforms import resize_square

    image = resize_square(Image.fromarray(maskige_colours(ids)), image_size, is_mask=True)
    return MASKIGE.encode(np.asarray(image).transpose(2, 0, 1))


@dataclasses.dataclass(frozen=True)
class SamMaskigeInputs:
    """A frame -> {"maskige": float32 [3, S, S]}; `generator` None: the refusal, naming the
    fix (the spec's own instance, before `attach_sam`)."""

    generator: Any = None  # sam.MaskigeGenerator
    semantic: bool = False

    def __call__(self, rgb: np.ndarray, image_size: int) -> dict[str, np.ndarray]:
        if self.generator is None:
            raise PredictError(missing_maskiges_message("this model"))
        ids = self.generator.ids(prepared_frame(rgb, self.semantic))
        return {MASKIGE.key: maskige_input(ids, image_size)}


def missing_maskiges_message(what: str) -> str:
    return (
        f"{what} needs a maskige per frame (COMBO, VCT), made by segment-anything: pass "
        "--sam_weights sam_vit_b_01ec64.pth (Python: sam_weights=...; download it from "
        "https://github.com/facebookresearch/segment-anything#model-checkpoints), or make "
        "them with `avsbench maskige` (docs/MASKIGE.md)"
    )


def attach_sam(
    predictor: Any,
    sam_weights: str | os.PathLike[str] | None,
    *,
    sam_model: str | None = None,
    parameters: Any = None,
    log: Any = None,
) -> Any:
    """`predictor` with a maskige maker from `sam_weights` when its model reads maskiges
    (a `SamMaskigeInputs` without generator), and `info["maskiges"]`, the mark summary.json
    carries; unchanged otherwise. PredictError (one line) without weights or for bad ones."""
    maker = predictor.make_extra_inputs
    if not isinstance(maker, SamMaskigeInputs):
        if sam_weights is not None and log is not None:
            method = predictor.info.get("method", "")
            log(f"warning: --sam_weights ignored: this {method} model reads no maskiges")
        return predictor
    if maker.generator is not None:
        return predictor
    if sam_weights is None:
        what = f"{predictor.info.get('weights')}: a {predictor.info.get('method')} model"
        raise PredictError(missing_maskiges_message(what))
    from avsbench.maskiges.sam import MaskigeGenerator, SamWeightsError, load_sam

    try:
        sam = load_sam(sam_weights, sam_model, predictor.device)
    except SamWeightsError as err:
        raise PredictError(str(err)) from err
    generator = MaskigeGenerator(sam, parameters)
    if log is not None:
        log(f"maskiges: segment-anything {sam.model_type} from {sam.path}")
    info = {**predictor.info, "maskiges": generator.provenance()}
    return dataclasses.replace(
        predictor,
        info=info,
        make_extra_inputs=SamMaskigeInputs(generator, predictor.semantic),
    )
