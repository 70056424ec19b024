"""Tri-planes as one gather table: a bilinear lookup of all three planes is one ``embedding_bag``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

_CORNERS = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])  # (dy, dx) of the four bilinear corners


@dataclass
class PlaneTable:
    """Planes as one channels-last gather table, each plane framed by a ring of zero texels.

    The ring makes bilinear lookups need no bounds checks: coordinates are clamped onto it, where they read
    exactly the zeros ``grid_sample``'s zero padding gives. Rows are pre-divided by 3 so that summing the three
    planes' samples gives their mean.

    Attributes:
        rows: (B*3*(H+3)*(W+3), C) texels, row-major per framed plane.
        batch, height, width: the planes' batch and size (without the ring).
        extent: half-size of the cube the planes cover.
    """

    rows: torch.Tensor
    batch: int
    height: int
    width: int
    extent: float

    @classmethod
    def from_planes(cls, planes: torch.Tensor, extent: float) -> "PlaneTable":
        """planes (B, 3, C, H, W) -> a table."""
        batch, _, channels, height, width = planes.shape
        framed = F.pad(planes / 3.0, (1, 2, 1, 2))  # (B, 3, C, H+3, W+3): one zero texel before, two after
        rows = framed.permute(0, 1, 3, 4, 2).reshape(-1, channels)  # (B*3*(H+3)*(W+3), C)
        return cls(rows=rows.contiguous(), batch=batch, height=height, width=width, extent=extent)

    def lookup(self, points: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bilinear features at points (B, M, 3), averaged over the three planes: (B, M, C).

        Matches :func:`~s3d_pipeline.rendering.triplane.sample_planes` (``align_corners=False``, zeros outside).
        Point batch b reads table batch b (a table of batch 1 serves every batch), unless ``frames`` (B, M) names
        the table batch of each point (points of several frames packed into one batch).
        """
        batch, num_points, _ = points.shape
        h, w = self.height, self.width
        x, y, z = points.unbind(-1)
        # (u, v) of the xy, zy and xz planes as ``plane_coordinates`` gives them, as texel coordinates in the framed
        # plane (+1 for the ring), clamped onto the ring. Built elementwise: a (M, 3) x (3, 6) matmul costs 4x more.
        scale = points.new_tensor([w / 2] * 3 + [h / 2] * 3)
        limit = points.new_tensor([w + 1.0] * 3 + [h + 1.0] * 3)
        uv = torch.stack([x, z, x, -y, -y, z], dim=-1)  # (B, M, 6) in [-extent, extent]
        g = torch.minimum(uv.mul_(scale / self.extent).add_(scale + 0.5), limit).clamp_min_(0.0)  # (uv / extent + 1) * scale + 0.5
        g0 = g.floor()
        frac = g - g0  # (B, M, 6)
        plane = torch.arange(3, device=points.device, dtype=g.dtype) * ((h + 3) * (w + 3))  # (3,)
        if frames is not None:
            plane = plane + 3 * (h + 3) * (w + 3) * frames[..., None].to(g.dtype)  # (B, M, 3)
        elif self.batch > 1:
            plane = plane + 3 * (h + 3) * (w + 3) * torch.arange(batch, device=points.device, dtype=g.dtype)[:, None, None]
        top_left = plane + g0[..., 3:] * (w + 3) + g0[..., :3]  # (B, M, 3) row of each plane's top-left corner
        corners = _CORNERS.to(points.device)
        # int32 rows: building int64 ones costs more than the gather itself.
        index = top_left[..., None].int() + (corners[:, 0] * (w + 3) + corners[:, 1]).int()  # (B, M, 3, 4)
        rest = 1 - frac
        fx, fy, gx, gy = frac[..., :3], frac[..., 3:], rest[..., :3], rest[..., 3:]  # (B, M, 3) each
        weight = torch.stack([gy * gx, gy * fx, fy * gx, fy * fx], dim=-1)  # (B, M, 3, 4) in the order of _CORNERS
        index, weight = index.reshape(batch * num_points, 12), weight.reshape(batch * num_points, 12).to(self.rows.dtype)
        return F.embedding_bag(index, self.rows, per_sample_weights=weight, mode="sum").reshape(batch, num_points, self.rows.shape[1])


def presum_triplanes(triplanes: Sequence[torch.Tensor], extent: float) -> PlaneTable:
    """Multi-scale tri-plane (per scale (1, 3, C, H_s, W_s), finest first) -> one summed table.

    Every scale is sampled at the texel centres of the finest grid, grown on each side until the coarsest scale's
    zero padding has fallen to zero (half a coarse texel past the edge, plus one fine texel), and the samples are
    summed.
    """
    finest = triplanes[0]
    size = finest.shape[-1]
    margin = math.ceil(0.5 * size / min(p.shape[-1] for p in triplanes)) + 1  # fine texels
    grown = size + 2 * margin
    centres = ((torch.arange(grown, dtype=finest.dtype) - margin + 0.5) * 2 / size - 1).to(finest.device)  # in [-1, 1] units
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([u, v], -1)[None].expand(3, -1, -1, -1)  # (3, H+2m, W+2m, 2)
    summed = sum(
        F.grid_sample(planes[0], grid, mode="bilinear", padding_mode="zeros", align_corners=False) for planes in triplanes
    )  # (3, C, H+2m, W+2m)
    return PlaneTable.from_planes(summed[None], extent * grown / size)

