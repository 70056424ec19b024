"""Motion not driven by the audio: head pose, blinks, brow movement and small gaze shifts.

Two kinds of head pose (``MOTION_KINDS``), both inside ``POSE_LIMITS_DEG`` (yaw +-30, pitch +-20, roll +-10):

- ``sway`` (the default, used for training): a per-clip base pose plus a few slow sinusoids per axis, squashed
  softly into the allowed range. Half of the clips have a near-frontal base pose, so a good share of frames is
  frontal, as in real talking-head footage.
- ``yaw-sweep`` (novel-view evaluation): the head starts near-frontal and turns smoothly to about 25 degrees
  to one side, across to about 25 degrees to the other and back, once over the clip, with a little pitch and
  roll sway. The evaluation takes frame 0 as the source view, so every clip covers yaw offsets from 0 to
  about 25 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSE_LIMITS_DEG = (30.0, 20.0, 10.0)  # yaw, pitch, roll
SWEEP_YAW_DEG = (24.0, 26.0)  # range of the yaw-sweep amplitude: past the 20-degree mark, under the 30-degree limit
SWEEP_START_YAW_DEG = 3.0  # bound of the yaw-sweep start yaw, so start + amplitude stays within the limit


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


def _sway_pose(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """``sway`` head pose (N, 3): a base pose plus slow sinusoids, soft-limited to ``POSE_LIMITS_DEG``."""
    if rng.random() < 0.5:
        base = [rng.normal(0, 4.0), rng.normal(0, 3.0), rng.normal(0, 2.0)]
    else:
        base = [rng.uniform(-24, 24), rng.uniform(-12, 12), rng.uniform(-6, 6)]
    sway = [_slow_wave(rng, t, a) for a in (rng.uniform(2, 8), rng.uniform(1, 5), rng.uniform(0.5, 3))]
    return np.stack([lim * np.tanh((b + s) / lim) for b, s, lim in zip(base, sway, POSE_LIMITS_DEG)], axis=-1)


def _yaw_sweep_pose(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """``yaw-sweep`` head pose (N, 3): yaw is one sine period over the clip (0 -> +-A -> -+A -> 0 from a
    near-frontal start), pitch and roll a small soft-limited sway.

    The yaw is not soft-limited (that would flatten the peaks below 20 degrees); the start and amplitude bounds
    keep it inside the limit instead.
    """
    amplitude = rng.uniform(*SWEEP_YAW_DEG) * rng.choice((-1.0, 1.0))  # which side the head turns to first
    start = rng.uniform(-SWEEP_START_YAW_DEG, SWEEP_START_YAW_DEG)
    yaw = start + amplitude * np.sin(2 * np.pi * np.arange(t.size) / t.size)
    tilt = [
        lim * np.tanh((rng.normal(0, sd) + _slow_wave(rng, t, rng.uniform(*amp))) / lim)
        for sd, amp, lim in ((2.0, (1.0, 3.0), POSE_LIMITS_DEG[1]), (1.5, (0.5, 2.0), POSE_LIMITS_DEG[2]))
    ]
    return np.stack([yaw, *tilt], axis=-1)


_POSE_SAMPLERS = {"sway": _sway_pose, "yaw-sweep": _yaw_sweep_pose}
MOTION_KINDS = tuple(_POSE_SAMPLERS)


def sample_motion(rng: np.random.Generator, num_frames: int, fps: float, kind: str = "sway") -> MotionTrack:
    """Non-speech motion of one clip: head pose of the given kind (see ``MOTION_KINDS``), then blinks, brows
    and gaze jitter, all drawn from ``rng`` in that order (``sway`` draws exactly what it always has, so
    existing seeds give the same clips)."""
    if kind not in _POSE_SAMPLERS:
        raise ValueError(f"motion kind must be one of {MOTION_KINDS}, got {kind!r}")
    t = np.arange(num_frames) / fps
    pose = _POSE_SAMPLERS[kind](rng, t)  # (N, 3)
    blink = _blinks(rng, t)
    blink = np.stack([blink, np.clip(blink * rng.uniform(0.9, 1.0), 0, 1)], -1)  # (N, 2)
    brow = np.clip(_slow_wave(rng, t, rng.uniform(0.2, 0.6), max_hz=0.6), -1.0, 1.0)
    gaze = np.stack([_slow_wave(rng, t, 0.0015, 0.8), _slow_wave(rng, t, 0.001, 0.8)], -1)
    return MotionTrack(pose=pose.astype(np.float32), blink=blink.astype(np.float32), brow=brow, gaze_jitter=gaze)
