"""The warp's inputs to the super-resolution, computed the same way for both engines: the source warped by the
render's correspondence, and how much of it the source sees (:mod:`s3d_pipeline.rendering.warp`)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..models.layers import per_frame
from ..rendering.warp import sample_at, source_correspondence, source_visibility
from .identity import Identity


def warp_inputs(
    identity: Identity,
    canonical: torch.Tensor,
    opacity: torch.Tensor,
    source_depth: torch.Tensor,
    resolution: int,
    ray_window: Optional[Tuple[int, int, int]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The warped source and its visibility for n rendered ray grids (or windows of them).

    Args:
        canonical, opacity: (n, 3, p, p), (n, 1, p, p) from volume rendering (weight-summed x + Δx, alpha).
        source_depth: (1 or B, 1, r, r) the identity's source-view depth (the engine's per-identity cache).
        resolution, ray_window: the ray grid r and the window (top, left, p) rendered (None: the whole grid).

    Returns:
        warped (n, 3, P, P) and visibility (n, 1, P, P) at the frames' size P = p * S / r: how much of each pixel
        the source both sees (:func:`~s3d_pipeline.rendering.warp.source_visibility`) and shows (0 where the
        correspondence lands in the hidden mouth, so the mouth is always generated).
    """
    n, size = canonical.shape[0], canonical.shape[-1] * identity.resolution // resolution
    uv, depth = source_correspondence(canonical.float(), opacity.float(), resolution, ray_window)
    visibility = source_visibility(depth, uv, opacity.float(), per_frame(source_depth, n).float())
    warped, shown = sample_at(per_frame(identity.warp_source, n), uv, size).split([3, 1], dim=1)
    return warped, shown * F.interpolate(visibility, size=(size, size), mode="bilinear", align_corners=False)
