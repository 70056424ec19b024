"""The lip-sync score in plain words, and sync over time as a table for a line plot.

The score is the lip-sync discriminator's SyncNet-style confidence (median minus minimum audio-visual distance
over ±15 frame offsets) and the offset of the minimum. Its scale depends on the discriminator, so a number
only means something next to what real, in-sync footage scores with the same discriminator: the reading
compares against that reference when the checkpoint records it (``reference_confidence`` in the lip-sync
component's config), and otherwise judges by the offset alone and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

GOOD_FRACTION = 0.6  # of the ground-truth confidence
FAIR_FRACTION = 0.3
GOOD_OFFSET = 1  # frames: within one frame is imperceptible
FAIR_OFFSET = 3  # frames: ~0.1 s at 25 fps, where viewers start to notice


@dataclass(frozen=True)
class SyncReading:
    """A verdict (``"good"``, ``"fair"``, ``"poor"`` or ``"unavailable"``) and a Markdown explanation."""

    level: str
    text: str


def reference_confidence(pipe) -> Optional[float]:
    """The confidence ground-truth video scores with this pipeline's discriminator, if its config records it."""
    value = pipe.lip_sync.config.get("reference_confidence")
    return None if value is None else float(value)


def read_sync(confidence: Optional[float], offset: Optional[int], fps: float, reference: Optional[float] = None) -> SyncReading:
    """Turn a confidence and an AV offset (frames) into a verdict and a sentence a demo user understands."""
    if confidence is None or offset is None:
        return SyncReading("unavailable", "**Lip sync: not scored.** The clip is shorter than one sync window (5 frames).")
    delay = f"{abs(offset)} frame{'s' if abs(offset) != 1 else ''} ({1000 * abs(offset) / fps:.0f} ms)"
    if offset == 0:
        timing = "Mouth and speech line up (offset 0)."
    else:
        timing = f"The best match is the audio shifted by {delay} {'later' if offset > 0 else 'earlier'}."
    if reference is not None and reference > 0:
        ratio = confidence / reference
        if ratio >= GOOD_FRACTION and abs(offset) <= GOOD_OFFSET:
            level = "good"
        elif ratio >= FAIR_FRACTION and abs(offset) <= FAIR_OFFSET:
            level = "fair"
        else:
            level = "poor"
        scale = (
            f"Confidence {confidence:.3f}; real in-sync video scores about {reference:.3f} with this model "
            f"({100 * ratio:.0f}% of that). Good is above {GOOD_FRACTION:.0%} of it within ±{GOOD_OFFSET} frame, "
            f"fair above {FAIR_FRACTION:.0%} within ±{FAIR_OFFSET} frames."
        )
    else:
        level = "good" if abs(offset) <= GOOD_OFFSET else "fair" if abs(offset) <= FAIR_OFFSET else "poor"
        scale = (
            f"Confidence {confidence:.3f}. This checkpoint records no ground-truth score to compare it with, so the "
            "verdict rests on the offset only; higher confidence means a clearer match."
        )
    return SyncReading(level, f"**Lip sync: {level}.** {timing} {scale}")


def sync_over_time(per_window: np.ndarray, distances: np.ndarray, fps: float, window_frames: int) -> pd.DataFrame:
    """Sync per window as a table for ``gr.LinePlot``: columns ``time (s)`` and ``sync``.

    Args:
        per_window: (W,) distances at offset 0 per window (the output's ``sync_per_window``).
        distances: (2 * max_offset + 1,) distances averaged per offset (the output's ``sync_distances``).
        fps: frame rate, to place each window at its centre in seconds.
        window_frames: frames per window (the discriminator's ``num_frames``).

    ``sync`` is the margin by which a window's distance beats the clip's median distance over offsets, the
    level a misaligned clip would show: above 0 the mouth matches the speech there. Its mean over the clip is
    the confidence when the best offset is 0.
    """
    per_window = np.asarray(per_window, dtype=np.float64)
    times = (np.arange(per_window.size) + window_frames / 2) / fps  # window centres
    return pd.DataFrame({"time (s)": times, "sync": float(np.median(distances)) - per_window})
