"""Frames as tensors and as pictures: the one float -> uint8 conversion and the one resize every module uses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def float_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (any shape) -> uint8, clipped and rounded to the nearest level."""
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames (N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8 pictures."""
    return float_to_uint8(frames.detach().cpu().permute(0, 2, 3, 1).float().numpy())


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), antialiased so that downscaling does not alias; a no-op at that size."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_uint8(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 pictures (N, H, W, 3) -> (N, size, size, 3), as :func:`resize` does it."""
    if frames.shape[1:3] == (size, size):
        return frames
    resized = resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
