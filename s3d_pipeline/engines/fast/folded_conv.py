"""Convolutions rearranged by linearity: split by input (a cached per-identity share) and folded with the x2
bilinear upsampling before them (the upsampled image is never built)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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

