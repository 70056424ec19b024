"""The render's own 3D correspondence: for every output pixel, the source pixel it shows, and whether the source
sees that point at all.

Volume rendering integrates, beside the features, where each ray's samples were looked up in the tri-plane: the
deformed positions x + Δx in the source head's canonical frame. Their weight-averaged position is the ray's surface
point as the source holds it; projected through the source camera (the frontal camera of the tri-plane frame,
:mod:`.cameras`) it is the source pixel the ray shows. Sampling the full-resolution aligned source there warps the
photo's own pixels into the target view (ours: the paper renders every pixel; PAPER.md keeps the texture from the
source only through the super-resolution).

A point may be hidden from the source (a turned head's far cheek): comparing its depth from the source camera with
the source view's own rendered depth at its projection tells (:func:`source_visibility`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .cameras import FOCAL, frontal_cam2world, project

# Below this opacity a ray holds no surface: its correspondence falls back to its own pixel (the source's background
# there is the frame's background, as the compositing mask shows it).
EMPTY_OPACITY = 1e-4
# How far (head-frame units, about 7 cm to the eye-to-mouth distance of 0.155) a point may lie behind the source
# view's surface before it counts as hidden from the source: visibility falls linearly from 1 at this distance to
# 0 at twice it (ours; the tri-plane texel is 0.011 at the demo's 64-texel planes of extent 0.35).
OCCLUSION_TOLERANCE = 0.03


def pixel_centres(resolution: int, ray_window: Optional[Tuple[int, int, int]] = None, device=None) -> torch.Tensor:
    """Normalized image coordinates (u, v) in [0, 1] of the rays' pixel centres: (2, p, p) for the ``ray_window``
    (top, left, p) of a ``resolution``-ray grid, (2, resolution, resolution) without one."""
    top, left, size = ray_window if ray_window is not None else (0, 0, resolution)
    v = (torch.arange(top, top + size, device=device, dtype=torch.float32) + 0.5) / resolution
    u = (torch.arange(left, left + size, device=device, dtype=torch.float32) + 0.5) / resolution
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv])


def source_correspondence(
    canonical: torch.Tensor, opacity: torch.Tensor, resolution: int, ray_window: Optional[Tuple[int, int, int]] = None, focal: float = FOCAL
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where each ray's surface sits in the source image.

    Args:
        canonical: (N, 3, p, p) the rays' weight-summed deformed sample positions, ``sum_i w_i (x_i + Δx_i)``.
        opacity: (N, 1, p, p) the rays' accumulated alpha, ``sum_i w_i``.
        resolution, ray_window: the ray grid and the window of it the rays cover (see :func:`pixel_centres`).

    Returns:
        uv (N, 2, p, p): normalized source-image coordinates, the surface point's projection blended by opacity with
        the ray's own pixel (so a ray that sees nothing points at its own pixel); depth (N, 1, p, p): the surface
        point's depth from the source camera (meaningless where opacity is ~0).
    """
    n, _, h, w = canonical.shape
    point = canonical / opacity.clamp_min(EMPTY_OPACITY)  # (N, 3, p, p) the surface point
    projected = project(point.permute(0, 2, 3, 1).reshape(n, h * w, 3), frontal_cam2world().to(canonical), focal)  # (N, p*p, 3)
    projected = projected.transpose(1, 2).reshape(n, 3, h, w)
    own = pixel_centres(resolution, ray_window, canonical.device).to(canonical.dtype)  # (2, p, p)
    alpha = opacity.clamp(0.0, 1.0)
    uv = own + alpha * (projected[:, :2] - own)
    return uv, projected[:, 2:]


def upsample_linear(values: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, p, p) -> (N, C, size, size) bilinearly, extrapolating linearly past the outer samples where plain
    ``interpolate`` would repeat them (a correspondence keeps moving at the frame's edge); ``size`` a multiple of p."""
    p = values.shape[-1]
    if p == size:
        return values
    scale = size // p
    padded = F.pad(values, (1, 1, 1, 1), mode="replicate")  # (N, C, p+2, p+2)
    padded[..., 0, :] = 2 * padded[..., 1, :] - padded[..., 2, :]
    padded[..., -1, :] = 2 * padded[..., -2, :] - padded[..., -3, :]
    padded[..., :, 0] = 2 * padded[..., :, 1] - padded[..., :, 2]
    padded[..., :, -1] = 2 * padded[..., :, -2] - padded[..., :, -3]
    grown = F.interpolate(padded, size=(size + 2 * scale, size + 2 * scale), mode="bilinear", align_corners=False)
    return grown[..., scale:-scale, scale:-scale]


def sample_at(image: torch.Tensor, uv: torch.Tensor, size: int) -> torch.Tensor:
    """``image`` (1 or N, C, H, W) sampled at the coordinates uv (N, 2, p, p), upsampled to (size, size) first
    (:func:`upsample_linear`: the correspondence is smooth; the image keeps its own resolution): (N, C, size, size)."""
    grid = upsample_linear(uv, size).permute(0, 2, 3, 1) * 2 - 1  # (N, size, size, 2) in grid_sample's [-1, 1]
    if image.shape[0] == 1 and uv.shape[0] > 1:
        image = image.expand(uv.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def source_visibility(depth: torch.Tensor, uv: torch.Tensor, opacity: torch.Tensor, source_depth: torch.Tensor) -> torch.Tensor:
    """How much of each ray's surface point the source sees, in [0, 1]: 1 where the point lies on the source view's
    surface at its projection, falling to 0 where it lies more than :data:`OCCLUSION_TOLERANCE` behind it.

    Args:
        depth, uv, opacity: a ray grid's (N, 1, p, p), (N, 2, p, p), (N, 1, p, p) from :func:`source_correspondence`.
        source_depth: (1 or N, 1, r, r) the source view's rendered depth (the full ray grid).

    Returns:
        (N, 1, p, p); rays that see nothing count as visible (their pixel is the source's own background).
    """
    seen = sample_at(source_depth, uv, uv.shape[-1])  # (N, 1, p, p) the source's surface depth there
    behind = depth - seen
    visible = (2.0 - behind / OCCLUSION_TOLERANCE).clamp(0.0, 1.0)
    alpha = opacity.clamp(0.0, 1.0)
    return 1 - alpha * (1 - visible)
