"""Small building blocks shared by the networks."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv -> GroupNorm -> SiLU, the basic unit of every CNN here."""
    groups = math.gcd(8, out_channels)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, out_channels),
        nn.SiLU(),
    )


def encoding_angles(x: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """The angles of the NeRF frequency encoding: (..., D) -> (..., D, L), x * 2^l * pi."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=x.device, dtype=x.dtype)) * math.pi
    return x[..., None] * freqs


def positional_encoding(x: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """NeRF frequency encoding: (..., D) -> (..., D * (1 + 2 * num_frequencies)), laid out as
    [x | per axis: sin of its L angles, cos of its L angles]."""
    if num_frequencies == 0:
        return x
    angles = encoding_angles(x, num_frequencies)  # (..., D, L)
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)
    return torch.cat([x, enc], dim=-1)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """Fully connected net with SiLU between ``layers`` linear layers."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules = []
    for i in range(layers):
        modules.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            modules.append(nn.SiLU())
    return nn.Sequential(*modules)
