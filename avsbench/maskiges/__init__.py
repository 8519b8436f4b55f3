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
