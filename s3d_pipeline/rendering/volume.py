"""Volume integration of densities and features along rays (EG3D's mid-point quadrature)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Composite:
    features: torch.Tensor  # (B, N, C) accumulated features
    depth: torch.Tensor  # (B, N, 1) expected depth (weighted by opacity-normalised weights)
    opacity: torch.Tensor  # (B, N, 1) accumulated alpha in [0, 1]
    weights: torch.Tensor  # (B, N, S, 1) per-sample weights (the S-1 intervals padded to S)


def composite(densities: torch.Tensor, features: torch.Tensor, depths: torch.Tensor) -> Composite:
    """Integrate along sorted samples.

    Each interval between consecutive samples takes the mean density and feature of its two ends:
    ``alpha_i = 1 - exp(-sigma_i * delta_i)``, ``w_i = alpha_i * prod_{j<i} (1 - alpha_j)``.

    Args:
        densities: (B, N, S, 1) non-negative densities, sorted by depth.
        features: (B, N, S, C).
        depths: (B, N, S, 1) sorted depths.
    """
    # The quadrature runs in float32 also under bf16 autocast: products of transmittances need the precision.
    densities, features, depths = densities.float(), features.float(), depths.float()
    deltas = depths[:, :, 1:] - depths[:, :, :-1]  # (B, N, S-1, 1)
    sigma = 0.5 * (densities[:, :, 1:] + densities[:, :, :-1])
    feats = 0.5 * (features[:, :, 1:] + features[:, :, :-1])
    mid_depths = 0.5 * (depths[:, :, 1:] + depths[:, :, :-1])
    alpha = 1.0 - torch.exp(-sigma * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1.0 - alpha + 1e-10], dim=2), dim=2)
    weights = alpha * transmittance[:, :, :-1]  # (B, N, S-1, 1)
    opacity = weights.sum(dim=2)
    out_features = (weights * feats).sum(dim=2)
    depth = (weights * mid_depths).sum(dim=2) / opacity.clamp_min(1e-6)
    depth = torch.where(opacity > 1e-6, depth, depths[:, :, -1])
    padded = torch.cat([weights, torch.zeros_like(weights[:, :, :1])], dim=2)  # (B, N, S, 1)
    return Composite(out_features, depth, opacity, padded)


def sort_samples(depths: torch.Tensor, *values: torch.Tensor):
    """Sort samples of each ray by depth and apply the same order to every (B, N, S, C) tensor in ``values``."""
    order = torch.argsort(depths, dim=2)
    gather = lambda t: torch.gather(t, 2, order.expand(*order.shape[:3], t.shape[-1]))  # noqa: E731
    return (gather(depths), *(gather(v) for v in values))
