"""The demo's engine wrapper: requests from the UI or the API in, checked and turned into pipeline calls;
video, score and pictures out. Free of any UI library, so it is tested directly and could serve another front end.

One :class:`TalkingHeadService` wraps one pipeline for the life of the server. It keeps the last few encoded
identities (the single-shot step), so moving a slider re-renders a preview without re-encoding the portrait.
Videos are written as they render (:meth:`S3DNeRFPipeline.export`): no request holds a whole clip's frames.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from ..audio import SAMPLE_RATE, num_video_frames
from ..errors import FaceNotFoundError
from ..motion import MOTION_PRESETS, head_motion
from .config import FPS, FRAMINGS, MAX_SEED, MOUTH, PITCH, RENDERERS, ROLL, YAW, AppConfig, InvalidControlError
from .consent import require_consent
from .inputs import load_portrait, load_speech, load_speech_file
from .sync_report import SyncReading, read_sync, reference_confidence, sync_over_time
from .visuals import attention_overlay, depth_preview, for_display
from .watermark import VIDEO_METADATA, mark_frames

ProgressCallback = Callable[[float, str], None]
IDENTITY_CACHE_SIZE = 4
VIDEO_PREFIX = "talking-head-"


@dataclass
class GenerationRequest:
    """Everything a user sets: file paths as the UI hands them over, and the controls."""

    image: Optional[str]
    audio: Optional[str] = None
    text: Optional[str] = None
    consent: bool = False
    yaw: float = YAW.default
    pitch: float = PITCH.default
    roll: float = ROLL.default
    motion: str = "still"
    mouth_amplitude: float = MOUTH.default
    fps: float = FPS.default
    framing: str = FRAMINGS[0]
    seed: int = 0
    renderer: str = "fast"


@dataclass
class GenerationResult:
    """A finished video and what to show about it.

    Attributes:
        video: the mp4 (H.264 + AAC, watermarked, tagged).
        confidence, offset: the pipeline's lip-sync score (None for clips under one sync window).
        reading: the score in words.
        sync_plot: sync over time (columns ``time (s)``, ``sync``), empty when not scored.
        attention: (S, S, 3) uint8 cross-attention heatmap over the face (S = R enlarged to at least 256 for
            display), or None for models without it.
        depth: (S, S, 3) uint8 depth preview of the middle frame.
        warnings: things the user should know (several faces, framing not supported, ...).
        backend: which face and audio backends ran.
    """

    video: Path
    confidence: Optional[float]
    offset: Optional[int]
    reading: SyncReading
    sync_plot: pd.DataFrame
    attention: Optional[np.ndarray]
    depth: np.ndarray
    warnings: List[str] = field(default_factory=list)
    backend: Dict[str, str] = field(default_factory=dict)


def _no_progress(fraction: float, message: str) -> None:
    """Default progress callback: report nothing."""


class TalkingHeadService:
    """Checks requests and runs the pipeline for the app.

    Args:
        pipe: an :class:`~s3d_pipeline.S3DNeRFPipeline`.
        config: the app's limits.
        output_dir: where videos are written (a new temporary folder by default). As each new video is made,
            files older than ``config.output_max_age`` are removed, and all but the newest
            ``config.max_kept_videos``, so disk use stays bounded however many requests come in.
    """

    def __init__(self, pipe, config: AppConfig = AppConfig(), output_dir: Optional[Path] = None):
        self.pipe = pipe
        self.config = config
        self.output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="s3d-nerf-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # Older pipelines always return the face crop; newer ones take crop=True/False.
        self.supports_framing = "crop" in inspect.signature(pipe.export).parameters
        self._identities: "OrderedDict[str, object]" = OrderedDict()
        self._identity_lock = threading.Lock()

    # ------------------------------------------------------------------ inputs
    def identity(self, image: Optional[str]):
        """The encoded portrait (the pipeline's ``Identity``), from the cache when this image was seen recently.

        Raises:
            InvalidImageError, FaceTooSmallError: as the pipeline reports them.
            FaceNotFoundError: in the app's words (the pipeline's hint about ``aligned=True`` means nothing here).
        """
        rgb, key = load_portrait(image)
        with self._identity_lock:
            if key in self._identities:
                self._identities.move_to_end(key)
                return self._identities[key]
            try:
                identity = self.pipe.encode_identity(rgb)
            except FaceNotFoundError as exc:
                raise FaceNotFoundError(
                    "No face was found in the portrait. Use a well-lit photo of one face looking roughly at the camera, "
                    "with the whole head in the picture."
                ) from exc
            self._identities[key] = identity
            if len(self._identities) > IDENTITY_CACHE_SIZE:
                self._identities.popitem(last=False)
            return identity

    def _check_controls(self, request: GenerationRequest) -> None:
        """Consent first, then every control against the ranges the UI offers."""
        require_consent(request.consent)
        for spec in (YAW, PITCH, ROLL, MOUTH, FPS):
            setattr(request, spec.name, spec.check(getattr(request, spec.name)))
        if request.motion not in MOTION_PRESETS:
            raise InvalidControlError(f"Head motion must be one of {', '.join(MOTION_PRESETS)}, got {request.motion!r}")
        if request.framing not in FRAMINGS:
            raise InvalidControlError(f"Output must be one of {', '.join(FRAMINGS)}, got {request.framing!r}")
        if request.renderer not in RENDERERS:
            raise InvalidControlError(f"Renderer must be one of {', '.join(RENDERERS)}, got {request.renderer!r}")
        seed = request.seed if request.seed is not None else 0
        if not (float(seed).is_integer() and 0 <= seed <= MAX_SEED):
            raise InvalidControlError(f"Seed must be a whole number from 0 to {MAX_SEED}, got {request.seed!r}")
        request.seed = int(seed)

    @staticmethod
    def _renderer_kwargs(request: GenerationRequest) -> dict:
        """The pipeline's engine: the fast one (deterministic), or the reference path with the seeded sample jitter."""
        if request.renderer == "fast":
            return {"fast": True}
        return {"fast": False, "generator": torch.Generator().manual_seed(request.seed)}

    def _framing_kwargs(self, request: GenerationRequest, warnings: List[str]) -> dict:
        if self.supports_framing:
            return {"crop": request.framing == "face crop"}
        if request.framing != "face crop":
            warnings.append("This model version renders the face crop only; full-frame output is not available.")
        return {}

    # ------------------------------------------------------------------ preview
    def preview(self, request: GenerationRequest) -> np.ndarray:
        """One watermarked frame at the slider pose, (H, W, 3) uint8, for instant feedback before a full video.

        The frame is rendered against the loudest moment of the uploaded or recorded speech (so the mouth
        amplitude shows), or silence when there is none; typed text is only spoken for the full video.
        """
        self._check_controls(request)
        identity = self.identity(request.image)
        frame_samples = int(round(SAMPLE_RATE / request.fps))
        snippet = np.zeros(frame_samples, dtype=np.float32)
        if request.audio:
            waveform = load_speech_file(request.audio, self.config)
            frames = waveform[: waveform.size // frame_samples * frame_samples].reshape(-1, frame_samples)  # (N, s)
            if len(frames):
                snippet = frames[int(np.argmax((frames**2).mean(axis=1)))]
        first = next(
            self.pipe.stream(
                identity=identity,
                audio=(snippet, SAMPLE_RATE),
                yaw=request.yaw,
                pitch=request.pitch,
                roll=request.roll,
                fps=request.fps,
                mouth_amplitude=request.mouth_amplitude,
                **self._renderer_kwargs(request),
                **self._framing_kwargs(request, []),
            )
        )  # the stream's first chunk is the first frame alone
        return mark_frames(first[:1])[0]

    # ------------------------------------------------------------------ generate
    def generate(self, request: GenerationRequest, progress: ProgressCallback = _no_progress) -> GenerationResult:
        """Make the talking-head video for a request.

        Args:
            request: the user's inputs and controls.
            progress: called as ``progress(fraction, message)`` at each stage: encoding the identity, loading
                the audio, each rendered and encoded chunk ("frame n of N"), then scoring and finishing the video.

        Raises:
            S3DNeRFError (or a subclass): anything wrong with the request, in words meant for the user.
        """
        self._check_controls(request)
        warnings: List[str] = []
        progress(0.0, "Encoding identity")
        identity = self.identity(request.image)
        warnings += identity.portrait.warnings

        progress(0.1, "Loading audio")
        waveform = load_speech(request.audio, request.text, self.config, str(self.output_dir))
        num_frames = num_video_frames(waveform.size, request.fps)
        motion = head_motion(request.motion, num_frames, request.fps, base=(request.yaw, request.pitch, request.roll))

        def on_frames(done: int, total: int) -> None:
            progress(0.15 + 0.75 * done / total, f"Rendering frame {done} of {total}")
            if done == total:
                progress(0.92, "Scoring lip sync and finishing the video")

        video = self._new_video_path()
        try:
            out = self.pipe.export(
                identity=identity,
                audio=(waveform, SAMPLE_RATE),
                path=video,
                fps=request.fps,
                mouth_amplitude=request.mouth_amplitude,
                batch_size=self.config.batch_size,
                **self._renderer_kwargs(request),
                callback_on_frame_end=on_frames,
                frame_filter=mark_frames,
                metadata=VIDEO_METADATA,
                **motion.as_kwargs(),
                **self._framing_kwargs(request, warnings),
            )
        except BaseException:
            video.unlink(missing_ok=True)  # the empty placeholder: a failed request leaves no file
            raise
        if out.sync_per_window is None:
            sync_plot = pd.DataFrame({"time (s)": [], "sync": []})
        else:
            sync_plot = sync_over_time(out.sync_per_window, out.sync_distances, request.fps, self.pipe.lip_sync.config.num_frames)
        face = identity.portrait.aligned
        return GenerationResult(
            video=video,
            confidence=out.sync_confidence,
            offset=out.sync_offset,
            reading=read_sync(out.sync_confidence, out.sync_offset, request.fps, reference_confidence(self.pipe)),
            sync_plot=sync_plot,
            attention=None if out.attention_map is None else for_display(attention_overlay(face, out.attention_map)),
            depth=for_display(depth_preview(out.depth, face.shape[0])),
            warnings=warnings,
            backend=dict(out.backend or {}),
        )

    def _new_video_path(self) -> Path:
        """A new name for the next video in the output folder (old videos are removed first)."""
        self._remove_old_outputs()
        fd, name = tempfile.mkstemp(prefix=VIDEO_PREFIX, suffix=".mp4", dir=self.output_dir)
        os.close(fd)  # VideoWriter replaces the file atomically when the video is complete
        return Path(name)

    def _remove_old_outputs(self) -> None:
        """Delete outputs past their age, then the oldest beyond the count, leaving room for the one being made."""
        cutoff = time.time() - self.config.output_max_age
        videos = []
        for path in self.output_dir.glob(f"{VIDEO_PREFIX}*.mp4"):  # finished videos; not another request's temporaries
            try:
                videos.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # removed meanwhile (the server's cache cleaning)
                continue
        for rank, (mtime, old) in enumerate(sorted(videos, reverse=True)):
            if rank >= self.config.max_kept_videos - 1 or mtime < cutoff:
                old.unlink(missing_ok=True)
