"""The pipeline's output container."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class S3DNeRFPipelineOutput(BaseOutput):
    """Output of :class:`~s3d_pipeline.S3DNeRFPipeline`.

    Attributes:
        frames: the video, (N, H, W, 3) uint8 for ``output_type="np"``, a list of PIL images for ``"pil"``,
            or (N, 3, H, W) floats in [0, 1] for ``"pt"``.
        fps: frames per second.
        audio: the speech actually used, mono float32 at ``sample_rate`` (trimmed/padded to the video length).
        sample_rate: 16000.
        sync_confidence: SyncNet-style confidence (median minus minimum audio-visual distance over +-15 frame
            offsets) from the lip-sync discriminator; None when the clip is shorter than one sync window.
        sync_offset: audio-visual offset in frames at the minimum distance (0 = in sync).
        sync_distances: (31,) mean audio-visual distance per offset, -15..+15 frames.
        sync_per_window: (W,) distance at offset 0 of each window of the discriminator's T frames, in time order
            (lower = in sync there): sync over time.
        depth: (N, h, w) float32 depth of the coarse render (distance along the ray), in the aligned crop.
        attention_map: (N, R, R) float32 in [0, 1], the cross-modal attention mapped back onto the aligned face
            (high where the audio moves the face).
        backend: which face / audio backends ran, for honesty in logs and the app.
    """

    frames: Union[np.ndarray, List[PIL.Image.Image], torch.Tensor]
    fps: float
    audio: np.ndarray
    sample_rate: int
    sync_confidence: Optional[float] = None
    sync_offset: Optional[int] = None
    sync_distances: Optional[np.ndarray] = None
    sync_per_window: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    attention_map: Optional[np.ndarray] = None
    backend: Optional[dict] = None
