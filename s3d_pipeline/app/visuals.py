"""Pictures of what the model did: the cross-attention heatmap over the face and a depth preview."""

from __future__ import annotations

import cv2
import numpy as np


MIN_DISPLAY_SIZE = 256  # pictures from small models are enlarged to at least this, so they are legible


def for_display(picture: np.ndarray, min_size: int = MIN_DISPLAY_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 enlarged (nearest neighbour, so pixels stay honest) until its short side is ``min_size``."""
    factor = int(np.ceil(min_size / min(picture.shape[:2])))
    return picture if factor <= 1 else np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def _normalise(values: np.ndarray, low_percentile: float = 1.0, high_percentile: float = 99.0) -> np.ndarray:
    """Values rescaled to [0, 1] between two percentiles (robust to a few outliers); a flat map becomes zeros."""
    low, high = np.percentile(values, [low_percentile, high_percentile])
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _colour(unit: np.ndarray, colormap: int) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 RGB through an OpenCV colour map."""
    return cv2.cvtColor(cv2.applyColorMap((unit * 255).round().astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)


def attention_overlay(face: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The audio-to-face cross-attention, averaged over the clip, as a heatmap over the source face.

    Args:
        face: (R, R, 3) uint8 aligned source portrait.
        attention: (N, R', R') float attention per frame (any size; resized to the face).

    Returns:
        (R, R, 3) uint8: the face under a jet colour map, more opaque where attention is higher, so regions the
        speech moves (lips, jaw) stand out as in the paper's attention figure.
    """
    size = face.shape[1], face.shape[0]
    heat = _normalise(cv2.resize(np.asarray(attention, dtype=np.float32).mean(axis=0), size, interpolation=cv2.INTER_LINEAR))
    alpha = (0.25 + 0.5 * heat)[..., None]  # (R, R, 1)
    blended = alpha * _colour(heat, cv2.COLORMAP_JET) + (1.0 - alpha) * face.astype(np.float32)
    return np.clip(blended, 0, 255).round().astype(np.uint8)


def depth_preview(depth: np.ndarray, size: int) -> np.ndarray:
    """The rendered depth of the middle frame as a ``size`` x ``size`` image, near surfaces bright.

    Args:
        depth: (N, h, w) camera-space depth per frame (larger = farther).
    """
    middle = np.asarray(depth[len(depth) // 2], dtype=np.float32)
    nearness = 1.0 - _normalise(middle)
    return _colour(cv2.resize(nearness, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_INFERNO)
