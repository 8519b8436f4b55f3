"""The normalised 2-D sine position of Mask2Former (`PositionEmbeddingSine(normalize=True)`).

The shared `avsbench.models.backbones.positions.sine_positional_encoding` is DETR's
un-normalised form (raw 1-based indices, AVSegFormer's). Mask2Former, COMBO and VCT divide
the 1-based index by the map's extent and scale to 2 pi first:

    y = r / (H + 1e-6) * 2 pi,  x = c / (W + 1e-6) * 2 pi     (r, c = 1..H, 1..W)

then channel 2k of the y half is sin(y / t^(2k / F)) and 2k + 1 is cos(y / t^(2k / F)),
F = num_feats, t = 10000; the x half likewise (y first). The operations run in the
published order, in float32, so the result is the published one to the last bit or two.
"""

from __future__ import annotations

import math

import torch

NORMALISE_EPS = 1e-6  # added to the extent before dividing (published)
SCALE = 2 * math.pi


def _encode(positions: torch.Tensor, dim_t: torch.Tensor) -> torch.Tensor:
    """[n] -> [n, F]: interleaved sin (even channels) and cos (odd channels)."""
    angles = positions[:, None] / dim_t  # [n, F]
    return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)


def normalized_sine_positions(
    height: int,
    width: int,
    num_feats: int = 128,
    temperature: float = 10000.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """[2 * num_feats, H, W]: the y encoding in the first num_feats channels, x in the rest."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)  # [F]
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = rows / (rows[-1:] + NORMALISE_EPS) * SCALE  # [H]
    cols = cols / (cols[-1:] + NORMALISE_EPS) * SCALE  # [W]
    pos_y = _encode(rows, dim_t).t()[:, :, None].expand(num_feats, height, width)
    pos_x = _encode(cols, dim_t).t()[:, None, :].expand(num_feats, height, width)
    return torch.cat((pos_y, pos_x), dim=0)  # [2F, H, W]
