"""An offline 68-point landmark detector for evaluation: a small CNN regressor trained on our synthetic corpus.

LMD and mouth-opening correlation need landmarks on *generated* frames. face-alignment's FAN needs weights
that cannot be downloaded here, and the offline face backend only places a mean shape in a box (it cannot see
a mouth open). Synthetic clips carry exact landmarks, so we train a regressor on them, with blur and noise
augmentation so it stays accurate on the softer frames a generator produces. It works on aligned frames in
the model's framing (what the pipeline renders in crop mode) and is only meaningful on synthetic-looking
faces: on real photos use FAN.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..data.clip import read_clip
from ..models.layers import conv_block

DETECTOR_NAME = "synthetic-landmark-regressor"


class LandmarkRegressor(ModelMixin, ConfigMixin):
    """Aligned face (B, 3, S, S) in [0, 1] -> 68 landmarks (B, 68, 2) in normalized image coordinates.

    Args:
        input_size: S, frames are resized to it.
        channels: widths of the five stride-2 conv stages (S -> S / 32).
    """

    @register_to_config
    def __init__(self, input_size: int = 128, channels: Tuple[int, ...] = (32, 48, 64, 96, 128)) -> None:
        super().__init__()
        layers, c = [], 3
        for w in channels:
            layers += [conv_block(c, w, stride=2), conv_block(w, w)]
            c = w
        self.features = nn.Sequential(*layers)
        cells = (input_size // 2 ** len(channels)) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * cells, 256), nn.SiLU(), nn.Linear(256, 136))
        nn.init.zeros_(self.head[-1].weight)
        self.register_buffer("mean_shape", torch.full((68, 2), 0.5))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        offsets = self.head(self.features(images * 2 - 1)).reshape(-1, 68, 2)  # (B, 136) -> (B, 68, 2)
        return self.mean_shape + offsets

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    @torch.no_grad()
    def detect(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 frames (N, H, W, 3) -> landmarks (N, 68, 2) in those frames' pixels."""
        height, width = frames.shape[1:3]
        out = []
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            out.append(self(self._resize(batch)))
        scale = torch.tensor([width, height], dtype=torch.float32)
        return (torch.cat(out) * scale).numpy()


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur (sigma up to 2 px at 128 px), noise, brightness and contrast: the look of generated frames."""
    b = images.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    sigma = rand(1).item() * 2.0
    if sigma > 0.3:
        radius = int(math.ceil(2 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        images = F.conv2d(F.pad(images, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    contrast = 0.7 + 0.6 * rand(b, 1, 1, 1)
    brightness = 0.15 * (rand(b, 1, 1, 1) - 0.5)
    noise = 0.03 * rand(1).item() * torch.randn(images.shape, generator=generator)
    return ((images - 0.5) * contrast + 0.5 + brightness + noise).clamp(0, 1)


@dataclass
class LandmarkFit:
    """Result of :func:`fit_landmark_regressor`: the model and its held-out error in pixels at 256 px."""

    model: LandmarkRegressor
    train_steps: int
    heldout_error_px: Optional[float]


def _load_frames(clip_dirs: Sequence[Path], input_size: int, frames_per_clip: int, rng: random.Random):
    """A subset of frames from each clip, resized: -> images (M, 3, S, S) uint8, landmarks (M, 68, 2) normalized."""
    images, marks = [], []
    for clip_dir in clip_dirs:
        clip = read_clip(clip_dir, load_depth=False)
        height, width = clip.rgb.shape[1:3]
        picks = sorted(rng.sample(range(len(clip.rgb)), min(frames_per_clip, len(clip.rgb))))
        rgb = torch.from_numpy(clip.rgb[picks]).permute(0, 3, 1, 2).float()
        images.append(F.interpolate(rgb, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True).round().to(torch.uint8))
        marks.append(torch.from_numpy(clip.landmarks[picks]) / torch.tensor([width, height], dtype=torch.float32))
    return torch.cat(images), torch.cat(marks)


def fit_landmark_regressor(
    train_clips: Sequence[Path],
    heldout_clips: Sequence[Path] = (),
    steps: int = 3000,
    batch_size: int = 48,
    lr: float = 1e-3,
    frames_per_clip: int = 24,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> LandmarkFit:
    """Train the regressor on synthetic clips (L1 on normalized coordinates, cosine learning-rate decay)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = LandmarkRegressor()
    size = model.config.input_size
    images, marks = _load_frames(list(train_clips), size, frames_per_clip, rng)
    model.mean_shape.copy_(marks.mean(0))
    log(f"landmark regressor: {len(images)} training frames from {len(train_clips)} clips")
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        batch = augment(images[idx].float() / 255.0, generator)
        loss = F.l1_loss(model(batch), marks[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"step {step:5d}  L1 {loss.item() * 256:.2f} px@256")
    model.eval()
    error = heldout_error(model, heldout_clips) if heldout_clips else None
    if error is not None:
        log(f"held-out mean landmark error: {error:.2f} px at 256 px")
    return LandmarkFit(model=model, train_steps=steps, heldout_error_px=error)


def heldout_error(model: LandmarkRegressor, clip_dirs: Sequence[Path]) -> float:
    """Mean landmark error in pixels (frames scaled to 256 px) over every frame of the given clips."""
    errors: List[float] = []
    for clip_dir in clip_dirs:
        clip = read_clip(clip_dir, load_depth=False)
        predicted = model.detect(clip.rgb)
        errors.append(float(np.linalg.norm(predicted - clip.landmarks, axis=-1).mean() * 256 / clip.rgb.shape[2]))
    return float(np.mean(errors))
