"""TPAVI: temporal pixel-wise audio-visual interaction (Zhou et al., ECCV 2022, sec. 3.3).

A non-local block (Wang et al., CVPR 2018) over a window of T' frames whose "key" side is
the audio feature of each frame broadcast over the image (audio-visual, `va`), or the
visual map itself (video self-attention, `vv`). Parameter names follow the published
`TPAVIModule` so its state dicts load directly (docs/MODEL.md; the published block's
outputs are in tests/golden/avsbench/tpavi_blocks.npz).

With x: [B', C, T', H, W], N = T'*H*W positions, theta/phi/g 1x1x1 convs C -> C':

    dot          f = theta(x)^T phi(a) / N
    embedded     f = softmax_last(theta(x)^T phi(a))
    gaussian     f = softmax_last(x^T a)
    concatenate  f = relu(W_f [theta(x)_i; phi(a)_j]) / N
    y = f g(x)^T;  z = LayerNorm_C(BN(W_z y) + x)

Exact cheaper forms (identities, not approximations; `dense=False`, the default):
- dot: y = theta(x)^T K with K = (1/N) sum_j phi_j g_j^T, a C' x C' matrix per window. With
  audio phi_j = phi(a_t) for every (h, w) of frame t, so K = (1/N) sum_t phi(a_t) S_t^T,
  S_t = sum_hw g(x)_t. Cost O(N C'^2), memory O(C'^2) instead of O(N^2).
- embedded / gaussian with audio: the N logits of a row take only T' distinct values, each
  H*W times, so softmax over N = softmax over T' divided by H*W and
  y_i = sum_t softmax_t(f_it) mean_hw g(x)_t.
- concatenate with audio: W_f is linear, f_it = relu(w_theta . theta_i + w_phi . phi(a_t) + b),
  y_i = (1/N) sum_t f_it S_t.
In the cheap forms g(x) enters only through mean_hw g(x)_t = g(mean_hw x_t), and for dot
theta and W_z's conv fold into one C x C map per window, W_z(y) = (Wz K^T W_theta) x + c, so
no C'-channel map is materialised at all (saves time and the memory kept for backward).
`dense=True` builds the N x N matrix as published (for checks; 0.98 GB per window at the
224-input stage 0). Self-attention (`vv`) for embedded/gaussian/concatenate is always dense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TPAVI_MODES = ("dot", "embedded", "gaussian", "concatenate")


class TPAVI(nn.Module):
    """One TPAVI block.

    Args:
        channels: C, the width of the visual maps (published: 256).
        inter_channels: C' of theta/phi/g (default C // 2, published 128).
        audio_channels: width of the audio embedding (VGGish: 128).
        mode: one of `TPAVI_MODES`.
        align_bias: bias of `align_channel` (published S4/MS3: True, AVSS: False).
        dense: use the published N x N computation instead of the exact cheap form.

    forward(x: [B', C, T', H, W], audio: [B', T', 128] | None)
        -> (z: [B', C, T', H, W], aligned audio: [B', T', C] or None when audio is None)
    audio=None is the video self-attention (`vv`) form.
    """

    def __init__(
        self,
        channels: int = 256,
        inter_channels: int | None = None,
        audio_channels: int = 128,
        mode: str = "dot",
        align_bias: bool = True,
        dense: bool = False,
    ) -> None:
        super().__init__()
        if mode not in TPAVI_MODES:
            raise ValueError(f"unknown TPAVI mode {mode!r}; valid: {list(TPAVI_MODES)}")
        self.mode = mode
        self.dense = dense
        self.channels = channels
        self.inter_channels = inter_channels or max(channels // 2, 1)
        ci = self.inter_channels
        # Creation order = the published state-dict order.
        self.align_channel = nn.Linear(audio_channels, channels, bias=align_bias)
        self.norm_layer = nn.LayerNorm(channels)
        self.g = nn.Conv3d(channels, ci, kernel_size=1)
        self.W_z = nn.Sequential(nn.Conv3d(ci, channels, kernel_size=1), nn.BatchNorm3d(channels))
        # Zero-initialised BN: the block starts as the identity (plus LayerNorm).
        nn.init.constant_(self.W_z[1].weight, 0)
        nn.init.constant_(self.W_z[1].bias, 0)
        if mode != "gaussian":
            self.theta = nn.Conv3d(channels, ci, kernel_size=1)
            self.phi = nn.Conv3d(channels, ci, kernel_size=1)
        if mode == "concatenate":
            self.W_f = nn.Sequential(nn.Conv2d(2 * ci, 1, kernel_size=1), nn.ReLU())

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, dense={self.dense}"

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"x must be [B', {self.channels}, T', H, W], got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        aligned = None
        if audio is not None:
            if audio.shape[:2] != (b, t):
                raise ValueError(f"audio must be [{b}, {t}, D], got {tuple(audio.shape)}")
            aligned = self.align_channel(audio)  # [B', T', C]
        if aligned is not None and not self.dense:
            wz = self._audio_compact(x, aligned)  # [B', C, N]
        elif aligned is None and self.mode == "dot" and not self.dense:
            phi_x = self.phi(x).flatten(2)  # [B', C', N]
            g_x = self.g(x).flatten(2)  # [B', C', N]
            k = phi_x @ g_x.transpose(1, 2) / phi_x.shape[-1]  # [B', C', C']
            wz = self._apply_kernel(x, k)  # [B', C, N]
        else:
            context = x if aligned is None else _broadcast_audio(aligned, h, w)  # [B',C,T',H,W]
            f = self._dense_affinity(x, context)  # [B', N, N], already normalised
            g_x = self.g(x).flatten(2)  # [B', C', N]
            y = (f @ g_x.transpose(1, 2)).transpose(1, 2)  # [B', C', N]
            y = y.reshape(b, self.inter_channels, t, h, w)  # [B', C', T', H, W]
            wz = self.W_z[0](y).flatten(2)  # [B', C, N]

        z = self.W_z[1](wz.reshape(b, c, t, h, w))  # [B', C, T', H, W]
        # BatchNorm keeps its input, not its output, for backward: add the residual in place
        # (out of place under mixed precision, where the two dtypes differ).
        z = z.add_(x) if z.dtype == x.dtype else z + x
        z = self.norm_layer(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)  # LN over C
        return z, aligned

    # -- published N x N form --------------------------------------------------------------
    def _dense_affinity(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """f_div_C of the published block: [B', N, N] (rows: positions of x)."""
        if self.mode == "gaussian":
            f = x.flatten(2).transpose(1, 2) @ context.flatten(2)  # [B', N, N]
            return F.softmax(f, dim=-1)
        theta_x = self.theta(x).flatten(2)  # [B', C', N]
        phi_c = self.phi(context).flatten(2)  # [B', C', N]
        n = phi_c.shape[-1]
        if self.mode == "concatenate":
            # W_f is a 1x1 conv on [theta_i; phi_j]: its linear part splits into two terms.
            u, v, bias = self._concat_terms(theta_x, phi_c)  # [B', N], [B', N], []
            f = F.relu(u[:, :, None] + v[:, None, :] + bias)  # [B', N, N]
            return f / n
        f = theta_x.transpose(1, 2) @ phi_c  # [B', N, N]
        return F.softmax(f, dim=-1) if self.mode == "embedded" else f / n

    def _concat_terms(
        self, theta: torch.Tensor, phi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """theta: [B', C', N], phi: [B', C', M] -> (w_theta.theta [B', N], w_phi.phi [B', M], b)."""
        conv = self.W_f[0]
        weight = conv.weight.flatten()  # [2C']: first half multiplies theta (cat order)
        ci = self.inter_channels
        u = torch.einsum("c,bcn->bn", weight[:ci], theta)
        v = torch.einsum("c,bcm->bm", weight[ci:], phi)
        return u, v, conv.bias[0]

    # -- exact cheap forms -------------------------------------------------------------------
    def _apply_kernel(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """W_z's conv applied to y = theta(x)^T K, folded into one C x C map per window.

        W_z(y) = Wz K^T (Wt x + bt) + bz = M x + c with M = Wz K^T Wt: neither theta(x) nor y
        is materialised. x: [B', C, T', H, W], k: [B', C', C'] -> [B', C, N].
        """
        wt = self.theta.weight.flatten(1)  # [C', C]
        wz = self.W_z[0].weight.flatten(1)  # [C, C']
        kt = k.transpose(1, 2)  # [B', C', C']
        m = wz @ (kt @ wt)  # [B', C, C]
        c = (kt @ self.theta.bias)[..., None]  # [B', C', 1]
        c = (wz @ c).squeeze(-1) + self.W_z[0].bias  # [B', C]
        return torch.baddbmm(c[..., None], m, x.flatten(2))  # [B', C, N]

    def _audio_compact(self, x: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        """W_z's conv output [B', C, N], using that the audio map is constant over (h, w).

        g is a 1x1 conv, so mean_hw g(x)_t = g(mean_hw x_t): the g(x) map is never needed.
        """
        b, _, t, h, w = x.shape
        n, hw = t * h * w, h * w
        x_mean = x.flatten(3).mean(-1).transpose(1, 2)  # [B', T', C], mean over (h, w)
        g_mean = _pointwise(self.g, x_mean)  # [B', T', C'] = mean_hw g(x)_t
        if self.mode == "dot":
            phi_a = _pointwise(self.phi, aligned)  # [B', T', C']
            # K = (1/N) sum_t phi(a_t) S_t^T with S_t = sum_hw g(x)_t = HW * g_mean_t
            k = phi_a.transpose(1, 2) @ g_mean * (hw / n)  # [B', C', C']
            return self._apply_kernel(x, k)
        # y_i = sum_t p_it v_t, then W_z: W_z(y)_i = sum_t p_it (Wz v_t) + bz
        if self.mode == "gaussian":
            logits = x.flatten(2).transpose(1, 2) @ aligned.transpose(1, 2)  # [B', N, T']
            p = F.softmax(logits, dim=-1)  # softmax over N = softmax over T' / HW
        else:
            theta_x = self.theta(x).flatten(2)  # [B', C', N]
            phi_a = _pointwise(self.phi, aligned)  # [B', T', C']
            if self.mode == "embedded":
                p = F.softmax(theta_x.transpose(1, 2) @ phi_a.transpose(1, 2), dim=-1)  # [B',N,T']
            else:  # concatenate: f_it / N applied to S_t = HW g_mean_t
                u, v, bias = self._concat_terms(theta_x, phi_a.transpose(1, 2))  # [B',N],[B',T']
                p = F.relu(u[:, :, None] + v[:, None, :] + bias) * (hw / n)  # [B', N, T']
        values = g_mean @ self.W_z[0].weight.flatten(1).T  # [B', T', C] = Wz g_mean_t
        return torch.baddbmm(
            self.W_z[0].bias[None, :, None], values.transpose(1, 2), p.transpose(1, 2)
        )  # [B', C, N]


def _pointwise(conv: nn.Conv3d, seq: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 Conv3d applied to per-frame vectors: seq [B', T', C] -> [B', T', C']."""
    return F.linear(seq, conv.weight.flatten(1), conv.bias)


def _broadcast_audio(aligned: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B', T', C] -> the published audio map [B', C, T', H, W] (repeated over H and W)."""
    return aligned.permute(0, 2, 1)[..., None, None].expand(-1, -1, -1, h, w)
