"""VCT's Swin backbone: timm's Swin Transformer cut into four stages, with Mask2Former's
four output LayerNorms (spec: VCT and COMBO, "The network", item 3).

The published VCT uses Mask2Former's `D2SwinTransformer` (the mmseg-style Swin): patch 4,
width 128, depths 2,2,18,2, heads 4,8,16,32, window 12, a shifted window in every odd block
of every stage, no absolute position embedding, and `norm0..3` on the four stage outputs
(channels 128, 256, 512, 1024 at strides 4..32; maps 96, 48, 24, 12 at 384 x 384). timm's
`SwinTransformer` is the same network when built with `always_partition=True` (else timm
drops the shift of a stage whose map is not larger than the window: stage 4 at 384) and a
fixed input size (its attention masks are built once, for 384).

Names, both ways (`d2_to_timm_name`, `timm_to_d2_name`, keys relative to the backbone):

    D2SwinTransformer (official)                  SwinBackbone (this module)
    patch_embed.*                                 body.patch_embed.*
    layers.{i}.blocks.{j}.*                       body.layers.{i}.blocks.{j}.*
    layers.{i}.downsample.*  (end of stage i)     body.layers.{i+1}.downsample.* (start of i+1)
    layers.{i}.blocks.{j}.attn.relative_position_index   -- (a constant: rebuilt, not read)
    norm{i}.*                                     norm{i}.*
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from timm.models.swin_transformer import SwinTransformer, get_relative_position_index
from torch import nn

INPUT_SIZE = 384  # the only input size of the published VCT (its query mixer has 96*96 inputs)


@dataclass(frozen=True)
class SwinSizes:
    """The sizes of a Swin backbone (defaults: Swin-B, window 12, as VCT's config)."""

    embed_dim: int = 128  # width of stage 1 (stage i: embed_dim * 2**i)
    depths: tuple[int, ...] = (2, 2, 18, 2)  # blocks per stage
    num_heads: tuple[int, ...] = (4, 8, 16, 32)  # attention heads per stage
    window_size: int = 12  # window side (the shift is half of it)
    drop_path_rate: float = 0.3  # stochastic depth at the last block (linear from 0)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


class SwinBackbone(nn.Module):
    """Swin Transformer -> four feature maps.

    forward(x [N, 3, 384, 384]) -> [res2 [N, C, 96, 96], res3 [N, 2C, 48, 48],
    res4 [N, 4C, 24, 24], res5 [N, 8C, 12, 12]], each stage output through its `norm{i}`.
    """

    def __init__(self, sizes: SwinSizes = SwinSizes(), img_size: int = INPUT_SIZE) -> None:
        super().__init__()
        self.sizes = sizes
        self.img_size = img_size
        self.body = SwinTransformer(
            img_size=img_size,
            patch_size=4,
            embed_dim=sizes.embed_dim,
            depths=sizes.depths,
            num_heads=sizes.num_heads,
            window_size=sizes.window_size,
            always_partition=True,  # keep the shift where the map is one window (stage 4)
            strict_img_size=True,  # the shift masks are built once, for img_size
            drop_path_rate=sizes.drop_path_rate,
            num_classes=0,
            global_pool="",
        )
        self.body.norm = nn.Identity()  # the classifier's final norm: not part of D2's Swin
        for i, channels in enumerate(sizes.channels):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    @property
    def channels(self) -> tuple[int, ...]:
        return self.sizes.channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"the VCT Swin backbone takes [N, 3, {self.img_size}, {self.img_size}] images "
                f"(the published VCT works at {self.img_size} x {self.img_size} only), got "
                f"{tuple(x.shape)}"
            )
        x = self.body.patch_embed(x)  # [N, H/4, W/4, C] (channels last)
        features = []
        for i, stage in enumerate(self.body.layers):
            x = stage(x)  # [N, h, w, C_i]
            norm = getattr(self, f"norm{i}")
            features.append(norm(x).permute(0, 3, 1, 2).contiguous())  # [N, C_i, h, w]
        return features

    def relative_position_index(self) -> torch.Tensor:
        """The constant buffer D2's Swin stores in every block: [window^2, window^2] int64."""
        w = self.sizes.window_size
        return get_relative_position_index(w, w).to(torch.int64)


# -- names, both ways -------------------------------------------------------------------------
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_INDEX = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$")


def is_relative_position_index(d2_name: str) -> bool:
    """True for D2's constant `relative_position_index` buffers (no module tensor holds them)."""
    return bool(_INDEX.match(d2_name))


def d2_to_timm_name(d2_name: str) -> str | None:
    """A D2SwinTransformer key -> the SwinBackbone key (None: an index buffer or unknown)."""
    if is_relative_position_index(d2_name):
        return None
    m = _DOWNSAMPLE.match(d2_name)
    if m:
        return f"body.layers.{int(m[1]) + 1}.downsample.{m[2]}"
    if d2_name.startswith(("patch_embed.", "layers.")):
        return "body." + d2_name
    if re.match(r"^norm\d+\.(weight|bias)$", d2_name):
        return d2_name
    return None


def timm_to_d2_name(name: str) -> str:
    """A SwinBackbone key -> its D2SwinTransformer key (KeyError for a name D2 lacks)."""
    if name.startswith("body."):
        inner = name[len("body.") :]
        m = _DOWNSAMPLE.match(inner)
        if m:
            if int(m[1]) == 0:
                raise KeyError(f"D2's Swin has no downsample before stage 1: {name!r}")
            return f"layers.{int(m[1]) - 1}.downsample.{m[2]}"
        if inner.startswith(("patch_embed.", "layers.")):
            return inner
    elif re.match(r"^norm\d+\.(weight|bias)$", name):
        return name
    raise KeyError(f"no D2SwinTransformer name for {name!r}")


def _d2_order(d2_name: str) -> tuple[int, int, int, int]:
    """Sort key giving D2's state-dict order: patch_embed, stage by stage (blocks, then the
    downsample: reduction before norm), the output norms."""
    if d2_name.startswith("patch_embed."):
        return (0, 0, 0, 0)
    m = re.match(r"^layers\.(\d+)\.(?:blocks\.(\d+)|downsample\.(\w+))\.", d2_name)
    if m:
        if m[2] is not None:
            return (1, int(m[1]), int(m[2]), 0)
        return (1, int(m[1]), 10**6, 0 if m[3] == "reduction" else 1)
    m = re.match(r"^norm(\d+)\.", d2_name)
    return (2, int(m[1]) if m else 0, 0, 0)


def to_d2_state(backbone: SwinBackbone) -> dict[str, torch.Tensor]:
    """The backbone's tensors under D2's names and in D2's order, with the constant
    `relative_position_index` of every block (after its bias table, as D2 stores it)."""
    index = backbone.relative_position_index()
    items: list[tuple[str, torch.Tensor]] = []
    for name, value in backbone.state_dict().items():
        d2 = timm_to_d2_name(name)
        items.append((d2, value))
        if d2.endswith("attn.relative_position_bias_table"):
            items.append((d2[: -len("bias_table")] + "index", index))
    items.sort(key=lambda kv: _d2_order(kv[0]))  # stable: keeps the order inside a block
    return dict(items)


def from_d2_state(
    backbone: SwinBackbone, state: Mapping[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], list[str], int]:
    """D2-named tensors (relative to the backbone) -> ({SwinBackbone key: tensor}, unknown D2
    keys, how many `relative_position_index` buffers were read). Those buffers are constants
    that timm rebuilds (as its own checkpoint filter skips them): their values are not read,
    only their shape is checked (another window size would be another network: ValueError
    naming `where`)."""
    side = backbone.sizes.window_size**2
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    constants = 0
    for key, value in state.items():
        if is_relative_position_index(key):
            if tuple(value.shape) != (side, side):
                raise ValueError(
                    f"{where}{key} has shape {tuple(value.shape)}: the relative position index "
                    f"of a {backbone.sizes.window_size} x {backbone.sizes.window_size} window "
                    f"is ({side}, {side})"
                )
            constants += 1
            continue
        name = d2_to_timm_name(key)
        if name is None:
            unknown.append(key)
        else:
            mapped[name] = value
    return mapped, unknown, constants


def d2_names(names: Iterable[str]) -> list[str]:
    """The D2 names of SwinBackbone keys (for messages)."""
    return [timm_to_d2_name(n) for n in names]
