"""State-dict files: the one safe `torch.load`, the one reporter of keys, the load report.

Every file of weights the project reads (its checkpoints, official AVSBench state dicts,
pretrained backbones, VGGish) goes through `safe_torch_load` (weights_only: no code from a
file ever runs) and is compared with the model through `KeyReport`. Dispatch on the kind
of file is `avsbench.checkpoints.load`; this module imports nothing of the models, so that
they can use it.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avsbench.errors import CheckpointError, CheckpointNotFound  # noqa: F401 (defined in errors.py)


# ---------------------------------------------------------------------------------------
# The one torch.load
# ---------------------------------------------------------------------------------------
def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint", *, fix: str = "") -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)` with one-line errors.

    Only tensors, numpy arrays (VGGish PCA files) and plain containers can come out of the
    file: a pickle that would run code is refused. `.safetensors` files are read by
    safetensors. Errors name `what` and the file and say what it is instead: missing
    (CheckpointNotFound), a folder, empty, a text file (a Git LFS pointer, an HTML page),
    Python objects other than tensors, truncated or not a torch.save file (CheckpointError).
    `fix` is appended to every message (e.g. where such files come from).
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    tail = f". {fix}" if fix else ""
    if not path.exists():
        raise CheckpointNotFound(f"{what} not found: {path}{tail}")

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot read {what} {path}: {problem}{tail}")

    if path.is_dir():
        raise fail("it is a folder; expected a file written by torch.save (.pth)")
    if path.stat().st_size == 0:
        raise fail("the file is empty (0 bytes: an interrupted download or copy?)")
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as err:
        raise fail(f"the file cannot be read ({err.strerror or err})") from err
    if head.startswith(b"version https://git-lfs"):
        raise fail("it is a Git LFS pointer, not the weights (run `git lfs pull`)")
    text = _as_text(head)
    if text is not None:
        raise fail(f"it is a text file (starts {text!r}), not a file written by torch.save")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as err:  # noqa: BLE001 - re-raised naming the file
            raise fail(f"not a valid safetensors file ({_first_line(err)})") from err
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        # torch < 2.14: "Unsupported global: GLOBAL os.system ..."; torch 2.14: "Trying to
        # load unsupported GLOBAL posix.system whose module posix is blocked"
        if "unsupported global" in detail.lower():
            found = re.search(r"GLOBAL (\S+)", detail)
            name = f" ({found[1]})" if found else ""
            raise fail(
                f"it holds Python objects other than tensors and containers{name}, which are "
                "never loaded: loading runs no code from a file (weights_only)"
            ) from err
        raise fail(f"not a file written by torch.save ({detail[:120]})") from err
    except Exception as err:  # noqa: BLE001 - re-raised naming the file
        kind = "a truncated or corrupt" if head.startswith(b"PK\x03\x04") else "not a"
        raise fail(
            f"{kind} torch.save file ({type(err).__name__}: {_first_line(err)[:120]})"
        ) from err


def _as_text(head: bytes) -> str | None:
    """The first line of `head` if the bytes are printable UTF-8 text, else None."""
    for cut in range(4):  # the 256 bytes may end inside a multi-byte character
        try:
            decoded = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if not decoded.strip() or not all(c.isprintable() or c in "\t\r\n" for c in decoded):
        return None
    return decoded.strip().splitlines()[0][:40]


def _unpickler_detail(err: BaseException) -> str:
    """What torch's weights-only unpickler refused (the line after "WeightsUnpickler error:")."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0]
    for line in text.splitlines():  # torch 2.14 names the refused global on a line of its own
        if "unsupported global" in line.lower():
            return line.strip()
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _numpy_globals() -> list[Any]:
    import numpy as np

    allowed: list[Any] = [np.ndarray, np.dtype]
    try:
        from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined]

        allowed.append(_reconstruct)
    except ImportError:  # pragma: no cover - numpy layout change
        pass
    return allowed + [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32")]


# ---------------------------------------------------------------------------------------
# The one reporter of keys
# ---------------------------------------------------------------------------------------
@dataclass
class KeyReport:
    """Missing, unexpected and mis-shaped tensors of a file against a model's state dict."""

    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[str] = field(default_factory=list)  # "name: file (a,) vs model (b,)"

    @classmethod
    def compare(
        cls,
        own: Mapping[str, Any],
        given: Mapping[str, Any],
        *,
        name: Callable[[str], str] = str,
        given_word: str = "checkpoint",
    ) -> KeyReport:
        """Compare `given` (the file's tensors, under the model's names) with `own` (the
        model's). `name(key)` is how a key is shown (e.g. its official name)."""
        shape = lambda v: tuple(getattr(v, "shape", ()))  # noqa: E731
        return cls(
            missing=[name(k) for k in own if k not in given],
            unexpected=[name(k) for k in given if k not in own],
            mismatched=[
                f"{name(k)}: {given_word} {shape(v)} vs model {shape(own[k])}"
                for k, v in given.items()
                if k in own and shape(v) != shape(own[k])
            ],
        )

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def message(self, header: str, hint: str = "") -> str:
        """`header`, one line per kind of problem (the first 10 names each), `hint`."""
        lines = [header]
        for label, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatches", self.mismatched),
        ):
            if items:
                lines.append(f"  {label} {len(items)}: {_short(items)}")
        if hint:
            lines.append(f"  {hint}")
        return "\n".join(lines)

    def check(self, header: str, hint: str = "") -> None:
        """Raise ValueError(`message`) unless every tensor fits."""
        if not self.ok:
            raise ValueError(self.message(header, hint))


def _short(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


@dataclass
class LoadReport:
    """What `load` did with a file."""

    kind: str = ""  # the DETECTORS key: project | official_tpavi | ...
    path: str = ""
    loaded: int = 0  # tensors copied into the model
    dropped: list[str] = field(default_factory=list)  # unused tensors (ResNet layer3_2 ...)
    stripped_prefix: str = ""  # "module." of nn.DataParallel checkpoints
    vggish: str = ""  # where VGGish comes from: "checkpoint", a file, or "random"

    def summary(self) -> str:
        text = f"{self.kind} checkpoint {self.path}: {self.loaded} tensors loaded"
        if self.dropped:
            text += f", {len(self.dropped)} unused dropped"
        if self.stripped_prefix:
            text += f", prefix {self.stripped_prefix!r} stripped"
        return text + f"; VGGish: {self.vggish}"
