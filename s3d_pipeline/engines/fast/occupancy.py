"""The occupancy grid: which voxels can hold visible density, and over which depths each ray crosses them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Tuple

import torch
import torch.nn.functional as F

from ...rendering.cameras import frontal_cam2world
from ...rendering.rays import pixel_rays

# A voxel counts as occupied when its density could make a whole ray more than this opaque.
OPACITY_EPSILON = 1e-3


def sample_radius(config) -> float:
    """How far from the head centre a ray sample can be, for any camera on the pose sphere (the pipeline's cameras
    are rotations of the frontal one, so the frontal camera's farthest sample, at a ray's near or far end, is it)."""
    origins, dirs = pixel_rays(frontal_cam2world()[None], config.ray_resolution, config.focal)  # (1, N, 3)
    ends = torch.tensor([config.ray_near, config.ray_far])[:, None]  # (2, 1)
    points = origins[:, :, None] + dirs[:, :, None] * ends  # (1, N, 2, 3)
    return float(points.norm(dim=-1).max()) + 0.5 / config.ray_resolution  # pixel centres fall short of the corner


@dataclass
class OccupancyGrid:
    """Which voxels of the cube [-radius, radius]^3 may hold visible density.

    Attributes:
        occupied: (G, G, G) bool, indexed [x, y, z].
        radius: half-size of the cube.
    """

    occupied: torch.Tensor
    radius: float

    @property
    def voxel(self) -> float:
        """Side of one voxel."""
        return 2 * self.radius / self.occupied.shape[0]

    def dilated(self, distance: float) -> "OccupancyGrid":
        """The grid with every voxel within ``distance`` per axis of an occupied voxel marked occupied (rounded up to
        whole voxels): a point of an occupied voxel moved by at most ``distance`` per axis (Δx is tanh-bounded per
        axis) lands in an occupied voxel of the result."""
        steps = math.ceil(distance / self.voxel)
        if steps <= 0:
            return self
        grown = F.max_pool3d(self.occupied[None, None].float(), 2 * steps + 1, stride=1, padding=steps)  # (1, 1, G, G, G)
        return OccupancyGrid(occupied=grown[0, 0] > 0, radius=self.radius)

    @cached_property
    def bounds(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The box around the occupied voxels: lo (3,), hi (3,) corners; an empty box (lo > hi) when none is.
        Computed once per grid (a grid is not modified after it is made)."""
        cells = self.occupied.nonzero().float()  # (K, 3)
        if cells.shape[0] == 0:
            return torch.full((3,), 1.0), torch.full((3,), -1.0)
        return cells.min(0).values * self.voxel - self.radius, (cells.max(0).values + 1) * self.voxel - self.radius

    @cached_property
    def fills_bounds(self) -> bool:
        """Whether the occupied voxels fill their box (a fog fills the grid; an empty grid fills its empty box)."""
        cells = self.occupied.nonzero()  # (K, 3)
        if cells.shape[0] == 0:
            return True
        return cells.shape[0] == int((cells.max(0).values - cells.min(0).values + 1).prod())

    def ray_intervals(self, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float):
        """The depths over which rays (R, 3) cross occupied voxels.

        Returns:
            enter (R,), leave (R,) within [near, far], and crossed (R,) bool: False for a ray that meets no occupied
            voxel (its interval is meaningless).
        """
        enter, leave = box_interval(origins, dirs, *self.bounds, near, far)  # (R,) each
        if self.fills_bounds:  # the box is the occupied region: its intervals are exact, no march needed
            return enter, leave, leave > enter
        return self.march(origins, dirs, enter, leave)

    def march(self, origins: torch.Tensor, dirs: torch.Tensor, enter: torch.Tensor, leave: torch.Tensor):
        """Rays (R, 3) marched over [enter, leave] (R,) (their crossing of the occupied voxels' box) at steps of at
        most half a voxel, with a boolean lookup per step (all rays at once): (enter, leave, crossed) of
        :meth:`ray_intervals`, the interval spanning the first and last occupied step.

        Any point of the ray whose half-voxel neighbourhood is occupied lies inside the interval (a step falls
        within half a voxel of it), so a grid dilated by half a voxel beyond the region that matters loses
        nothing of it.
        """
        size = self.occupied.shape[0]
        steps = max(2, math.ceil(float((leave - enter).max()) / (0.5 * self.voxel)) + 1)
        stride = (leave - enter) / (steps - 1)  # (R,)
        start = (origins + dirs * enter[:, None] + self.radius) / self.voxel  # (R, 3) in voxels from the grid's corner
        step = dirs * (stride / self.voxel)[:, None]  # (R, 3)
        k = torch.arange(steps, dtype=dirs.dtype, device=dirs.device)
        cells = torch.addcmul(start[:, None], step[:, None], k[:, None]).clamp_(0, size - 1).floor_()  # (R, T, 3)
        index = (cells @ cells.new_tensor([size * size, size, 1.0])).long()  # (R, T) flat voxel index, exact in fp32
        hits = torch.take(self.occupied, index)  # (R, T) bool
        ones = hits.to(torch.uint8)  # argmax returns the first maximum: the first occupied step
        first, last = ones.argmax(1), steps - 1 - ones.flip(1).argmax(1)
        return enter + first * stride, enter + last * stride, hits.any(1)


def occupancy_grid(density: "callable", radius: float, resolution: int, path_length: float) -> OccupancyGrid:
    """The voxels whose centre holds a density that could add visible opacity.

    Args:
        density: points (1, M, 3) -> densities (1, M, 1).
        radius: the grid covers [-radius, radius]^3 (every ray sample lies inside).
        resolution: voxels per side.
        path_length: the longest ray segment; a density below ``OPACITY_EPSILON / path_length`` is empty.
    """
    centres = (torch.arange(resolution) + 0.5) / resolution * 2 * radius - radius
    grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(1, -1, 3)  # (1, G^3, 3)
    occupied = density(grid)[0, :, 0] > OPACITY_EPSILON / path_length  # (G^3,)
    return OccupancyGrid(occupied=occupied.reshape(resolution, resolution, resolution), radius=radius)


def box_interval(origins, dirs, lo, hi, near: float, far: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where rays (..., 3) cross the box [lo, hi] within [near, far]: enter (...), leave (...) with leave >= enter
    (equal for a ray that misses the box, and for every ray when the box is empty, lo > hi)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t_lo, t_hi = (lo - origins) / safe, (hi - origins) / safe  # (..., 3) the planes of the slabs
    forward = safe > 0  # a ray enters each slab through its lower plane when it moves up that axis
    enter = torch.where(forward, t_lo, t_hi).amax(-1).clamp(near, far)
    leave = torch.where(forward, t_hi, t_lo).amin(-1).clamp(near, far)
    return enter, torch.maximum(leave, enter)


def interval_depths(enter: torch.Tensor, leave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``num_samples`` bin-centred depths per ray in [enter, leave] (K,): (K, S, 1)."""
    bins = (torch.arange(num_samples, device=enter.device, dtype=enter.dtype) + 0.5) / num_samples  # (S,)
    return (enter[:, None] + (leave - enter)[:, None] * bins).unsqueeze(-1)


def empty_ray_depth(config) -> float:
    """The depth the reference renderer gives a ray that sees nothing: ``composite`` falls back to the farthest
    sample, which is the last stratified one (importance samples stay between the stratified ones)."""
    return config.ray_near + (config.ray_far - config.ray_near) * (config.num_coarse - 0.5) / config.num_coarse

