"""avsbench: audio-visual segmentation (AVSBench S4, MS3, AVSS), exact to the published
models and metrics (Zhou et al., ECCV 2022; IJCV 2024), with a faster TPAVI.

Public names are imported lazily so that `import avsbench` (and the command line) stays
fast; `from avsbench import build_model` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_model": "avsbench.models.registry",
    "METHODS": "avsbench.models.registry",
    "AVSModel": "avsbench.models.tpavi.model",
    "AVSOutput": "avsbench.models.contract",
    "VGGish": "avsbench.models.backbones.vggish",
    "TPAVI": "avsbench.models.tpavi.block",
    "load_official_state_dict": "avsbench.models.registry",
    "to_official_state_dict": "avsbench.models.registry",
    "S4Dataset": "avsbench.data.datasets",
    "MS3Dataset": "avsbench.data.datasets",
    "AVSSDataset": "avsbench.data.datasets",
    "log_mel_examples": "avsbench.data.audio",
    "predict_video": "avsbench.predict",
    "Config": "avsbench.config",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'avsbench' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
