"""Depth samplers along rays: stratified coarse samples, then importance samples from the coarse weights."""

from __future__ import annotations

from typing import Optional

import torch


def stratified_depths(
    batch: int,
    num_rays: int,
    num_samples: int,
    near: float,
    far: float,
    *,
    device=None,
    dtype=torch.float32,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Evenly spaced depths in [near, far]: (B, N, S, 1). With a generator, each sample is jittered within its bin."""
    bins = torch.linspace(0.0, 1.0, num_samples + 1, device=device, dtype=dtype)
    width = bins[1] - bins[0]
    if generator is None:
        offset = torch.full((batch, num_rays, num_samples), 0.5, device=device, dtype=dtype)
    else:
        offset = torch.rand((batch, num_rays, num_samples), generator=generator, device=device, dtype=dtype)
    t = bins[:-1] + offset * width
    return (near + (far - near) * t).unsqueeze(-1)


def importance_depths(
    depths: torch.Tensor, weights: torch.Tensor, num_importance: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Draw depths from the piecewise-constant distribution the coarse weights define (inverse CDF).

    Args:
        depths: (B, N, S, 1) sorted coarse depths.
        weights: (B, N, S, 1) their volume-rendering weights.

    Returns:
        (B, N, num_importance, 1) new depths (not sorted against the coarse ones); detached.
    """
    depths, weights = depths.detach().squeeze(-1), weights.detach().squeeze(-1)  # (B, N, S)
    mids = 0.5 * (depths[..., 1:] + depths[..., :-1])  # (B, N, S-1) bin edges between samples
    w = weights[..., 1:-1] + 1e-5  # (B, N, S-2): the interior samples own the bins between mid-points
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # (B, N, S-1)
    shape = (*cdf.shape[:-1], num_importance)
    if generator is None:
        u = torch.linspace(0.0, 1.0, num_importance + 2, device=cdf.device, dtype=cdf.dtype)[1:-1].expand(shape)
    else:
        u = torch.rand(shape, generator=generator, device=cdf.device, dtype=cdf.dtype)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    edge_lo, edge_hi = mids.gather(-1, idx - 1), mids.gather(-1, idx)
    frac = (u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-8)
    return (edge_lo + frac * (edge_hi - edge_lo)).unsqueeze(-1)
