"""Decoder of the published AVSBench model: per-stage projections, fusion blocks, output head.

- `DilatedProjection` (the published `Classifier_Module`, from DeepLab-v2's ASPP head):
  sum of four parallel 3x3 convs with dilation = padding in (3, 6, 12, 18). Taps that only
  ever read zero padding for the map at hand are skipped (`used_taps`), an exact saving.
- `ResidualConvUnit` / `FeatureFusionBlock`: the refinement path of DPT/MiDaS
  (Ranftl et al., 2021), as used by AVSBench.
- `Decoder`: path4 -> path3 -> path2 -> path1 top-down fusion and the output head.

Note on the published residual unit: it applies `nn.ReLU(inplace=True)` to its input before
`return out + x`, so the input itself is rectified and the unit computes
RCU(x) = relu(x) + conv2(relu(conv1(relu(x)))). We reproduce that function (without
mutating the caller's tensor); `AVSModel` returns the rectified stage maps for the same
reason (docs/MODEL.md, "Decoder"; AVSBench `ResNet_AVSModel.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DILATIONS = (3, 6, 12, 18)


def add_into(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """out + other, written into `out` when that keeps the out-of-place result's dtype.

    For tensors no autograd node keeps (conv outputs, sums): saves one map per call. Under
    autocast the two may differ in dtype; then the promoted out-of-place sum is returned.
    """
    if torch.promote_types(out.dtype, other.dtype) == out.dtype:
        return out.add_(other)
    return out + other


def used_taps(dilation: int, size: int) -> slice:
    """The kernel rows (or columns) of a 3x3 conv with padding = dilation = d that can touch
    a map of `size` rows (columns): all three, or only the centre when d >= size.

    Output row i reads input rows i - d, i, i + d; for d >= size both off-centre rows lie
    outside 0..size-1 for every i, in the zero padding, so those taps add exact zeros.
    """
    return slice(1, 2) if dilation >= size else slice(0, 3)


class DilatedProjection(nn.Module):
    """Stage projection: y = sum_d conv3x3_d(x), dilation = padding = d in (3, 6, 12, 18).

    [B*T, in_channels, H, W] -> [B*T, out_channels, H, W]; conv weights ~ N(0, 0.01), with bias.
    Parameter names `conv2d_list.{0..3}` as published.

    skip_outside_taps (default True): each conv runs with only the kernel rows/columns that
    reach the map (`used_taps`): at a 224 input, the 14x14 map's d = 18 conv and the 7x7
    map's d = 12 and 18 convs become 1x1 convs. Exact: the skipped taps multiply zero
    padding, and their weights get the zero gradient they get in the full conv.
    False runs the published full 3x3 convs (benchmarks' baseline).
    """

    def __init__(
        self, in_channels: int, out_channels: int = 256, *, skip_outside_taps: bool = True
    ) -> None:
        super().__init__()
        self.skip_outside_taps = skip_outside_taps
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=True)
            for d in DILATIONS
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv(self.conv2d_list[0], x)
        for conv in self.conv2d_list[1:]:
            out = add_into(out, self._conv(conv, x))  # conv outputs are not kept for backward
        return out

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if not self.skip_outside_taps:
            return conv(x)
        d = conv.dilation[0]
        rows, cols = used_taps(d, x.shape[-2]), used_taps(d, x.shape[-1])
        if rows == cols == slice(0, 3):
            return conv(x)
        weight = conv.weight[:, :, rows, cols]  # [C_out, C_in, 1 or 3, 1 or 3]
        padding = (d if rows.stop - rows.start == 3 else 0, d if cols.stop - cols.start == 3 else 0)
        return F.conv2d(x, weight, conv.bias, padding=padding, dilation=d)


class ResidualConvUnit(nn.Module):
    """RCU(x) = relu(x) + conv2(relu(conv1(relu(x)))), 3x3 convs C -> C with bias.

    The leading relu(x) in the residual is the effect of the published in-place ReLU.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return add_into(self.conv2(F.relu(self.conv1(x))), x)  # conv2 keeps its input only


class FeatureFusionBlock(nn.Module):
    """out = RCU2(x + RCU1(skip)) (or RCU2(x) without skip), then x2 bilinear, align_corners=True.

    x, skip: [B*T, C, H, W] -> [B*T, C, 2H, 2W]. Names `resConfUnit{1,2}` as published.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = add_into(self.resConfUnit1(skip), x)  # a sum nothing keeps for backward
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Upsample(nn.Module):
    """Parameter-free x`scale` bilinear resize (align_corners=False), a slot of `output_conv`."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def head_widths(channels: int) -> tuple[int, int]:
    """Widths of the output head: (128, 32) at the published 256, else (C/2, C/8), >= 1."""
    return max(channels // 2, 1), max(channels // 8, 1)


class Decoder(nn.Module):
    """Top-down fusion of four C-channel maps and the output head.

    forward(maps: 4 x [B*T, C, H/4..H/32], frame_valid: [B*T] | None) -> logits [B*T, K, H, W]

        d4 = path4(m4); d3 = path3(d4, m3); d2 = path2(d3, m2); d1 = path1(d2, m1)
        logits = conv1x1(relu(conv3x3(up2(conv3x3(d1)))))

    Each path output and the logits are multiplied by `frame_valid` when given (AVSS).
    `fusions[s]` is the published `path{s+1}`; `output_conv.{0,2,4}` as published. The
    head widths are 128/32 for C = 256 and C/2, C/8 otherwise (`head_widths`).
    """

    def __init__(self, channels: int = 256, num_classes: int = 1) -> None:
        super().__init__()
        self.fusions = nn.ModuleList(FeatureFusionBlock(channels) for _ in range(4))
        mid, low = head_widths(channels)
        self.output_conv = nn.Sequential(
            nn.Conv2d(channels, mid, 3, padding=1),
            Upsample(2),
            nn.Conv2d(mid, low, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(low, num_classes, 1),
        )

    def forward(
        self, maps: Sequence[torch.Tensor], frame_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(maps) != 4:
            raise ValueError(f"the decoder takes 4 stage maps, got {len(maps)}")
        valid = None if frame_valid is None else frame_valid.reshape(-1, 1, 1, 1)
        d = None
        for s in (3, 2, 1, 0):
            d = self.fusions[s](maps[s]) if d is None else self.fusions[s](d, maps[s])
            if valid is not None:
                d = d * valid
        logits = self.output_conv(d)  # [B*T, K, H, W]
        return logits if valid is None else logits * valid
