"""An offline 68-point landmark detector for evaluation: a small two-stage CNN trained on our synthetic corpus.

LMD and mouth-opening correlation need landmarks on *generated* frames. face-alignment's FAN needs weights
that cannot be downloaded here, and the offline face backend only places a mean shape in a box (it cannot see
a mouth open). Synthetic clips carry exact landmarks, so we train a regressor on them, with blur, resampling
and noise augmentation so it stays accurate on the softer frames a generator produces.

The detector is a cascade. A face stage regresses all 68 points from the whole frame at low resolution; that
places the face well but cannot resolve a lip gap of a pixel or two, and the lips are what M-LMD and the
mouth-opening correlation measure. So a mouth stage crops a window around the face stage's mouth points from
the frame at full resolution and regresses the 20 mouth points (48..67) again, replacing the face stage's.
Both stages live in one model, one saved folder.

It works on aligned, square frames in the model's framing (what the pipeline renders in crop mode) and is only
meaningful on synthetic-looking faces: on real photos use FAN.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..data.clip import read_clip
from ..frames import resize
from ..models.layers import ConvBlock
from . import metrics

DETECTOR_NAME = "synthetic-landmark-regressor"
MOUTH = metrics.MOUTH

# Horizontal mirror of the iBUG 68-point scheme: point i of a flipped face is point FLIP[i] of the original.
FLIP = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # eyebrows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)


def _regressor(size: int, channels: Sequence[int], points: int) -> Tuple[nn.Sequential, nn.Sequential]:
    """Stride-2 conv stages (each followed by a stride-1 block) and an MLP head -> (features, head).

    The head's last layer starts at zero, so an untrained stage predicts its mean shape.
    """
    layers, c = [], 3
    for w in channels:
        layers += [ConvBlock(c, w, stride=2), ConvBlock(w, w)]
        c = w
    cells = (size // 2 ** len(channels)) ** 2
    head = nn.Sequential(nn.Flatten(), nn.Linear(c * cells, 256), nn.SiLU(), nn.Linear(256, points * 2))
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return nn.Sequential(*layers), head


def crop(images: torch.Tensor, centres: torch.Tensor, side: torch.Tensor, size: int, angle: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Square windows resampled to ``size`` px: images (B, 3, H, W), centres (B, 2) and side (B,) in normalized
    image coordinates, optional rotation ``angle`` (B,) in radians -> (B, 3, size, size).

    Window coordinate u in [0, 1]^2 samples the image at ``centre + side * R(angle) (u - 0.5)`` (see
    :func:`to_window`); bilinear, edge pixels repeat outside the image.
    """
    b = images.shape[0]
    angle = torch.zeros(b) if angle is None else angle
    cos, sin = torch.cos(angle) * side, torch.sin(angle) * side
    theta = torch.stack([torch.stack([cos, -sin, 2 * centres[:, 0] - 1], -1), torch.stack([sin, cos, 2 * centres[:, 1] - 1], -1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_window(points: torch.Tensor, centres: torch.Tensor, side: torch.Tensor, angle: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Image-normalized points (B, P, 2) -> the coordinates u of :func:`crop`'s windows (B, P, 2)."""
    angle = torch.zeros(points.shape[0]) if angle is None else angle
    d = (points - centres[:, None]) / side[:, None, None]
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    return torch.stack([cos * d[..., 0] + sin * d[..., 1], -sin * d[..., 0] + cos * d[..., 1]], -1) + 0.5


class LandmarkRegressor(ModelMixin, ConfigMixin):
    """Aligned square faces (B, 3, H, W) in [0, 1] -> 68 landmarks (B, 68, 2) in normalized image coordinates.

    Args:
        input_size: the face stage sees the whole frame resized to input_size x input_size.
        channels: widths of the face stage's stride-2 conv stages (input_size -> input_size / 2**len).
        mouth_size: the mouth stage's window, in pixels; 0 disables the stage.
        mouth_channels: widths of the mouth stage's stride-2 conv stages.
        mouth_window: the window's side as a fraction of the frame. The frame is first resized so the window
            is sampled at ``mouth_size`` px, i.e. to ``mouth_size / mouth_window`` px (256 px by default:
            full resolution on the corpus's frames).
    """

    @register_to_config
    def __init__(
        self,
        input_size: int = 128,
        channels: Tuple[int, ...] = (32, 48, 64, 96, 128),
        mouth_size: int = 80,
        mouth_channels: Tuple[int, ...] = (32, 48, 64, 96),
        mouth_window: float = 0.3125,
    ) -> None:
        super().__init__()
        self.features, self.head = _regressor(input_size, channels, 68)
        self.register_buffer("mean_shape", torch.full((68, 2), 0.5))
        if mouth_size:
            self.mouth_features, self.mouth_head = _regressor(mouth_size, mouth_channels, 20)
            self.register_buffer("mouth_mean_shape", torch.full((20, 2), 0.5))

    @property
    def working_size(self) -> int:
        """Frame size at which the mouth window is sampled at its own resolution."""
        return round(self.config.mouth_size / self.config.mouth_window)

    def face_stage(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, input_size, input_size) -> (B, 68, 2) normalized."""
        return self.mean_shape + self.head(self.features(images * 2 - 1)).reshape(-1, 68, 2)  # (B, 136) -> (B, 68, 2)

    def mouth_stage(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 3, mouth_size, mouth_size) mouth windows -> (B, 20, 2) points 48..67 in window coordinates."""
        return self.mouth_mean_shape + self.mouth_head(self.mouth_features(windows * 2 - 1)).reshape(-1, 20, 2)  # (B, 40) -> (B, 20, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        points = self.face_stage(resize(images, self.config.input_size))
        if not self.config.mouth_size:
            return points
        centres = points[:, MOUTH].mean(1)  # (B, 2)
        side = torch.full((len(images),), self.config.mouth_window)
        windows = crop(resize(images, self.working_size), centres, side, self.config.mouth_size)
        mouth = self.mouth_stage(windows)
        points = points.clone()
        points[:, MOUTH] = centres[:, None] + (mouth - 0.5) * self.config.mouth_window  # back to image coordinates
        return points

    @torch.no_grad()
    def detect(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 frames (N, H, W, 3) -> landmarks (N, 68, 2) in those frames' pixels."""
        height, width = frames.shape[1:3]
        out = []
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            out.append(self(batch))
        scale = torch.tensor([width, height], dtype=torch.float32)
        return (torch.cat(out) * scale).numpy()


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 3, H, W), edges repeated."""
    radius = int(math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)


def augment(images: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    """The look of generated frames: random blur (sigma up to 4 px of a 256 px frame) or down-and-up resampling
    (to an effective 56..160 px frame), noise, and per-channel brightness and contrast.

    ``scale`` is how many pixels of ``images`` one pixel of a 256 px frame spans, so both stages see the same
    degradations of the frame whatever their own resolution.
    """
    b, _, size, _ = images.shape
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    kind = rand(1).item()
    if kind < 0.4:
        sigma = rand(1).item() * 4.0 * scale
        if sigma > 0.3:
            images = _gaussian_blur(images, sigma)
    elif kind < 0.7:
        small = round(size * (56 + 104 * rand(1).item()) / (256 * scale))
        if small < size:
            images = F.interpolate(resize(images, small), size=(size, size), mode="bilinear", align_corners=False)
    contrast = 0.7 + 0.6 * rand(b, 1, 1, 1) + 0.1 * (rand(b, 3, 1, 1) - 0.5)
    brightness = 0.15 * (rand(b, 1, 1, 1) - 0.5) + 0.05 * (rand(b, 3, 1, 1) - 0.5)
    noise = 0.03 * rand(1).item() * torch.randn(images.shape, generator=generator)
    return ((images - 0.5) * contrast + 0.5 + brightness + noise).clamp(0, 1)


@dataclass
class LandmarkFit:
    """Result of :func:`fit_landmark_regressor`: the model, its steps, the CPU seconds of the training loop (data
    loading excluded), and its held-out error in pixels at 256 px."""

    model: LandmarkRegressor
    train_steps: int
    train_seconds: float
    heldout_error_px: Optional[float]


@dataclass
class _Frames:
    """Training frames: the face stage's inputs and a patch of the working-size frame around each mouth.

    Attributes:
        faces: (M, 3, S, S) uint8 whole frames at the face stage's input size.
        points: (M, 68, 2) landmarks, normalized to the frame.
        patches: (M, 3, P, P) uint8 windows of the working-size frame, each around its ground-truth mouth,
            with room for the window jitter of training; empty when there is no mouth stage.
        patch_points: (M, 20, 2) mouth landmarks normalized to their patch.
    """

    faces: torch.Tensor
    points: torch.Tensor
    patches: torch.Tensor
    patch_points: torch.Tensor


def _load_frames(clip_dirs: Sequence[Path], model: LandmarkRegressor, frames_per_clip: int, rng: random.Random, patch: int) -> _Frames:
    """A random subset of frames of each clip, cut to what both stages train on (see :class:`_Frames`)."""
    size, work = model.config.input_size, model.working_size
    faces, points, patches, patch_points = [], [], [], []
    for clip_dir in clip_dirs:
        clip = read_clip(clip_dir, load_depth=False)
        height, width = clip.rgb.shape[1:3]
        picks = sorted(rng.sample(range(len(clip.rgb)), min(frames_per_clip, len(clip.rgb))))
        rgb = torch.from_numpy(clip.rgb[picks]).permute(0, 3, 1, 2).float()
        marks = torch.from_numpy(clip.landmarks[picks]) / torch.tensor([width, height], dtype=torch.float32)
        faces.append(resize(rgb, size).round().to(torch.uint8))
        points.append(marks)
        if model.config.mouth_size:
            frame = resize(rgb, work)
            frame = F.pad(frame, (patch, patch, patch, patch), mode="replicate")  # a patch near the border stays inside
            corners = (marks[:, MOUTH].mean(1) * work).round().long() - patch // 2 + patch  # (n, 2) in the padded frame
            for f, (x0, y0) in zip(frame, corners.tolist()):
                patches.append(f[:, y0 : y0 + patch, x0 : x0 + patch].round().to(torch.uint8))
            patch_points.append((marks[:, MOUTH] * work + patch - corners[:, None].float()) / patch)
    mouth = (torch.stack(patches), torch.cat(patch_points)) if patches else (torch.empty(0), torch.empty(0))
    return _Frames(torch.cat(faces), torch.cat(points), *mouth)


def _flip(images: torch.Tensor, points: torch.Tensor, flip: torch.Tensor, order: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mirror the samples where ``flip`` (B,) is set: images (B, 3, H, W), normalized points (B, P, 2) whose
    mirror order is ``order``."""
    mirrored = points[:, order].clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images, torch.where(flip[:, None, None], mirrored, points)


def fit_landmark_regressor(
    train_clips: Sequence[Path],
    heldout_clips: Sequence[Path] = (),
    steps: int = 5000,
    batch_size: int = 32,
    lr: float = 1e-3,
    frames_per_clip: int = 40,
    mouth_jitter: float = 3.0,
    seed: int = 0,
    model: Optional[LandmarkRegressor] = None,
    save_dir: Optional[Path] = None,
    save_every: int = 1000,
    log: Callable[[str], None] = print,
) -> LandmarkFit:
    """Train both stages together on synthetic clips (L1 on normalized coordinates, one-cycle schedule).

    Every step, the face stage sees a batch of whole frames, slightly shifted, scaled and rotated, and the mouth
    stage a batch of windows centred on the true mouth centre plus Gaussian noise of ``mouth_jitter`` px (at
    256 px) in each axis, so it learns to recover from the face stage's misplacements. Half the samples are
    mirrored. With ``save_dir`` the model is saved there every ``save_every`` steps and at the end.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = model if model is not None else LandmarkRegressor()
    cfg = model.config
    patch = math.ceil(cfg.mouth_size * 1.5)  # the window plus jitter, rotation and scale
    data = _load_frames(list(train_clips), model, frames_per_clip, rng, patch)
    model.mean_shape.copy_(data.points.mean(0))
    if cfg.mouth_size:
        centred = (data.patch_points - data.patch_points.mean(1, keepdim=True)) * patch / cfg.mouth_size + 0.5
        model.mouth_mean_shape.copy_(centred.mean(0))
    log(f"landmark regressor: {len(data.faces)} training frames from {len(train_clips)} clips")
    generator = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    signed = lambda *shape: 2 * rand(*shape) - 1  # noqa: E731  (uniform in [-1, 1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.05)
    flip_mouth = FLIP[MOUTH] - MOUTH.start
    start = time.process_time()
    model.train()
    for step in range(steps):
        idx = torch.randint(len(data.faces), (batch_size,), generator=generator)
        faces, points = _flip(data.faces[idx].float() / 255.0, data.points[idx], rand(batch_size) < 0.5, FLIP)
        # A small random similarity transform of the whole frame: framing is aligned, but not to the pixel.
        centres, side, angle = 0.5 + 0.03 * signed(batch_size, 2), 1 + 0.04 * signed(batch_size), 0.07 * signed(batch_size)
        faces = augment(crop(faces, centres, side, cfg.input_size, angle), generator, cfg.input_size / 256)
        face_loss = F.l1_loss(model.face_stage(faces), to_window(points, centres, side, angle))
        mouth_loss = torch.zeros(())
        if cfg.mouth_size:
            windows, mouth = _flip(data.patches[idx].float() / 255.0, data.patch_points[idx], rand(batch_size) < 0.5, flip_mouth)
            jitter = mouth_jitter * model.working_size / (256 * patch) * torch.randn(batch_size, 2, generator=generator)  # px@256 -> patch units
            centres = mouth.mean(1) + jitter
            side = cfg.mouth_size / patch * (1 + 0.05 * signed(batch_size))
            angle = 0.07 * signed(batch_size)
            windows = augment(crop(windows, centres, side, cfg.mouth_size, angle), generator, model.working_size / 256)
            mouth_loss = F.l1_loss(model.mouth_stage(windows), to_window(mouth, centres, side, angle))
        optimiser.zero_grad(set_to_none=True)
        (face_loss + mouth_loss).backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            mouth_px = mouth_loss.item() * cfg.mouth_window * 256  # window units -> px at 256
            log(f"step {step:5d}  L1 face {face_loss.item() * 256:.2f}  mouth {mouth_px:.2f} px@256  {time.process_time() - start:.0f} s CPU")
        if save_dir is not None and ((step + 1) % save_every == 0 or step == steps - 1):
            model.save_pretrained(save_dir)
    seconds = time.process_time() - start
    model.eval()
    error = heldout_error(model, heldout_clips) if heldout_clips else None
    if error is not None:
        log(f"held-out mean landmark error: {error:.2f} px at 256 px")
    return LandmarkFit(model=model, train_steps=steps, train_seconds=seconds, heldout_error_px=error)


def gaussian_blurred(frames: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """uint8 frames (N, H, W, 3) blurred with a Gaussian of ``sigma`` px: a robustness probe."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    return _gaussian_blur(images, sigma).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resampled(frames: np.ndarray, size: int = 64) -> np.ndarray:
    """uint8 frames (N, H, W, 3) downscaled to ``size`` px and back up: a robustness probe."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    images = F.interpolate(resize(images, size), size=frames.shape[1:3], mode="bilinear", align_corners=False)
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def heldout_report(
    model: LandmarkRegressor, clip_dirs: Sequence[Path], degrade: Optional[Callable[[np.ndarray], np.ndarray]] = None
) -> Dict[str, float]:
    """The detector against exact landmarks over every frame of the given clips, optionally degraded first.

    Returns means over clips of: ``error`` (px per landmark, frames scaled to 256 px), ``mouth_error`` (the same
    over points 48..67), ``m_lmd`` (:func:`metrics.landmark_distance`, mouth only, at 256 px) and
    ``mouth_corr`` (Pearson r of the detected and true :func:`metrics.mouth_opening` over each clip's frames;
    clips whose true opening is constant are skipped), and ``mouth_corr_min``, the worst clip.
    """
    rows: List[Tuple[float, ...]] = []
    for clip_dir in clip_dirs:
        clip = read_clip(clip_dir, load_depth=False)
        frames = clip.rgb if degrade is None else degrade(clip.rgb)
        found, truth, scale = model.detect(frames), clip.landmarks, 256 / clip.rgb.shape[2]
        r = metrics.correlation(metrics.mouth_opening(found), metrics.mouth_opening(truth))
        rows.append((
            float(np.linalg.norm(found - truth, axis=-1).mean() * scale),
            float(np.linalg.norm(found[:, MOUTH] - truth[:, MOUTH], axis=-1).mean() * scale),
            metrics.landmark_distance(found, truth, mouth_only=True) * scale,
            np.nan if r is None else r,
        ))  # fmt: skip
    table = np.array(rows)  # (clips, 4)
    return {
        "error": float(table[:, 0].mean()),
        "mouth_error": float(table[:, 1].mean()),
        "m_lmd": float(table[:, 2].mean()),
        "mouth_corr": float(np.nanmean(table[:, 3])),
        "mouth_corr_min": float(np.nanmin(table[:, 3])),
    }


def heldout_error(model: LandmarkRegressor, clip_dirs: Sequence[Path]) -> float:
    """Mean landmark error in pixels (frames scaled to 256 px) over every frame of the given clips."""
    return heldout_report(model, clip_dirs)["error"]
