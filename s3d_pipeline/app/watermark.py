"""The "AI-generated" disclosure: a visible label burnt into every output frame and a tag in the mp4."""

from __future__ import annotations

import functools

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

MARK_TEXT = "AI-generated"
VIDEO_METADATA = {
    "comment": "AI-generated with s3d-nerf",  # the same tag the s3d-nerf CLI writes
    "description": "Synthetic talking-head video made by S3D-NeRF from a single photo and speech.",
}


@functools.lru_cache(maxsize=8)
def _mark(width: int, height: int) -> tuple:
    """The label for a (height, width) frame: its RGBA tile and top-left corner, cached per frame size."""
    font_size = max(8, height // 18)
    font = PIL.ImageFont.load_default(size=font_size)
    left, top, right, bottom = font.getbbox(MARK_TEXT)
    pad = max(2, font_size // 4)
    tile = PIL.Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 150))
    PIL.ImageDraw.Draw(tile).text((pad - left, pad - top), MARK_TEXT, font=font, fill=(255, 255, 255, 255))
    array = np.asarray(tile).astype(np.float32)
    rgb, alpha = array[..., :3], array[..., 3:] / 255.0  # (h, w, 3), (h, w, 1)
    margin = max(1, height // 64)
    corner = (max(0, height - tile.height - margin), max(0, width - tile.width - margin))  # bottom right
    return rgb, alpha, corner


def mark_frames(frames: np.ndarray) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 -> a copy with the "AI-generated" label in the bottom-right corner.

    The label is scaled to the frame height (about 1/18 of it) and drawn on a translucent dark box so it stays
    readable on any background. Frames narrower than the label get it clipped at the left edge.
    """
    frames = np.array(frames, dtype=np.uint8, copy=True)
    if frames.ndim == 3:
        frames = frames[None]
    height, width = frames.shape[1:3]
    rgb, alpha, (top, left) = _mark(width, height)
    h, w = min(rgb.shape[0], height - top), min(rgb.shape[1], width - left)
    region = frames[:, top : top + h, left : left + w].astype(np.float32)  # (N, h, w, 3)
    blended = alpha[:h, :w] * rgb[:h, :w] + (1.0 - alpha[:h, :w]) * region
    frames[:, top : top + h, left : left + w] = np.clip(blended, 0, 255).round().astype(np.uint8)
    return frames
