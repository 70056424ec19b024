"""Tri-plane projection and bilinear sampling, single- and multi-scale.

Plane layout (``planes[:, i]``): 0 = xy, 1 = zy, 2 = xz. The xy plane is laid out like the source image in
the tri-plane frame (columns follow +x, rows follow -y), so image features reshaped into planes line up with
what the frontal camera sees.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def plane_coordinates(points: torch.Tensor, extent: float) -> torch.Tensor:
    """Project points onto the three planes as ``grid_sample`` coordinates in [-1, 1].

    Args:
        points: (B, M, 3) points in the tri-plane frame; the planes cover [-extent, extent]^3.

    Returns:
        (B, 3, M, 2) coordinates for the xy, zy and xz planes.
    """
    x, y, z = (points / extent).unbind(-1)
    return torch.stack(
        [torch.stack([x, -y], -1), torch.stack([z, -y], -1), torch.stack([x, z], -1)], dim=1
    )


def sample_planes(planes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of every plane at its coordinates.

    Args:
        planes: (B, 3, C, H, W); a batch of 1 is broadcast to ``coords``' batch.
        coords: (B, 3, M, 2) from :func:`plane_coordinates`.

    Returns:
        (B, M, C): features averaged over the three planes (zero outside the planes).
    """
    batch, _, channels, height, width = planes.shape
    out_batch, _, num_points, _ = coords.shape
    if batch == 1 and out_batch > 1:
        planes = planes.expand(out_batch, -1, -1, -1, -1)
    flat = planes.reshape(out_batch * 3, channels, height, width)  # (B*3, C, H, W)
    grid = coords.reshape(out_batch * 3, num_points, 1, 2)  # (B*3, M, 1, 2)
    sampled = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(out_batch, 3, channels, num_points)  # (B, 3, C, M)
    return sampled.mean(dim=1).transpose(1, 2)


def sample_multiscale(triplanes: Sequence[torch.Tensor], points: torch.Tensor, extent: float) -> torch.Tensor:
    """Multi-scale tri-plane feature of each point: planes averaged per scale, summed over scales: (B, M, C)."""
    coords = plane_coordinates(points, extent)
    return sum(sample_planes(planes, coords) for planes in triplanes)
