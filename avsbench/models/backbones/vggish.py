"""VGGish audio encoder (Hershey et al., ICASSP 2017), as ported to PyTorch by torchvggish
(harritaylor) and used frozen by every published AVSBench run.

Input: log-mel examples [N, 1, 96, 64] (0.96 s each, `avsbench.data.audio`). Output: one
128-d embedding per example. The optional PCA post-processing of the AudioSet release is
off in every official config. Parameter names match `vggish-10086976.pth`
(`features.{0,3,6,8,11,13}`, `embeddings.{0,2,4}`) and `vggish_pca_params-970ea276.pth`
(`pca_eigen_vectors` [128, 128], `pca_means` [128]).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from avsbench.models.backbones.visual import read_state_dict
from avsbench.state_dicts import KeyReport

if TYPE_CHECKING:
    from avsbench.config import ModelConfig

EMBEDDING_SIZE = 128  # VGGish embedding width
QUANTIZE_MIN_VAL = -2.0  # PCA output is clipped to [-2, 2] ...
QUANTIZE_MAX_VAL = 2.0  # ... and mapped to 0..255 (8-bit AudioSet release format)
NUM_FRAMES, NUM_BANDS = 96, 64  # log-mel example: 96 frames of 10 ms x 64 mel bands

# conv widths; "M" = 2x2 max pooling (VGG configuration "A" shrunk to four blocks)
_LAYERS: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for item in _LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            in_channels = int(item)
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish: log_mel [N, 1, 96, 64] -> embeddings [N, 128].

        features:   conv3x3 1->64, relu, pool | 64->128, relu, pool |
                    128->256, relu, 256->256, relu, pool | 256->512, relu, 512->512, relu, pool
                    -> [N, 512, 6, 4]
        flatten in (H, W, C) order (channels-last, as the TensorFlow original) -> [N, 12288]
        embeddings: Linear 12288->4096, relu, 4096->4096, relu, 4096->128, relu

    With `postprocess=True` (PCA parameters loaded) the output is the AudioSet release
    format: round((clip(P (e - mu), -2, 2) + 2) * 255 / 4), values 0..255 (float).
    """

    def __init__(self, postprocess: bool = False) -> None:
        super().__init__()
        self.features = _make_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, EMBEDDING_SIZE),
            nn.ReLU(),
        )
        self.postprocess = False
        if postprocess:
            self._enable_pca()

    def _enable_pca(self) -> None:
        if not self.postprocess:
            self.register_buffer("pca_eigen_vectors", torch.eye(EMBEDDING_SIZE))
            self.register_buffer("pca_means", torch.zeros(EMBEDDING_SIZE))
            self.postprocess = True

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim != 4 or tuple(log_mel.shape[1:]) != (1, NUM_FRAMES, NUM_BANDS):
            raise ValueError(f"log_mel must be [N, 1, 96, 64], got {tuple(log_mel.shape)}")
        x = self.features(log_mel)  # [N, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # [N, 6*4*512] in (H, W, C) order
        emb = self.embeddings(x)  # [N, 128]
        return self.pca_quantize(emb) if self.postprocess else emb

    def pca_quantize(self, emb: torch.Tensor) -> torch.Tensor:
        """emb [N, 128] -> round((clip(P (e - mu), -2, 2) + 2) * 255 / 4) [N, 128]."""
        pca = (emb - self.pca_means) @ self.pca_eigen_vectors.T  # [N, 128]
        clipped = pca.clamp(QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        scale = 255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)
        return torch.round((clipped - QUANTIZE_MIN_VAL) * scale)

    def load_official_state_dict(
        self,
        state_dict_or_path: dict[str, Any] | str | os.PathLike,
        pca: dict[str, Any] | str | os.PathLike | None = None,
    ) -> None:
        """Load `vggish-10086976.pth` (a path or its state dict) and optionally the PCA file.

        Raises FileNotFoundError for a missing file and ValueError naming the file and the
        missing / unexpected / mis-shaped tensors for a file of another layout.
        """
        sd, source = _as_state_dict(state_dict_or_path, "VGGish weights (vggish-10086976.pth)")
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("pca_")}
        _check_layout(sd, own, source)
        self.load_state_dict({k: torch.as_tensor(v) for k, v in sd.items()}, strict=False)
        if pca is None:
            return
        what = "VGGish PCA parameters (vggish_pca_params-970ea276.pth)"
        pca_sd, pca_source = _as_state_dict(pca, what)
        vectors = torch.as_tensor(pca_sd.get("pca_eigen_vectors", torch.empty(0)))
        means = torch.as_tensor(pca_sd.get("pca_means", torch.empty(0))).reshape(-1)
        if tuple(vectors.shape) != (128, 128) or tuple(means.shape) != (128,):
            raise ValueError(
                f"{pca_source}: expected pca_eigen_vectors [128, 128] and pca_means [128] "
                f"(or [128, 1]), got keys {sorted(pca_sd)} with shapes "
                f"{[tuple(torch.as_tensor(v).shape) for v in pca_sd.values()]}"
            )
        self._enable_pca()
        self.pca_eigen_vectors.copy_(vectors.float())
        self.pca_means.copy_(means.float())


class VGGishConvMap(nn.Module):
    """The part of a VGGish that methods reading its conv map see (VCT, spec item 2):
    log_mel [N, 1, 96, 64] -> features(x) [N, 512, 6, 4] flattened in (C, H, W) order to
    [N, 12288] (`.view(N, 512, 6, 4)` restores it), so that the engine, its embedding cache
    and the padding of windows treat it as any per-frame audio vector. The embedding layers
    are kept (the official checkpoints hold them) but never run."""

    def __init__(self, vggish: VGGish) -> None:
        super().__init__()
        self.vggish = vggish

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim != 4 or tuple(log_mel.shape[1:]) != (1, NUM_FRAMES, NUM_BANDS):
            raise ValueError(f"log_mel must be [N, 1, 96, 64], got {tuple(log_mel.shape)}")
        return self.vggish.features(log_mel).flatten(1)  # [N, 512*6*4]


# what the model receives of VGGish (MethodSpec.audio_input) -> how to wrap the network
AUDIO_INPUTS = ("embedding", "conv_map")


def for_audio_input(vggish: VGGish, audio_input: str) -> nn.Module:
    """`vggish` itself ("embedding": [N, 128]) or its conv map ("conv_map": [N, 12288])."""
    if audio_input not in AUDIO_INPUTS:
        raise ValueError(f"unknown audio input {audio_input!r}; valid: {list(AUDIO_INPUTS)}")
    return VGGishConvMap(vggish) if audio_input == "conv_map" else vggish


def _as_state_dict(obj: dict[str, Any] | str | os.PathLike, what: str) -> tuple[dict, str]:
    if isinstance(obj, dict):
        return obj, what
    return read_state_dict(obj, what), f"{what} file {os.fspath(obj)!r}"


def _check_layout(sd: dict[str, Any], own: dict[str, torch.Tensor], source: str) -> None:
    KeyReport.compare(own, sd, given_word="file").check(
        f"{source} is not a VGGish state dict (features.{{0,3,6,8,11,13}}, embeddings.{{0,2,4}}):"
    )


def build_vggish(model_cfg: ModelConfig) -> VGGish:
    """The frozen VGGish of `model_cfg` (eval mode, requires_grad False).

    Loads `vggish_weights` (and `vggish_pca` if set). Without weights the network gets a
    deterministic random He initialisation (seed 0, the global RNG is left untouched), which
    is what the synthetic-data runs and tests use; real runs must set `vggish_weights`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGGish()
        if not model_cfg.vggish_weights:
            # PyTorch's default init shrinks activations ~2.5x per layer: after 9 layers
            # the embeddings are ~0.005 with a clip-to-clip spread of ~3e-4, too faint for
            # the fusion to use. He init keeps them O(1), as a trained VGGish's are.
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)
    if model_cfg.vggish_weights:
        model.load_official_state_dict(model_cfg.vggish_weights, pca=model_cfg.vggish_pca)
    elif model_cfg.vggish_pca:
        raise ValueError("vggish_pca is set but vggish_weights is not: set both in config.py")
    model.requires_grad_(False)
    return model.eval()
