"""The image discriminator of L_adv: a StyleGAN2-style residual discriminator (Karras et al., 2020).

Kept from StyleGAN2: residual blocks that halve the resolution with a 1/sqrt(2)-scaled skip, leaky ReLU (0.2),
the minibatch standard-deviation feature at 4x4, a 3x3 conv and two linear layers to one logit, trained with the
non-saturating logistic loss and lazy R1 (:mod:`.losses`). Left out (ours, for a small CPU budget): equalised
learning rate and FIR-filtered resampling (average pooling instead). It judges the super-resolved patches the
training renders, so its resolution is ``4 x patch_rays``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class DiscriminatorBlock(nn.Module):
    """(B, Cin, H, W) -> (B, Cout, H/2, W/2): two 3x3 convs and a 2x average-pool, plus a 1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.leaky_relu(self.conv1(F.avg_pool2d(x, 2)), 0.2)
        return (x + skip) / math.sqrt(2.0)


class MinibatchStd(nn.Module):
    """Appends the mean over features of the standard deviation across a group of samples (one extra channel)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(self.group_size, b)
        y = x.reshape(g, b // g, c, h, w)  # (G, B/G, C, H, W)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/G,)
        y = y.reshape(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, y], dim=1)


class ImageDiscriminator(nn.Module):
    """Images (B, 3, R, R) in [-1, 1] -> realness logits (B,).

    Args:
        resolution: R, a power of two >= 8.
        channel_base, max_channels: a block at resolution r has ``min(channel_base // r, max_channels)`` channels.
    """

    def __init__(self, resolution: int, channel_base: int = 4096, max_channels: int = 256) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"discriminator resolution must be a power of two >= 8, got {resolution}")
        self.resolution = resolution
        channels = lambda r: max(1, min(channel_base // r, max_channels))  # noqa: E731
        self.from_rgb = nn.Conv2d(3, channels(resolution), 1)
        blocks, r = [], resolution
        while r > 4:
            blocks.append(DiscriminatorBlock(channels(r), channels(r // 2)))
            r //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels(4)
        self.minibatch_std = MinibatchStd()
        self.conv = nn.Conv2d(c4 + 1, c4, 3, padding=1)
        self.fc = nn.Linear(c4 * 16, c4)
        self.out = nn.Linear(c4, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(f"the discriminator takes {self.resolution}x{self.resolution} images, got {tuple(images.shape[-2:])}")
        x = F.leaky_relu(self.from_rgb(images), 0.2)
        x = self.blocks(x)  # (B, C4, 4, 4)
        x = F.leaky_relu(self.conv(self.minibatch_std(x)), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)  # (B, C4*16) -> (B, C4)
        return self.out(x)[:, 0]
