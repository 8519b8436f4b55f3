"""State dicts that take little disk, for the tests that write checkpoint files.

A published layout written with `torch.save` is 290-600 MB (ResNet-50, PVT-v2-b5, VGGish);
the tests that read such files only need their names and shapes, or distinct values per
tensor, not one independent number per element:

- `compact_state_dict(layout)`: distinct random values per tensor (values like
  `tests.golden_files.random_state_dict`: N(0, 0.05), BatchNorm running variances in
  [0.5, 1.5), int64 counters), each tensor a strided window of one of two shared random
  buffers, so that `torch.save` writes the buffers once (about 2 MB) whatever the layout.
  Two tensors of one shape start at different offsets, so their values differ.
- `compact_like(state)`: the same for the names, shapes and dtypes of a state dict.
- `layout_only_state_dict(layout)`: one zero broadcast to every shape (a few bytes), where
  only the names and shapes are read.

The loaders see ordinary tensors (torch.load restores the views); copying them into a
model gives contiguous parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

BLOCK = 1 << 18  # the longest contiguous run of a tensor, in elements (1 MiB of float32)

Layout = Iterable[tuple[str, tuple[int, ...]]]


def _window_strides(shape: tuple[int, ...]) -> list[int]:
    """Strides of a window of at most BLOCK contiguous elements: trailing dimensions are
    contiguous while they fit; each leading one shifts the block by one element."""
    strides = [1] * len(shape)
    block, contiguous = 1, True
    for dim in reversed(range(len(shape))):
        contiguous = contiguous and block * shape[dim] <= BLOCK
        if contiguous:
            strides[dim] = block
            block *= shape[dim]
    return strides


def _span(shape: tuple[int, ...], strides: list[int]) -> int:
    """Elements of the buffer a window of `shape` and `strides` reaches past its offset."""
    return 1 + sum((size - 1) * stride for size, stride in zip(shape, strides) if size > 0)


def compact_state_dict(
    layout: Layout, seed: int = 0, dtypes: dict[str, torch.dtype] | None = None
) -> dict[str, torch.Tensor]:
    """Every (name, shape) of `layout` with distinct random values stored in two shared
    buffers (see the module docstring). `dtypes` names the integer tensors' dtypes
    (default: `num_batches_tracked` is int64, everything else float32)."""
    rows = [(name, tuple(shape)) for name, shape in layout]
    dtypes = dtypes or {}
    windows = {name: _window_strides(shape) for name, shape in rows}
    length = len(rows) + max((_span(s, windows[n]) for n, s in rows), default=1)
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(length, generator=gen) * 0.05
    positive = torch.rand(length, generator=gen) + 0.5
    sd = {}
    for i, (name, shape) in enumerate(rows):
        dtype = dtypes.get(name, torch.int64 if name.endswith("num_batches_tracked") else None)
        if dtype is not None and not dtype.is_floating_point:
            sd[name] = torch.full(shape, 1000 + i, dtype=dtype)
            continue
        buffer = positive if name.endswith("running_var") else normal
        sd[name] = buffer.as_strided(shape, windows[name], i)
    return sd


def compact_like(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """`compact_state_dict` with the names, shapes and dtypes of `state`."""
    layout = [(name, tuple(t.shape)) for name, t in state.items()]
    return compact_state_dict(layout, seed, {name: t.dtype for name, t in state.items()})


def layout_only_state_dict(layout: Layout) -> dict[str, torch.Tensor]:
    """Every (name, shape) of `layout` as a broadcast zero: the file's names and shapes in a
    few bytes, for the tests that only read the architecture or the key report."""
    zero = torch.zeros(1)
    return {name: zero.expand(shape) if shape else zero[0] for name, shape in layout}
