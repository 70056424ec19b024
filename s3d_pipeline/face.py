"""Portrait preparation (placeholder: pre-aligned faces only; detection and paste-back to follow)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np
import PIL.Image
import PIL.ImageOps

from .errors import InvalidImageError
from .rendering.cameras import frontal_cam2world

ImageInput = Union[str, os.PathLike, PIL.Image.Image, np.ndarray]


@dataclass
class PreparedPortrait:
    """A portrait ready for the model, and how to put the result back into the original photo."""

    aligned: np.ndarray  # (R, R, 3) uint8 in the model's framing
    source_cam2world: np.ndarray  # (4, 4) estimated source camera, head frame
    original: np.ndarray  # (H, W, 3) uint8, EXIF-upright RGB photo
    crop_to_original: np.ndarray  # (2, 3) affine: aligned pixel coords -> original pixel coords
    landmarks: Optional[np.ndarray] = None  # (68, 2) in aligned pixels
    backend: str = "none"
    warnings: List[str] = field(default_factory=list)


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported image input -> (H, W, 3) uint8 RGB, EXIF orientation applied."""
    if isinstance(image, (str, os.PathLike)):
        try:
            image = PIL.Image.open(image)
            image.load()
        except (OSError, PIL.UnidentifiedImageError) as exc:
            raise InvalidImageError(f"could not read image {os.fspath(image)!r}: {exc}. Use a PNG or JPEG photo.") from exc
    if isinstance(image, PIL.Image.Image):
        return np.asarray(PIL.ImageOps.exif_transpose(image).convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise InvalidImageError(f"image array must be (H, W, 3) RGB, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        return np.ascontiguousarray(image[..., :3])
    raise InvalidImageError(f"image must be a path, a PIL image or an array, got {type(image).__name__}")


def prepare_portrait(image: ImageInput, *, aligned: bool = True, resolution: int = 256) -> PreparedPortrait:
    rgb = load_image(image)
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = PIL.Image.fromarray(rgb[top : top + side, left : left + side]).resize((resolution, resolution), PIL.Image.LANCZOS)
    scale = side / resolution
    affine = np.array([[scale, 0.0, left], [0.0, scale, top]], dtype=np.float32)
    return PreparedPortrait(np.asarray(crop), frontal_cam2world().numpy(), rgb, affine)
