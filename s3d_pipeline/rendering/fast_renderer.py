"""The fast inference path: the same component weights as the reference path, rearranged for a CPU.

The reference path (``S3DNeRFPipeline.render_frames``, what training uses) evaluates every network exactly as
written. This engine produces the same frames up to a measured error (``s3d-nerf bench`` reports the PSNR
between the two) and moves all per-identity work out of the per-frame loop:

* **Pre-summed tri-plane.** The four tri-plane scales are resampled once per identity onto the finest grid
  (grown by a border where the coarser scales' zero padding fades out) and summed: a point
  needs one bilinear lookup instead of four. Exact for the finest scale; the coarser scales' bilinear kinks
  are smoothed within one fine texel.
* **One gather for all planes.** A lookup is one ``embedding_bag`` over a channels-last table of texels:
  12 weighted rows per point (3 planes x 4 corners, the plane mean folded into the weights), rather than
  ``grid_sample`` over channel-first planes. The deformation planes use the same lookup.
* **Occupancy-grid samples, empty rays skipped.** At identity time the model's own (undeformed) density is
  evaluated on a coarse grid; the voxels that could add visible opacity, dilated by the largest Δx the
  deformation field can produce, are kept as a boolean grid. Per frame every ray is marched through the grid
  (a boolean lookup every half voxel, all rays at once) to find the depths over which it crosses occupied
  voxels; all ``num_samples`` samples of the ray go inside that interval, in one pass (no coarse network pass
  for importance sampling). Rays that cross no occupied voxel are dropped before the lookups and MLPs (the
  evaluated rays are packed into one batch) and get what the reference gives a ray that sees nothing.
* **Split first convolutions.** Where a convolution reads per-identity channels beside per-frame ones
  (the deformation U-Net's input, the super-resolution's source features) it is split by linearity:
  the per-identity part is convolved once and cached. The U-Net's per-frame condition is convolved once per
  frame instead of once per plane.
* **bf16 per-point MLPs, rearranged** (:class:`PointMLPs`): the displacement and decoder MLPs run in bf16 (where
  the hardware computes bf16; float32 elsewhere, see :mod:`s3d_pipeline.hardware`) on
  weights converted once per identity, their first layers split by input so that no per-point concatenation is
  built, the decoder's outputs computed as contiguous density and feature blocks, activations in place. The
  tri-plane texels are bf16 too; texel coordinates and the transmittance products stay fp32 (the features'
  weighted sum along each ray is bf16). Gather indices are int32. Convolutions run fp32 in channels-last layout
  (bf16 convolutions measured slower on this CPU, no AMX).
* **Cache-sized blocks.** The evaluated rays go through sampling, Δx, decoding and integration in blocks of
  ``rays_per_block`` and the super-resolution runs ``frames_per_block`` frames at a time, so that per-point and
  per-pixel intermediates stay in the CPU's cache instead of streaming a chunk's hundreds of MB through memory.
* **Upsampling folded into the next convolution.** The super-resolution's last stage convolves a x2 bilinear
  upsampling; both are linear, so the pair is one convolution of the low-resolution input into the four output
  phases (:func:`upsampled_conv`), exact up to rounding, and the upsampled image is never built.
* **Freed memory kept for reuse** (:mod:`.allocator`): the per-block buffers come back from malloc's heap instead
  of fresh, zero-filled pages from the OS.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..hardware import fast_compute_dtype
from ..models.layers import encoding_angles
from .allocator import retain_freed_memory
from .cameras import frontal_cam2world
from .rays import pixel_rays
from .volume import composite

# A voxel counts as occupied when its density could make a whole ray more than this opaque.
OPACITY_EPSILON = 1e-3


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


class SplitConv(nn.Module):
    """A convolution over ``cat([per_frame, per_identity])`` computed as two: the per-identity half is
    convolved once (:meth:`cache`, bias included) and added to every frame's half (linearity of convolution)."""

    def __init__(self, conv: nn.Conv2d, per_frame_channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.split = per_frame_channels

    def cache(self, per_identity: torch.Tensor) -> torch.Tensor:
        """The per-identity half, channels-last like the per-frame half it is added to (an add across layouts is
        several times slower)."""
        conv = self.conv
        cached = F.conv2d(per_identity, conv.weight[:, self.split :], conv.bias, conv.stride, conv.padding)
        return cached.contiguous(memory_format=torch.channels_last)

    def forward(self, per_frame: torch.Tensor, cached: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return F.conv2d(per_frame, conv.weight[:, : self.split], None, conv.stride, conv.padding).add_(cached)

    def upsampled(self, low: torch.Tensor, cached: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of the x2 bilinear upsampling of ``low``, by :func:`upsampled_conv` (``folded`` is
        :func:`fold_upsampling` of the per-frame half of the weight)."""
        return upsampled_conv(low, self.conv.weight[:, : self.split], folded).add_(cached)


# How a 3x3 convolution's row taps (-1, 0, +1) read a x2 bilinear upsampling (align_corners=False) of rows
# (i-1, i, i+1), for the even (phase 0) and odd (phase 1) output rows 2i + phase: _UPSAMPLE_TAPS[phase, tap, row].
_UPSAMPLE_TAPS = torch.tensor(
    [
        [[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.75, 0.25]],
        [[0.25, 0.75, 0.0], [0.0, 0.75, 0.25], [0.0, 0.25, 0.75]],
    ]
)


def fold_upsampling(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's weight (Co, Ci, 3, 3) -> the weights (4 Co, Ci, 3, 3) that give its output on a x2
    bilinear upsampling directly from the low-resolution input, one block of Co channels per output phase
    (row parity, column parity): see :func:`upsampled_conv`."""
    taps = _UPSAMPLE_TAPS.to(weight)
    folded = torch.einsum("ayp,bxq,oiyx->aboipq", taps, taps, weight)  # (2, 2, Co, Ci, 3, 3)
    return folded.reshape(4 * weight.shape[0], *weight.shape[1:])


def upsampled_conv(low: torch.Tensor, weight: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
    """``conv2d(interpolate(low, scale_factor=2, mode="bilinear"), weight, padding=1)`` without building the
    upsampled image: ``folded`` (:func:`fold_upsampling` of ``weight``) convolves the low-resolution input (N, Ci,
    H, W), edge-replicated as the interpolation clamps, into the four output phases, which are interleaved into
    (N, Co, 2H, 2W) (channels-last). The one-pixel outer ring, where the convolution's zero padding of the
    upsampled image differs from the replicated edge, is computed the plain way on two-row strips."""
    n, _, height, width = low.shape
    channels = weight.shape[0]
    phases = F.conv2d(F.pad(low, (1, 1, 1, 1), mode="replicate"), folded)  # (N, 4 Co, H, W), channels (row, col, Co)
    by_phase = phases.permute(0, 2, 3, 1).reshape(n, height, width, 2, 2, channels)  # (N, H, W, row, col, Co)
    interleaved = phases.new_empty(n, height, 2, width, 2, channels)  # (N, H, row, W, col, Co)
    # One copy per row parity, each moving contiguous (col, Co) runs: 8x faster here than one 6-D permuted copy.
    for row in range(2):
        interleaved[:, :, row] = by_phase[:, :, :, row]
    out = interleaved.view(n, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)  # (N, Co, 2H, 2W), channels-last
    plain = lambda strip: F.conv2d(F.interpolate(strip, scale_factor=2.0, mode="bilinear", align_corners=False), weight, padding=1)  # noqa: E731
    out[:, :, :1] = plain(low[:, :, :2])[:, :, :1]
    out[:, :, -1:] = plain(low[:, :, -2:])[:, :, -1:]
    out[:, :, :, :1] = plain(low[:, :, :, :2])[:, :, :, :1]
    out[:, :, :, -1:] = plain(low[:, :, :, -2:])[:, :, :, -1:]
    return out


@dataclass
class PointMLPs:
    """The per-point MLPs' weights rearranged for the fast path, in its compute dtype, as (in, out) matrices for
    ``addmm``. The first layers are split by input, so no per-point concatenation is built: the displacement MLP's
    into its context and position halves (the position half into the rows of x and of its sines and cosines, so
    the positional encoding is never concatenated either), and the decoder's last layer into the density row and
    the feature rows
    (each output contiguous; an elementwise op over a strided slice is several times slower). The decoder's
    density offset (-1) is folded into its bias; the features' affine map ``s * (1 + 2e-3) - 1e-3`` is applied
    after integration (it commutes with the weighted sum). Algebraically the same networks; only rounding differs.
    """

    disp_context: Optional[torch.Tensor]  # (Cd or A, H), with disp_bias (H,); None in mode "none"
    disp_position: Optional[Tuple[torch.Tensor, ...]]  # rows of x (3, H), and of sin and cos (3L, H) each when L > 0
    disp_bias: Optional[torch.Tensor]
    disp_hidden: Optional[Tuple[torch.Tensor, torch.Tensor]]  # (H, H), (H,)
    disp_out: Optional[Tuple[torch.Tensor, torch.Tensor]]  # (H, 3), (3,)
    dec_in: Tuple[torch.Tensor, torch.Tensor]  # (C, H), (H,)
    dec_density: Tuple[torch.Tensor, torch.Tensor]  # (H, 1), (1,)
    dec_features: Tuple[torch.Tensor, torch.Tensor]  # (H, F), (F,)

    @classmethod
    def from_modules(cls, deformation_field, renderer, dtype: torch.dtype) -> "PointMLPs":
        first, last = renderer.decoder[0], renderer.decoder[2]  # Linear, Softplus, Linear
        as_mm = lambda w, b: (w.t().to(dtype).contiguous(), b.to(dtype))  # noqa: E731
        dec_in = as_mm(first.weight, first.bias)
        dec_density = as_mm(last.weight[:1], last.bias[:1] - 1.0)
        dec_features = as_mm(last.weight[1:], last.bias[1:])
        if deformation_field.config.mode == "none":
            return cls(None, None, None, None, None, dec_in, dec_density, dec_features)
        layers = deformation_field.displacement_mlp  # Linear, SiLU, Linear, SiLU, Linear
        num_frequencies = deformation_field.config.position_frequencies
        w1 = layers[0].weight  # (H, context + position): the MLP reads cat([context, positional_encoding(x)])
        split = w1.shape[1] - 3 * (1 + 2 * num_frequencies)
        context, bias = as_mm(w1[:, :split], layers[0].bias)
        # positional_encoding's layout: [x (3) | per axis: sin of its L angles, cos of its L angles].
        position = w1[:, split:].t()  # (3 (1 + 2L), H)
        rows = [position[:3]]
        if num_frequencies:
            per_axis = position[3:].reshape(3, 2, num_frequencies, -1)  # (3, sin | cos, L, H)
            rows += [per_axis[:, 0].flatten(0, 1), per_axis[:, 1].flatten(0, 1)]  # (3L, H) each, axis-major
        position = tuple(r.to(dtype).contiguous() for r in rows)
        return cls(context, position, bias, as_mm(layers[2].weight, layers[2].bias), as_mm(layers[4].weight, layers[4].bias), dec_in, dec_density, dec_features)


@dataclass
class FastIdentity:
    """The per-identity cache of the fast path.

    Attributes:
        triplane: the pre-summed multi-scale tri-plane as a table.
        occupancy: the voxels that can add visible opacity, grown by the largest Δx and one voxel: they bound
            the samples of each ray, and a ray that meets none is not evaluated.
        unet_identity: (3, c0, R, R) the deformation U-Net's first convolution over the identity's planes.
        sr_source: the super-resolution's first convolution of each stage over the source features.
        sr_folded: the last stage's per-frame weights folded with the x2 upsampling before it (taken when the
            cache is built).
        mlps: the per-point MLPs' weights as the fast path computes with them (taken when the cache is built).
    """

    triplane: PlaneTable
    occupancy: OccupancyGrid
    unet_identity: Optional[torch.Tensor]
    sr_source: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    sr_folded: torch.Tensor
    mlps: PointMLPs


@dataclass
class FastFrames:
    """A rendered chunk: frames (n, 3, R, R) in [0, 1], depth (n, r, r), cross-modal attention (n, g, g) or None."""

    frames: torch.Tensor
    depth: torch.Tensor
    attention: Optional[torch.Tensor]


class FastRenderer:
    """The per-frame path (a_dri -> Δx -> volume rendering -> super-resolution) of a pipeline's components,
    rearranged for speed. It holds references to the components, not copies: same weights, no retraining.

    Args:
        audio_encoder, deformation_field, renderer, super_resolution: the pipeline's components.
        num_samples: samples per ray, all inside the ray's occupied interval (the reference uses ``num_coarse`` +
            ``num_importance``). 12 by default: 10 ran at 28.5 FPS (12: 22.6) with frames 41.0 dB from the
            reference's, but cost the held-out mouth metrics (mouth-opening correlation 0.617 -> 0.486, M-LMD
            1.62 -> 1.80 px; ``docs/performance.md``).
        dtype: compute type of the per-point MLPs and the tri-plane texels (``torch.bfloat16`` or ``torch.float32``);
            by default bf16 where the hardware computes it and float32 elsewhere (:mod:`s3d_pipeline.hardware`).
        occupancy_resolution: voxels per side of the identity's occupancy grid.
        rays_per_block: rays rendered together (their samples' intermediates should fit in the CPU's cache).
        frames_per_block: frames super-resolved together (likewise).
    """

    def __init__(
        self,
        audio_encoder,
        deformation_field,
        renderer,
        super_resolution,
        num_samples: int = 12,
        dtype: Optional[torch.dtype] = None,
        occupancy_resolution: int = 32,
        rays_per_block: int = 2048,
        frames_per_block: int = 2,
    ) -> None:
        retain_freed_memory()  # per-frame buffers are reused instead of page-faulted afresh (see .allocator)
        self.audio_encoder = audio_encoder
        self.deformation_field = deformation_field
        self.renderer = renderer
        self.super_resolution = super_resolution
        self.num_samples = num_samples
        self.dtype = dtype or fast_compute_dtype(next(renderer.parameters()).device)
        self.occupancy_resolution = occupancy_resolution
        self.rays_per_block = rays_per_block
        self.frames_per_block = frames_per_block
        self.workers: Optional[int] = None  # render_frames' worker threads; None: torch.get_num_threads()
        self._pool: Optional[ThreadPoolExecutor] = None  # made on first use
        self._pool_workers = 0
        sr = super_resolution
        feature_dim = renderer.config.feature_dim
        self.sr_convs = (
            SplitConv(sr.coarse[0][0], feature_dim + 1),
            SplitConv(sr.up1[0], sr.config.channels[0]),
            SplitConv(sr.up2[0], sr.config.channels[1]),
        )
        if deformation_field.uses_planes:
            self.unet_first = deformation_field.unet.enc0[0]

    # ------------------------------------------------------------------ per identity
    @torch.no_grad()
    def prepare(self, triplanes: Tuple[torch.Tensor, ...], source_features: Tuple[torch.Tensor, ...]) -> FastIdentity:
        """Everything the fast path can compute once per identity (batch-1 encodings)."""
        cfg = self.renderer.config
        table = presum_triplanes(triplanes, cfg.triplane_extent)
        df = self.deformation_field
        margin = df.config.max_displacement if df.config.mode != "none" else 0.0
        occupancy = occupancy_grid(
            lambda p: self.renderer.decode(table.lookup(p))[0], sample_radius(cfg), self.occupancy_resolution, cfg.ray_far - cfg.ray_near
        )
        # Half a voxel because density between voxel centres can pass the threshold next to an occupied voxel, half a
        # voxel for the half-voxel steps of the ray march (see ``OccupancyGrid.ray_intervals``).
        occupancy = occupancy.dilated(margin + occupancy.voxel)
        table = dataclasses.replace(table, rows=table.rows.to(self.dtype))  # texels in the compute dtype
        unet_identity = None
        if df.uses_planes:
            res = df.config.unet_resolution
            planes = df.identity_planes(triplanes)[0]  # (3, C, R, R)
            plane_id = df.plane_embedding[:, :, None, None].expand(-1, -1, res, res)  # (3, 8, R, R)
            weight = self.unet_first.weight
            c = planes.shape[1]
            per_frame = weight.shape[1] - c - plane_id.shape[1]
            # U-Net input channels: [planes (C) | condition + audio (per frame) | plane embedding (8)].
            unet_identity = F.conv2d(planes, weight[:, :c], self.unet_first.bias, padding=1) + F.conv2d(
                plane_id, weight[:, c + per_frame :], None, padding=1
            )  # (3, c0, R, R)
        src0, src1, src2 = source_features
        sr_source = tuple(conv.cache(src) for conv, src in zip(self.sr_convs, (src2, src1, src0)))
        mlps = PointMLPs.from_modules(df, self.renderer, self.dtype)
        up2 = self.sr_convs[2]
        sr_folded = fold_upsampling(up2.conv.weight[:, : up2.split])
        return FastIdentity(
            triplane=table, occupancy=occupancy, unet_identity=unet_identity, sr_source=sr_source, sr_folded=sr_folded, mlps=mlps
        )

    # ------------------------------------------------------------------ per frame
    def deformation_planes(self, identity_slots, fast: FastIdentity, a_dri):
        """(deformation planes (N, 3, Cd, R, R) or None, attention map (N, g, g) or None)."""
        df = self.deformation_field
        if not df.uses_planes:
            return None, None
        n, res = a_dri.pooled.shape[0], df.config.unet_resolution
        condition, attention_map, _ = df.frame_condition(identity_slots, a_dri.tokens)  # (N, D, R, R)
        audio_map = a_dri.pooled[:, :, None, None].expand(-1, -1, res, res)
        per_frame = torch.cat([condition, audio_map], dim=1).contiguous(memory_format=torch.channels_last)  # (N, D+A, R, R)
        c = df.config.plane_channels  # U-Net input channels: [planes (C) | condition + audio (per frame) | plane embedding]
        frame_part = F.conv2d(per_frame, self.unet_first.weight[:, c : c + per_frame.shape[1]], None, padding=1)  # (N, c0, R, R)
        first = (frame_part[:, None] + fast.unet_identity[None]).flatten(0, 1)  # (N*3, c0, R, R)
        enc0 = df.unet.enc0
        e0 = enc0[2](enc0[1](first))  # GroupNorm, SiLU of the first block
        planes = df.unet.from_first_level(e0.contiguous(memory_format=torch.channels_last))
        return planes.reshape(n, 3, -1, res, res), attention_map

    def occupancy(self, fast: FastIdentity, mouth_amplitude: float) -> OccupancyGrid:
        """The identity's occupancy grid, grown further when a mouth amplitude above 1 moves points farther than the
        largest Δx it was grown by."""
        df = self.deformation_field
        extra = (mouth_amplitude - 1) * df.config.max_displacement if df.config.mode != "none" else 0.0
        return fast.occupancy.dilated(extra)  # the grid itself when extra <= 0

    def deformation_table(self, deform_planes: Optional[torch.Tensor]) -> Optional[PlaneTable]:
        """A chunk's deformation planes (N, 3, Cd, R, R) as one gather table in the compute dtype (None passes)."""
        if deform_planes is None:
            return None
        return PlaneTable.from_planes(deform_planes.to(self.dtype), self.deformation_field.config.triplane_extent)

    def displace(self, fast: FastIdentity, points, frames, deform_table, audio_pooled, mouth_amplitude: float) -> torch.Tensor:
        """Points (M, 3) of several frames (``frames`` (M,): the frame of each point) moved by their frame's
        mouth_amplitude * Δx; ``deform_table`` is :meth:`deformation_table` of the chunk (None for the naive
        variant, which reads ``audio_pooled`` (N, A))."""
        df, mlps, dtype = self.deformation_field, fast.mlps, self.dtype
        if df.config.mode == "none" or mouth_amplitude == 0:
            return points
        if deform_table is not None:
            context = deform_table.lookup(points[None], frames[None])[0]  # (M, Cd)
            hidden = torch.addmm(mlps.disp_bias, context, mlps.disp_context)  # (M, H)
        else:  # the naive variant reads a_dri per point: its share of the first layer is one row per frame
            hidden = torch.addmm(mlps.disp_bias, audio_pooled.to(dtype), mlps.disp_context)[frames]  # (M, H)
        # The positional encoding's share of the first layer, term by term (no per-point concatenation).
        scaled = points / df.config.triplane_extent  # (M, 3)
        hidden.addmm_(scaled.to(dtype), mlps.disp_position[0])
        if len(mlps.disp_position) > 1:
            angles = encoding_angles(scaled, df.config.position_frequencies).flatten(1)  # (M, 3L), axis-major
            hidden.addmm_(angles.sin().to(dtype), mlps.disp_position[1]).addmm_(angles.cos_().to(dtype), mlps.disp_position[2])
        hidden = F.silu(hidden, inplace=True)
        hidden = F.silu(torch.addmm(mlps.disp_hidden[1], hidden, mlps.disp_hidden[0]), inplace=True)
        raw = torch.addmm(mlps.disp_out[1], hidden, mlps.disp_out[0])  # (M, 3)
        return points + (mouth_amplitude * df.config.max_displacement) * torch.tanh(raw.float())

    def shade(self, fast: FastIdentity, points: torch.Tensor, depths: torch.Tensor):
        """Decode and integrate the samples of K rays: points (K, S, 3) (displaced), depths (K, S, 1) ->
        features (K, F), depth (K, 1), opacity (K, 1)."""
        num_rays, num_samples, _ = points.shape
        mlps = fast.mlps
        # Texel coordinates stay fp32 (bf16 ones are too coarse); the texels are in the compute dtype.
        features = fast.triplane.lookup(points.reshape(1, num_rays * num_samples, 3))[0]  # (K*S, C)
        hidden = F.softplus(torch.addmm(mlps.dec_in[1], features, mlps.dec_in[0]))  # (K*S, H)
        density = F.softplus(torch.addmm(mlps.dec_density[1], hidden, mlps.dec_density[0]))  # (K*S, 1)
        sigmoid = torch.addmm(mlps.dec_features[1], hidden, mlps.dec_features[0]).sigmoid_()  # (K*S, F)
        density = density.float().reshape(1, num_rays, num_samples, 1)
        # Integrate the densities alone, then the features in one weighted sum: an interval's feature is the mean of
        # its two ends, so sample j carries half the weights of the intervals on either side of it.
        result = composite(density, density[..., :0], depths[None])
        weights = result.weights[0, ..., 0]  # (K, S), the last one zero
        per_sample = 0.5 * (weights + F.pad(weights[:, :-1], (1, 0)))  # (K, S), summing to the opacity
        summed = torch.bmm(per_sample[:, None].to(sigmoid.dtype), sigmoid.reshape(num_rays, num_samples, sigmoid.shape[-1]))[:, 0].float()  # (K, F)
        features = summed * (1 + 2e-3) - 1e-3 * result.opacity[0]  # the decoder's s * (1 + 2e-3) - 1e-3, integrated
        return features, result.depth[0], result.opacity[0]

    def render_rays(self, fast: FastIdentity, rays, origins, dirs, enter, leave, deform_table, audio_pooled, mouth_amplitude: float):
        """Samples, Δx, decoding and integration of the rays numbered ``rays`` (K,) among the chunk's ``origins``,
        ``dirs`` (B*N, 3) and occupied intervals ``enter``, ``leave`` (B*N,): (features (K, F), depth (K, 1),
        opacity (K, 1))."""
        num_rays, num_samples = rays.shape[0], self.num_samples
        res = self.renderer.config.ray_resolution
        depths = interval_depths(enter[rays], leave[rays], num_samples)  # (K, S, 1)
        points = origins[rays, None] + dirs[rays, None] * depths  # (K, S, 3)
        frames = (rays // (res * res)).repeat_interleave(num_samples)  # (K*S,) the frame of each point
        points = self.displace(fast, points.reshape(num_rays * num_samples, 3), frames, deform_table, audio_pooled, mouth_amplitude)
        return self.shade(fast, points.reshape(num_rays, num_samples, 3), depths)

    def render(self, fast: FastIdentity, deform_planes, audio_pooled, cam2world: torch.Tensor, mouth_amplitude: float):
        """Volume rendering: (features (N, F, r, r), depth (N, 1, r, r), opacity (N, 1, r, r)).

        Only the rays that cross an occupied voxel are evaluated, with their samples inside the occupied interval;
        the others see nothing, as in the reference renderer: zero features and opacity, and the reference's depth.
        The evaluated rays go through in blocks of ``rays_per_block``, so that each block's per-point intermediates
        stay in the CPU's cache.
        """
        cfg = self.renderer.config
        batch, res = cam2world.shape[0], cfg.ray_resolution
        origins, dirs = (t.reshape(-1, 3) for t in pixel_rays(cam2world, res, cfg.focal))  # (B*N, 3) each
        enter, leave, crossed = self.occupancy(fast, mouth_amplitude).ray_intervals(origins, dirs, cfg.ray_near, cfg.ray_far)
        rays = crossed.nonzero()[:, 0]  # (K,) the rays evaluated, frame-major
        deform_table = self.deformation_table(deform_planes)
        blocks = [
            self.render_rays(fast, block, origins, dirs, enter, leave, deform_table, audio_pooled, mouth_amplitude)
            for block in rays.split(self.rays_per_block)
        ]
        features, depth, opacity = (torch.cat(parts) for parts in zip(*blocks))  # (K, F), (K, 1), (K, 1)

        def to_image(values: torch.Tensor, empty: float) -> torch.Tensor:
            """Per evaluated ray (K, C) -> (B, C, r, r), the skipped rays filled with ``empty``."""
            every_ray = values.new_full((batch * res * res, values.shape[1]), empty).index_copy_(0, rays, values)  # (B*N, C)
            return every_ray.reshape(batch, res * res, -1).transpose(1, 2).reshape(batch, -1, res, res)

        return to_image(features, 0.0), to_image(depth, empty_ray_depth(cfg)), to_image(opacity, 0.0)

    def super_resolve(self, fast: FastIdentity, features, opacity, source) -> torch.Tensor:
        """Coarse render (N, F, r, r), (N, 1, r, r) -> the frame (N, 3, R, R) in [-1, 1], ``frames_per_block``
        frames at a time: a frame's activations at the x4 resolution (~12 MB) stay in the CPU's cache where a
        chunk's would not (GroupNorm is per frame, so the blocks give the same frames)."""
        step = self.frames_per_block
        return torch.cat([self.super_resolve_block(fast, features[i : i + step], opacity[i : i + step], source) for i in range(0, features.shape[0], step)])

    def super_resolve_block(self, fast: FastIdentity, features, opacity, source) -> torch.Tensor:
        """:meth:`super_resolve` of a few frames, with the source halves of the convolutions cached."""
        sr = self.super_resolution
        coarse_conv, up1_conv, up2_conv = self.sr_convs
        cached_coarse, cached_up1, cached_up2 = fast.sr_source
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
        x = torch.cat([features, opacity], dim=1).contiguous(memory_format=torch.channels_last)
        silu = lambda t: F.silu(t, inplace=True)  # noqa: E731  (on the GroupNorm's fresh output)
        x = silu(sr.coarse[0][1](coarse_conv(x, cached_coarse)))  # conv, GroupNorm, SiLU
        x = silu(sr.coarse[1][1](sr.coarse[1][0](x)))
        x = silu(sr.up1[1](up1_conv(up(x), cached_up1)))
        x = silu(sr.up2[1](up2_conv.upsampled(x, cached_up2, fast.sr_folded)))  # the x4 stage's upsampling folded in
        return sr.compose(sr.out(x), features, opacity, source).image

    def render_frames(self, identity, fast: FastIdentity, audio_windows, cam2world, mouth_amplitude: float = 1.0) -> FastFrames:
        """The whole per-frame path for a chunk: windows (n, F, W), cam2world (n, 4, 4) -> frames.

        With ``torch.get_num_threads()`` > 1 the chunk is split into that many parts by frame, rendered at once by as
        many worker threads, each running its ops on one thread: this CPU path's small ops scale poorly across
        intra-op threads (measured: a chunk on 2 intra-op threads took 1.8x as long as its two halves on two 1-thread
        workers). The frames are the same either way (each frame's computation does not depend on the others)."""
        workers = min(self.workers or torch.get_num_threads(), audio_windows.shape[0])
        if workers <= 1:
            return self.render_part(identity, fast, audio_windows, cam2world, mouth_amplitude)
        if self._pool is None or self._pool_workers != workers:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="s3d-fast", initializer=torch.set_num_threads, initargs=(1,))
            self._pool_workers = workers
        parts = zip(audio_windows.tensor_split(workers), cam2world.tensor_split(workers))
        done = list(self._pool.map(lambda part: self.render_part(identity, fast, *part, mouth_amplitude), parts))
        attention = None if done[0].attention is None else torch.cat([d.attention for d in done])
        return FastFrames(frames=torch.cat([d.frames for d in done]), depth=torch.cat([d.depth for d in done]), attention=attention)

    @torch.no_grad()  # in the calling thread: grad mode is per thread
    def render_part(self, identity, fast: FastIdentity, audio_windows, cam2world, mouth_amplitude: float) -> FastFrames:
        """:meth:`render_frames` of some frames, on the calling thread."""
        a_dri = self.audio_encoder(audio_windows)
        deform_planes, attention = self.deformation_planes(identity.slots, fast, a_dri)
        features, depth, opacity = self.render(fast, deform_planes, a_dri.pooled, cam2world, mouth_amplitude)
        image = self.super_resolve(fast, features, opacity, identity.source)
        frames = image.clamp(-1, 1).add(1).div(2)
        return FastFrames(frames=frames, depth=depth[:, 0], attention=attention)
