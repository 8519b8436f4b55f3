"""Which parameters the Mask2Former family trains without weight decay.

Mask2Former's `build_optimizer` (followed by COMBO and VCT: `SOLVER.WEIGHT_DECAY_NORM` and
`WEIGHT_DECAY_EMBED` 0.0) gives weight decay 0 to the parameters of every normalisation
module, of every `nn.Embedding` (queries, level embeddings, prototypes, COMBO's audio
position) and to Swin's `relative_position_bias_table` / `absolute_pos_embed`; all other
parameters get `SOLVER.WEIGHT_DECAY` (0.05). Plain `nn.Parameter`s such as the pixel
decoder's `level_embed` or COMBO's `gamma_*` are decayed. `MethodSpec.no_weight_decay`.
"""

from __future__ import annotations

from torch import nn

from avsbench.models.contract import unwrap

NORM_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)  # fmt: skip
EXEMPT_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def no_weight_decay(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of `model` (DDP-wrapped or not) trained with weight decay 0."""
    exempt: dict[int, nn.Parameter] = {}
    for module in unwrap(model).modules():
        whole = isinstance(module, (*NORM_TYPES, nn.Embedding))
        for name, param in module.named_parameters(recurse=False):
            if whole or any(key in name for key in EXEMPT_NAMES):
                exempt[id(param)] = param
    return list(exempt.values())
