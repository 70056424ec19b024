"""The app's limits and controls, defined once: the UI builds its widgets from these and the server checks
requests against the same numbers, so a slider's range and the server's validation cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ..errors import S3DNeRFError


class InvalidControlError(S3DNeRFError):
    """A control value (slider, preset, framing, seed) is outside what the app offers."""


@dataclass(frozen=True)
class SliderSpec:
    """One numeric control: its label, range, step, default and a one-line help text."""

    name: str
    label: str
    minimum: float
    maximum: float
    step: float
    default: float
    info: str

    def check(self, value: float) -> float:
        """The value as a float, or an :class:`InvalidControlError` naming the control and its range."""
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidControlError(f"{self.label} must be a number, got {value!r}") from exc
        if not (self.minimum <= value <= self.maximum):
            raise InvalidControlError(f"{self.label} must be between {self.minimum:g} and {self.maximum:g}, got {value:g}")
        return value


# Pose ranges that look natural on portraits, inside what the pipeline accepts (POSE_LIMITS), so a motion
# preset on top of a slider offset still has room before it is clipped.
YAW = SliderSpec("yaw", "Yaw (turn left / right, °)", -25.0, 25.0, 1.0, 0.0, "Turn the head; 0 keeps the photo's pose.")
PITCH = SliderSpec("pitch", "Pitch (look up / down, °)", -15.0, 15.0, 1.0, 0.0, "Tilt the head up or down.")
ROLL = SliderSpec("roll", "Roll (tilt sideways, °)", -15.0, 15.0, 1.0, 0.0, "Lean the head towards a shoulder.")
POSE_SLIDERS: Tuple[SliderSpec, ...] = (YAW, PITCH, ROLL)
MOUTH = SliderSpec("mouth_amplitude", "Mouth amplitude", 0.0, 2.0, 0.05, 1.0, "1 = as trained; 0 = closed mouth; above 1 exaggerates.")
FPS = SliderSpec("fps", "Frames per second", 10.0, 30.0, 1.0, 25.0, "Fewer frames render faster.")

MOTION_LABELS = {"still": "Still", "nod": "Gentle nod", "turn": "Turn", "orbit": "Orbit"}

FRAMINGS = ("full frame", "face crop")  # the pipeline's crop=False / crop=True
MAX_SEED = 2**31 - 1
# The pipeline's fast=True / fast=False. The fast engine renders the same weights about 10x quicker on a CPU
# (docs/performance.md); the reference path is what training runs, and only it draws random samples (the seed).
RENDERERS = {"fast": "Fast", "reference": "Reference (slower; uses the seed)"}


@dataclass(frozen=True)
class AppConfig:
    """Server-side limits of the demo.

    Attributes:
        max_audio_seconds: longest speech accepted (the pipeline allows more, a shared demo should not).
        max_text_characters: longest text spoken by espeak-ng.
        max_upload_size: largest uploaded file, in gradio's notation.
        concurrency_limit: videos generated at once (each uses every CPU core).
        max_queue_size: requests waiting before new ones are turned away.
        batch_size: frames rendered together.
        output_max_age: seconds a generated video (and any upload) is kept on disk before it is removed.
        max_kept_videos: generated videos kept on disk at most; the oldest go first. Each user's video must stay
            until their browser has fetched it, so keep this well above ``concurrency_limit``.
    """

    max_audio_seconds: float = 20.0
    max_text_characters: int = 400
    max_upload_size: str = "15mb"
    concurrency_limit: int = 1
    max_queue_size: int = 16
    batch_size: int = 8
    output_max_age: float = 3600.0
    max_kept_videos: int = 32
