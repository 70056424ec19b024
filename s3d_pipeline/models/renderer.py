"""Tri-plane renderer: NeRF decoder MLP + volume rendering of a (deformed) multi-scale tri-plane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from ..rendering.cameras import FOCAL, RAY_FAR, RAY_NEAR
from ..rendering.rays import pixel_rays
from ..rendering.samplers import importance_depths, stratified_depths
from ..rendering.triplane import sample_multiscale
from ..rendering.volume import composite, sort_samples

DisplacementFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class RendererOutput(BaseOutput):
    """Attributes:
    features: (B, F, R, R) feature image; channels 0..2 are RGB in [0, 1].
    depth: (B, 1, R, R) expected camera distance along the ray.
    opacity: (B, 1, R, R) accumulated alpha.
    displacement: (B, R*R*S, 3) Δx at the fine samples (for the deformation regulariser), or None.
    canonical: (B, 3, R, R) the weight-summed lookup positions x + Δx (canonical frame), whose projection into the
        source is the ray's correspondence (:mod:`s3d_pipeline.rendering.warp`).
    """

    features: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    displacement: Optional[torch.Tensor] = None
    canonical: Optional[torch.Tensor] = None


class TriPlaneRenderer(ModelMixin, ConfigMixin):
    """Renders a feature image of the inner face from a multi-scale tri-plane and a camera.

    Rays (EG3D-like, ours): ``ray_resolution``^2 rays between ``ray_near`` and ``ray_far``; ``num_coarse``
    stratified samples, then ``num_importance`` samples drawn from the coarse weights. Every sample is moved by
    the deformation field's Δx before the tri-plane lookup.

    Args:
        plane_channels: C of the tri-plane.
        hidden_dim: width of the decoder MLP.
        feature_dim: F, channels of the rendered feature image (first three are RGB).
        triplane_extent: half-size of the cube the planes cover.
    """

    @register_to_config
    def __init__(
        self,
        plane_channels: int = 32,
        hidden_dim: int = 64,
        feature_dim: int = 32,
        triplane_extent: float = 0.35,
        ray_resolution: int = 64,
        num_coarse: int = 24,
        num_importance: int = 24,
        ray_near: float = RAY_NEAR,
        ray_far: float = RAY_FAR,
        focal: float = FOCAL,
    ) -> None:
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(plane_channels, hidden_dim), nn.Softplus(), nn.Linear(hidden_dim, 1 + feature_dim))

    # decode(): density = softplus(raw_0 + DENSITY_SHIFT); features = sigmoid(raw_1:) stretched by FEATURE_MARGIN on
    # either side of [0, 1], so that 0 and 1 are reachable with finite logits (EG3D does the same).
    DENSITY_SHIFT = -1.0
    FEATURE_MARGIN = 1e-3

    @property
    def decoder_layers(self) -> Tuple[nn.Linear, nn.Linear]:
        """The decoder MLP's two linear layers (Softplus between them); the last one's output 0 is the raw density,
        the others the raw features."""
        return self.decoder[0], self.decoder[2]

    def decode(self, features: torch.Tensor):
        """Tri-plane features (B, M, C) -> density (B, M, 1) >= 0 and features (B, M, F)."""
        raw = self.decoder(features)
        density = F.softplus(raw[..., :1] + self.DENSITY_SHIFT)
        feats = torch.sigmoid(raw[..., 1:]) * (1 + 2 * self.FEATURE_MARGIN) - self.FEATURE_MARGIN
        return density, feats

    def _query(self, triplanes, points: torch.Tensor, displacement_fn: Optional[DisplacementFn]):
        """points (B, N, S, 3) -> density, features with the lookup position x + Δx appended (B, N, S, F + 3), Δx
        (B, N*S, 3) or None."""
        b, n, s, _ = points.shape
        flat = points.reshape(b, n * s, 3)  # (B, N*S, 3)
        delta = displacement_fn(flat) if displacement_fn is not None else None
        lookup = flat if delta is None else flat + delta
        density, feats = self.decode(sample_multiscale(triplanes, lookup, self.config.triplane_extent))
        return density.reshape(b, n, s, 1), torch.cat([feats, lookup], dim=-1).reshape(b, n, s, -1), delta

    def forward(
        self,
        triplanes: Sequence[torch.Tensor],
        cam2world: torch.Tensor,
        displacement_fn: Optional[DisplacementFn] = None,
        generator: Optional[torch.Generator] = None,
        ray_resolution: Optional[int] = None,
        ray_window: Optional[Tuple[int, int, int]] = None,
    ) -> RendererOutput:
        """Render B views.

        Args:
            triplanes: per scale (B or 1, 3, C, H, W), in the tri-plane frame.
            cam2world: (B, 4, 4) cameras in the tri-plane frame (see ``cameras.relative_cam2world``).
            displacement_fn: maps points (B, M, 3) to Δx (B, M, 3); None renders undeformed.
            generator: jitters the samples within their bins (training); None samples deterministically.
            ray_resolution: override of the configured rays per side.
            ray_window: ``(top, left, size)``: render only this square window of the ray grid, at the full grid's
                ray spacing (training renders patches so the super-resolution sees the scale it runs at).
        """
        cfg = self.config
        res = ray_resolution or cfg.ray_resolution
        batch = cam2world.shape[0]
        origins, dirs = pixel_rays(cam2world, res, cfg.focal)  # (B, N, 3)
        side = res
        if ray_window is not None:
            top, left, side = ray_window
            if top < 0 or left < 0 or top + side > res or left + side > res:
                raise ValueError(f"ray_window {ray_window} does not fit a {res}x{res} ray grid")
            window = lambda t: t.reshape(batch, res, res, 3)[:, top : top + side, left : left + side].reshape(batch, -1, 3)  # noqa: E731
            origins, dirs = window(origins), window(dirs)  # (B, side*side, 3)
        num_rays = origins.shape[1]
        depths = stratified_depths(batch, num_rays, cfg.num_coarse, cfg.ray_near, cfg.ray_far, device=dirs.device, dtype=dirs.dtype, generator=generator)
        points = origins[:, :, None] + dirs[:, :, None] * depths  # (B, N, S, 3)
        density, feats, delta = self._query(triplanes, points, displacement_fn)
        if cfg.num_importance > 0:
            weights = composite(density, feats, depths).weights
            fine = importance_depths(depths, weights, cfg.num_importance, generator)
            fine_points = origins[:, :, None] + dirs[:, :, None] * fine
            fine_density, fine_feats, fine_delta = self._query(triplanes, fine_points, displacement_fn)
            depths, density, feats = sort_samples(
                torch.cat([depths, fine], 2), torch.cat([density, fine_density], 2), torch.cat([feats, fine_feats], 2)
            )
            if delta is not None:
                delta = torch.cat([delta, fine_delta], dim=1)
        result = composite(density, feats, depths)
        to_image = lambda t: t.transpose(1, 2).reshape(batch, -1, side, side)  # (B, N, C) -> (B, C, R, R)  # noqa: E731
        features, canonical = result.features.split([cfg.feature_dim, 3], dim=-1)
        return RendererOutput(
            features=to_image(features), depth=to_image(result.depth), opacity=to_image(result.opacity), displacement=delta, canonical=to_image(canonical)
        )
