"""A picture of what the evaluated weights render: ground truth above the model, a few frames of the first
held-out clips side by side (``s3d-nerf eval --samples PNG``), so the figure in the docs comes from the same run
as the numbers next to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import PIL.Image


@dataclass
class SampleSheet:
    """Collects (ground truth, model) frames of the first ``clips`` clips it is given.

    Attributes:
        clips: how many clips the sheet shows (two rows each: ground truth, then the model).
        frames: frame indices shown per clip, left to right; indices past a clip's end are left out.
    """

    clips: int = 2
    frames: Sequence[int] = (0, 15, 30, 45, 60)
    _pairs: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list, init=False, repr=False)

    def add(self, frames_gt: np.ndarray, model: np.ndarray) -> None:
        """Keep one clip's frames, both (N, R, R, 3) uint8 at the same resolution, if the sheet has room."""
        if frames_gt.shape != model.shape:
            raise ValueError(f"ground truth {frames_gt.shape} and model frames {model.shape} differ in shape")
        if len(self._pairs) < self.clips:
            self._pairs.append((frames_gt, model))

    def image(self) -> np.ndarray:
        """The sheet (2 x clips x R, columns x R, 3) uint8; columns are the frame indices every kept clip has."""
        if not self._pairs:
            raise ValueError("the sample sheet has no clips: evaluate at least one clip first")
        length = min(len(gt) for gt, _ in self._pairs)
        columns = [k for k in self.frames if 0 <= k < length]
        rows = [np.concatenate([frames[k] for k in columns], axis=1) for pair in self._pairs for frames in pair]
        return np.concatenate(rows, axis=0)

    def save(self, path: Path) -> None:
        """Write the sheet as a PNG (the folder must exist)."""
        PIL.Image.fromarray(self.image()).save(path, format="PNG")
