"""Head-motion presets: per-frame yaw, pitch and roll trajectories over a clip.

The pipeline takes head pose as offsets from the source pose, in degrees, either one value for the whole clip or
one per frame. A preset turns a clip length into such per-frame offsets, so a still portrait can nod, turn or
look around while it speaks. Every trajectory starts at the base pose (the first frame matches the portrait's
framing at the chosen offsets), is smooth, and is clipped to the pipeline's ``POSE_LIMITS``.

Presets:
    ``still``   the base pose throughout.
    ``nod``     a gentle nod: pitch swings ±5° about once every two seconds, whatever the clip's length.
    ``turn``    the head turns 20° to one side and back once over the clip.
    ``orbit``   the view circles once over the clip: yaw ±15°, pitch from 0 to 12° and back.

Examples:
    >>> motion = head_motion("nod", num_frames=50, fps=25, base=(10.0, 0.0, 0.0))
    >>> out = pipe(image, audio, fps=25, **motion.as_kwargs())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .pipeline_s3d_nerf import POSE_LIMITS

MOTION_PRESETS = ("still", "nod", "turn", "orbit")

NOD_AMPLITUDE = 5.0  # degrees of pitch
NOD_PERIOD = 2.0  # seconds per nod: a conversational rhythm, independent of the clip's length
TURN_AMPLITUDE = 20.0  # degrees of yaw at the turn's extreme
ORBIT_YAW = 15.0  # degrees: half-width of the orbit
ORBIT_PITCH = 6.0  # degrees: radius of the orbit in pitch (it spans 0 to 2x this)


@dataclass(frozen=True)
class HeadMotion:
    """Per-frame head-pose offsets from the source pose, each (N,) float32 degrees."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)

    def as_kwargs(self) -> Dict[str, np.ndarray]:
        """The trajectories as the pipeline's ``yaw``, ``pitch`` and ``roll`` keyword arguments."""
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}


def head_motion(
    preset: str,
    num_frames: int,
    fps: float,
    base: Tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> HeadMotion:
    """Trajectories of a motion preset for a clip of ``num_frames`` at ``fps``, added to ``base``.

    Args:
        preset: one of :data:`MOTION_PRESETS`.
        num_frames: frames in the clip (at least 1).
        fps: frame rate, which sets the nod's rhythm in frames.
        base: (yaw, pitch, roll) offsets in degrees the motion is added to (e.g. the app's pose sliders).

    Returns:
        A :class:`HeadMotion`; values beyond ``POSE_LIMITS`` are clipped to the limit, so a base pose near a
        limit plus a motion stays renderable.

    Raises:
        ValueError: unknown preset, no frames, or a non-positive frame rate.
    """
    if preset not in MOTION_PRESETS:
        raise ValueError(f"unknown head-motion preset {preset!r}: choose one of {', '.join(MOTION_PRESETS)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = np.arange(num_frames, dtype=np.float64)
    seconds = frames / fps
    progress = frames / max(num_frames - 1, 1)  # 0 at the first frame, 1 at the last
    zeros = np.zeros(num_frames)
    yaw, pitch, roll = zeros, zeros, zeros
    if preset == "nod":
        pitch = NOD_AMPLITUDE * np.sin(2 * np.pi * seconds / NOD_PERIOD)
    elif preset == "turn":
        yaw = TURN_AMPLITUDE * np.sin(np.pi * progress)
    elif preset == "orbit":
        angle = 2 * np.pi * progress
        yaw = ORBIT_YAW * np.sin(angle)
        pitch = ORBIT_PITCH * (1 - np.cos(angle))  # a circle through the base pose
    offsets = {}
    for name, motion, offset in zip(("yaw", "pitch", "roll"), (yaw, pitch, roll), base):
        limit = POSE_LIMITS[name]
        offsets[name] = np.clip(motion + float(offset), -limit, limit).astype(np.float32)
    return HeadMotion(**offsets)
