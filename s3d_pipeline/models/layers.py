"""Small building blocks shared by the networks."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock(nn.Sequential):
    """3x3 conv -> GroupNorm -> SiLU, the basic unit of every CNN here.

    A ``Sequential`` (its weights save as ``0.*`` and ``1.*``) with named parts, so that code which computes the
    convolution its own way (the fast engine splits it by input channels) reaches the parts by name and finishes
    the block with :meth:`finish`, never by position.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.GroupNorm(math.gcd(8, out_channels), out_channels),
            nn.SiLU(),
        )

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]

    @property
    def norm(self) -> nn.GroupNorm:
        return self[1]

    def finish(self, convolved: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """The block after its convolution: GroupNorm then SiLU (in place on the norm's fresh output if asked;
        not under autograd)."""
        return F.silu(self.norm(convolved), inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.conv(x))


def per_frame(t: torch.Tensor, n: int) -> torch.Tensor:
    """A per-identity tensor (B, ...) for n frames: as it is for B == n, expanded for B == 1 (a view), else each
    identity repeated for its n / B consecutive frames."""
    if t.shape[0] == n:
        return t
    if t.shape[0] == 1:
        return t.expand(n, *t.shape[1:])
    if n % t.shape[0]:
        raise ValueError(f"{n} frames cannot be shared out evenly over {t.shape[0]} identities")
    return t.repeat_interleave(n // t.shape[0], dim=0)


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
