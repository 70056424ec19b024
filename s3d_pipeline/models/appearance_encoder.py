"""Hierarchical Facial Appearance Encoder: source portrait -> multi-scale tri-plane + visual tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .layers import ConvBlock


@dataclass
class AppearanceEncoderOutput(BaseOutput):
    """Attributes:
    triplanes: per scale, fine to coarse, (B, 3, C, H_s, W_s): the multi-scale tri-plane.
    visual_tokens: (B, L, D) multi-scale visual features on a ``token_grid`` x ``token_grid`` grid, the input
        of slot attention.
    """

    triplanes: Tuple[torch.Tensor, ...]
    visual_tokens: torch.Tensor


class HierarchicalAppearanceEncoder(ModelMixin, ConfigMixin):
    """A downsampling CNN gives feature maps D0..D3 at strides 4, 8, 16, 32; an FPN top-down path merges them
    into hierarchical features F0..F3 with ``3 * plane_channels`` channels each; each F_i is split into the xy,
    zy and xz planes of one tri-plane scale (the paper's multi-scale tri-plane).

    Args:
        in_channels: image channels.
        block_channels: channels of D0..D3.
        plane_channels: C, channels of every plane at every scale.
        token_grid: side of the grid the visual tokens are pooled to (all scales resampled and summed).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_channels: Tuple[int, ...] = (32, 64, 96, 128),
        plane_channels: int = 32,
        token_grid: int = 16,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBlock(in_channels, block_channels[0] // 2, stride=2), ConvBlock(block_channels[0] // 2, block_channels[0], stride=2))
        self.down = nn.ModuleList(
            nn.Sequential(ConvBlock(block_channels[i - 1], block_channels[i], stride=2), ConvBlock(block_channels[i], block_channels[i]))
            for i in range(1, len(block_channels))
        )
        fpn_channels = 3 * plane_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, 1) for c in block_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in block_channels)

    def forward(self, image: torch.Tensor) -> AppearanceEncoderOutput:
        """image: (B, 3, H, W) in [-1, 1]."""
        feats = [self.stem(image)]  # D0 at stride 4
        for block in self.down:
            feats.append(block(feats[-1]))  # D1..D3
        # FPN top-down: coarse semantics flow into the fine maps.
        merged = [None] * len(feats)
        top = self.lateral[-1](feats[-1])
        merged[-1] = top
        for i in range(len(feats) - 2, -1, -1):
            top = self.lateral[i](feats[i]) + F.interpolate(top, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            merged[i] = top
        hierarchical = [smooth(m) for smooth, m in zip(self.smooth, merged)]  # F0..F3
        c = self.config.plane_channels
        triplanes = tuple(f.reshape(f.shape[0], 3, c, *f.shape[-2:]) for f in hierarchical)  # (B, 3*C, H, W) -> (B, 3, C, H, W)
        grid = self.config.token_grid
        pooled = sum(F.adaptive_avg_pool2d(f, grid) for f in hierarchical)  # (B, 3C, g, g)
        tokens = pooled.flatten(2).transpose(1, 2)  # (B, g*g, 3C)
        return AppearanceEncoderOutput(triplanes=triplanes, visual_tokens=tokens)
