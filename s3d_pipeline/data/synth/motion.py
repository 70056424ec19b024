"""Motion not driven by the audio: head pose, blinks, brow movement and small gaze shifts.

Head pose is a per-clip base pose plus a few slow sinusoids per axis, squashed softly into the allowed range
(yaw +-30, pitch +-20, roll +-10 degrees). Half of the clips have a near-frontal base pose, so a good share of
frames is frontal, as in real talking-head footage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSE_LIMITS_DEG = (30.0, 20.0, 10.0)  # yaw, pitch, roll


@dataclass
class MotionTrack:
    """Per-frame non-speech motion of one clip."""

    pose: np.ndarray  # (N, 3) yaw, pitch, roll in degrees
    blink: np.ndarray  # (N, 2) right, left eyelid closure in [0, 1]
    brow: np.ndarray  # (N,) brow raise, about [-1, 1]
    gaze_jitter: np.ndarray  # (N, 2) small iris offsets (canonical units) added to looking at the camera


def _slow_wave(rng: np.random.Generator, t: np.ndarray, amplitude: float, max_hz: float = 0.4) -> np.ndarray:
    """Sum of three random low-frequency sinusoids with overall scale ``amplitude``."""
    out = np.zeros_like(t)
    for _ in range(3):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.05, max_hz) * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 1.5


def _blinks(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Eyelid closure over time: blinks every few seconds, closing fast and opening slower."""
    closure = np.zeros_like(t)
    onset = rng.uniform(0.2, 2.5)
    while onset < t[-1] + 0.5:
        close, reopen = rng.uniform(0.05, 0.08), rng.uniform(0.1, 0.18)
        rise = np.clip((t - onset) / close, 0.0, 1.0)
        fall = np.clip(1.0 - (t - onset - close) / reopen, 0.0, 1.0)
        closure = np.maximum(closure, np.where(t < onset + close, rise, fall) * (t >= onset))
        onset += close + reopen + rng.exponential(2.5) + 0.8
    return closure


def sample_motion(rng: np.random.Generator, num_frames: int, fps: float) -> MotionTrack:
    t = np.arange(num_frames) / fps
    if rng.random() < 0.5:
        base = [rng.normal(0, 4.0), rng.normal(0, 3.0), rng.normal(0, 2.0)]
    else:
        base = [rng.uniform(-24, 24), rng.uniform(-12, 12), rng.uniform(-6, 6)]
    sway = [_slow_wave(rng, t, a) for a in (rng.uniform(2, 8), rng.uniform(1, 5), rng.uniform(0.5, 3))]
    pose = np.stack(
        [lim * np.tanh((b + s) / lim) for b, s, lim in zip(base, sway, POSE_LIMITS_DEG)], axis=-1
    )  # (N, 3), soft-limited
    blink = _blinks(rng, t)
    blink = np.stack([blink, np.clip(blink * rng.uniform(0.9, 1.0), 0, 1)], -1)  # (N, 2)
    brow = np.clip(_slow_wave(rng, t, rng.uniform(0.2, 0.6), max_hz=0.6), -1.0, 1.0)
    gaze = np.stack([_slow_wave(rng, t, 0.0015, 0.8), _slow_wave(rng, t, 0.001, 0.8)], -1)
    return MotionTrack(pose=pose.astype(np.float32), blink=blink.astype(np.float32), brow=brow, gaze_jitter=gaze)
