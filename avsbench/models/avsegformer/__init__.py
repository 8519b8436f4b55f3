"""AVSegFormer (Gao et al., AAAI 2024): the second method, exact to its published code.

Parts (one module each): `deform_attn` (multi-scale deformable attention, plain PyTorch),
`transformer` (positions, deformable encoder, query decoder), `query_generator`, `mixer`
(cross-modal mixer), `head` (AVSegHead), `model` (AVSegFormer + `build_avsegformer`),
`official_names` (released checkpoints, both ways). See docs/AVSEGFORMER.md.
"""

from avsbench.models.avsegformer.model import AVSegFormer, build_avsegformer

__all__ = ["AVSegFormer", "build_avsegformer"]
