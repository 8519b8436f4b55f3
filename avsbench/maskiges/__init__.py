"""Maskiges for any video or dataset, made with segment-anything (docs/MASKIGE.md).

COMBO and VCT read a "maskige" per frame (`avsbench.data.extra_inputs.MASKIGE`): the
class-agnostic masks of the frame painted into one ADE20K-palette image
(`avsbench.data.maskige`). The published ones come from Semantic-SAM, with no script for new
videos; this package makes them with segment-anything's automatic mask generator from the
weights the user brings, and marks them as such wherever results are reported:

- `sam`: reading SAM weights safely, the architecture read off their shapes, the generator
  and the painting of one frame (`MaskigeGenerator`);
- `inputs`: the model input of a frame for `avsbench predict` (`SamMaskigeInputs`, the
  `make_extra_inputs` of the COMBO and VCT specs) and the provenance mark;
- `dataset`: every missing maskige of an AVSBench dataset root, resumably;
- `video`: the maskiges of a video's sampled frames into an output folder.
"""

from __future__ import annotations

import argparse


def add_sam_arguments(
    parser: argparse.ArgumentParser, *, required: bool, weights_help: str
) -> None:
    """--sam_weights and --sam_model, the same for every command that makes maskiges."""
    from avsbench.maskiges.sam import SAM_MODELS

    parser.add_argument("--sam_weights", required=required, default=None, help=weights_help)
    parser.add_argument(
        "--sam_model",
        choices=sorted(SAM_MODELS),
        default=None,
        help="optional check: the model type of --sam_weights (read off the file)",
    )
