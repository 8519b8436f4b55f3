"""Positional encodings shared by the transformer methods.

`sine_positional_encoding` is DETR's 2-D sine encoding as AVSegFormer configures it (mmdet
`SinePositionalEncoding`, `normalize=False`: raw 1-based row / column indices).
"""

from __future__ import annotations

import torch


def sine_positional_encoding(
    height: int,
    width: int,
    num_feats: int,
    temperature: float = 10000.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """[2 * num_feats, H, W]: the y encoding in the first num_feats channels, x in the rest.

    For position p (1-based row or column) channel 2k is sin(p / t^(2k / F)) and 2k + 1 is
    cos(p / t^(2k / F)), F = num_feats, t = temperature.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)  # [F]

    def encode(positions: torch.Tensor) -> torch.Tensor:  # [n] -> [n, F]
        angles = positions[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    ys = encode(torch.arange(1, height + 1, dtype=torch.float32, device=device))  # [H, F]
    xs = encode(torch.arange(1, width + 1, dtype=torch.float32, device=device))  # [W, F]
    pos_y = ys.t()[:, :, None].expand(num_feats, height, width)
    pos_x = xs.t()[:, None, :].expand(num_feats, height, width)
    return torch.cat((pos_y, pos_x), dim=0)  # [2F, H, W]
