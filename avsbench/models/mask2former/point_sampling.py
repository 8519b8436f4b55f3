"""Point sampling of mask logits, as the Mask2Former losses use it (PointRend, Kirillov et al.,
CVPR 2020; Mask2Former, Cheng et al., CVPR 2022).

Follows detectron2's `projects/PointRend/point_rend/point_features.py` (`point_sample`,
`get_uncertain_point_coords_with_randomness`) and Mask2Former's `criterion.py`
(`calculate_uncertainty`): the losses and the matching cost are computed on a few thousand
points instead of the whole mask, and the mask loss picks most of its points where the
prediction is least certain (logit near 0).

Coordinates are (x, y) in [0, 1] x [0, 1] over the whole map; a point is read by bilinear
interpolation with `align_corners=False` and zero padding, so 0 and 1 are the outer edges of
the border pixels, not their centres (as published: points near the border read part zero).
Random draws take an optional `torch.Generator` (tests); without one they use the global
generator of the tensor's device, as the published code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_points(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform points in [0, 1): float32 `shape` (last dim 2) on `device`.

    With a generator the draw happens on the generator's device and is then moved, so that a
    CPU generator makes a CUDA run repeatable too.
    """
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def point_sample(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of `features` at `coords`.

    features: [N, C, H, W]; coords: [N, P, 2] (x, y) in [0, 1] -> [N, C, P].
    """
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != features.shape[0]:
        raise ValueError(f"coords must be [N={features.shape[0]}, P, 2], got {tuple(coords.shape)}")
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [N, P, 1, 2] in grid_sample's [-1, 1]
    values = F.grid_sample(features, grid.to(features.dtype), align_corners=False)
    return values.squeeze(3)  # [N, C, P]


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """-|logit|: highest where the prediction is closest to undecided (Mask2Former's
    `calculate_uncertainty`). logits: [R, 1, ...] -> same shape."""
    if logits.shape[1] != 1:
        raise ValueError(f"logits must be class-agnostic [R, 1, ...], got {tuple(logits.shape)}")
    return -logits.abs()


def importance_sampled_points(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PointRend's training points: draw `int(num_points * oversample_ratio)` uniform points,
    keep the `int(importance_sample_ratio * num_points)` most uncertain of them, then add
    uniform points up to `num_points`.

    logits: [R, 1, H, W] mask logits (no gradient needed) -> coords [R, num_points, 2].
    """
    if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"need oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1, got "
            f"{oversample_ratio} and {importance_sample_ratio}"
        )
    num_masks = logits.shape[0]
    num_drawn = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_uniform = num_points - num_uncertain
    drawn = random_points((num_masks, num_drawn, 2), logits.device, generator)  # [R, P*o, 2]
    uncertainty = logit_uncertainty(point_sample(logits, drawn))  # [R, 1, P*o]
    keep = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1).indices  # [R, P*r]
    coords = torch.gather(drawn, 1, keep.unsqueeze(-1).expand(-1, -1, 2))  # [R, P*r, 2]
    if num_uniform > 0:
        extra = random_points((num_masks, num_uniform, 2), logits.device, generator)
        coords = torch.cat([coords, extra], dim=1)  # [R, num_points, 2]
    return coords
