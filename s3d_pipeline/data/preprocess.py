"""Real talking-face videos (e.g. HDTF) -> the clip format of :mod:`s3d_pipeline.data.clip`.

Per video, in two decoding passes so memory stays flat in the video's length:

1. Track the face (full-frame detection until found, then a search around the last box) and get 68 landmarks
   per frame in video pixels. Frames where the face is lost, and frames whose whole face jumps away from its
   neighbours and back (a detector slip, see :func:`reject_jumps`), are interpolated from their neighbours.
2. Smooth the eye-centre and mouth-centre tracks over time (a Gaussian of ``smoothing`` frames) so the crop
   does not jitter with the detector, warp every frame into the model's framing with
   :func:`s3d_pipeline.face.alignment_transform`, estimate its head pose (PnP of the mean 3D face, as for
   portraits, smoothed the same way) and cut the video into clips of at most ``segment_seconds``.

Audio is decoded to 16 kHz mono with ffmpeg and cut with the frames. A video that cannot be decoded, has no
sound, or has no usable face is skipped with its reason; the batch goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from ..errors import FaceNotFoundError, FaceTooSmallError, S3DNeRFError
from ..face import (
    MIN_FACE_SIZE,
    NOSE_AND_EYES,
    FaceBackend,
    FaceBox,
    apply_affine,
    estimate_head_pose,
    eye_and_mouth_centres,
    framing_transform,
    get_face_backend,
    pick_largest_face,
    warp_to_crop,
)
from ..rendering.cameras import intrinsics, pose_to_cam2world
from ..video import extract_audio, iter_video
from .clip import AUDIO_SAMPLE_RATE, ClipMeta, write_clip

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass
class PreprocessConfig:
    """Settings of real-video preprocessing.

    Attributes:
        fps: frame rate of the clips (videos are resampled by ffmpeg).
        resolution: side of the square face crops.
        segment_seconds: a video is cut into clips of at most this length.
        min_seconds: shorter leftovers at a video's end are dropped.
        smoothing: standard deviation, in frames, of the temporal smoothing of the crop and the pose.
        jump_tolerance: a frame whose nose and eyes sit further than this fraction of the eye-to-mouth distance
            from the median of the frames around it (or whose face scale differs from it by this fraction) is a
            detector slip; its landmarks are replaced by interpolation. 0 turns the check off.
        max_missing: a video is skipped when the face is lost in more than this fraction of frames.
        face_backend: see :func:`s3d_pipeline.face.get_face_backend`.
    """

    fps: float = 25.0
    resolution: int = 256
    segment_seconds: float = 10.0
    min_seconds: float = 0.5
    smoothing: float = 2.0
    jump_tolerance: float = 0.1
    max_missing: float = 0.2
    face_backend: str = "auto"


@dataclass
class VideoResult:
    """What happened to one video: the clips written, or why it was skipped."""

    video: Path
    clips: List[Path] = field(default_factory=list)
    num_frames: int = 0
    error: Optional[str] = None


class FaceTracker:
    """Follows one face through a video: searches a window around the last box (a few ms), and falls back
    to full-frame detection of the largest face when the face is lost."""

    def __init__(self, backend: FaceBackend, margin: float = 0.5):
        self.detector = backend.detector
        self.margin = margin  # window = box grown by this fraction of its size on each side
        self.box: Optional[FaceBox] = None

    def __call__(self, frame: np.ndarray) -> Optional[FaceBox]:
        box = self._search_near_last(frame) if self.box is not None else None
        if box is None:
            found = self.detector(frame)
            box = pick_largest_face(found)[0] if found else None
        self.box = box
        return box

    def _search_near_last(self, frame: np.ndarray) -> Optional[FaceBox]:
        h, w = frame.shape[:2]
        last, grow = self.box, self.margin * self.box.size
        x0, y0 = int(max(0, last.x0 - grow)), int(max(0, last.y0 - grow))
        x1, y1 = int(min(w, last.x1 + grow)), int(min(h, last.y1 + grow))
        found = self.detector(np.ascontiguousarray(frame[y0:y1, x0:x1]), min_size=0.7 * last.size, max_size=1.4 * last.size)
        if not found:
            return None
        nearest = min(found, key=lambda b: float(np.linalg.norm(b.centre + (x0, y0) - last.centre)))
        return FaceBox(nearest.x0 + x0, nearest.y0 + y0, nearest.x1 + x0, nearest.y1 + y0)


def _fill_gaps(track: np.ndarray) -> np.ndarray:
    """Linearly interpolate frames that are NaN along axis 0 (held constant beyond the ends): (N, ...) -> (N, ...)."""
    flat = track.reshape(len(track), -1)  # (N, D)
    known = ~np.isnan(flat[:, 0])
    frames = np.arange(len(track))
    filled = np.stack([np.interp(frames, frames[known], column[known]) for column in flat.T], axis=-1)
    return filled.reshape(track.shape)


def track_landmarks(frames: Iterable[np.ndarray], backend: FaceBackend) -> Tuple[np.ndarray, np.ndarray]:
    """Landmarks of the tracked face in every frame.

    Returns:
        landmarks (N, 68, 2) in video pixels, NaN where the face was lost; face sizes (N,) in pixels, NaN there.
    """
    tracker = FaceTracker(backend)
    landmarks, sizes = [], []
    for frame in frames:
        box = tracker(frame)
        landmarks.append(backend.landmarker(frame, box) if box is not None else np.full((68, 2), np.nan))
        sizes.append(box.size if box is not None else np.nan)
    return np.asarray(landmarks, dtype=np.float64), np.asarray(sizes, dtype=np.float64)


def reject_jumps(landmarks: np.ndarray, tolerance: float, window: int = 5) -> np.ndarray:
    """Mark frames whose whole face jumps away from its neighbours as lost: (N, 68, 2) -> (N, 68, 2), NaN there.

    A head moves smoothly at video rates, so its rigid part (nose and eyes, which speech does not move) stays
    close to the running median of the ``window`` frames around it. A face detector does slip for a frame or two
    by several pixels; with box-placed landmarks that moves every landmark, and a training clip would show it as
    jitter of the whole face. The check looks only at the rigid part's position and scale, so lips and jaw, which
    do move fast with speech, never trigger it. At a clip's ends the window repeats the end frame, so fast
    smooth motion there is not taken for a slip (a slip on the very first or last frame goes unnoticed).
    Expects gap-free landmarks.
    """
    if tolerance <= 0 or len(landmarks) < 3:
        return landmarks
    rigid = landmarks[:, NOSE_AND_EYES]  # (N, 21, 2)
    centre = rigid.mean(1)  # (N, 2)
    spread = np.linalg.norm(rigid - centre[:, None], axis=-1).mean(1)  # (N,) scale of the rigid part
    eyes, mouth = eye_and_mouth_centres(landmarks)
    eye_to_mouth = float(np.median(np.linalg.norm(mouth - eyes, axis=-1)))
    size = (min(window, len(landmarks)), 1)
    shift = np.linalg.norm(centre - median_filter(centre, size=size, mode="nearest"), axis=-1) / eye_to_mouth
    rescale = np.abs(spread / median_filter(spread[:, None], size=size, mode="nearest")[:, 0] - 1.0)
    jumped = (shift > tolerance) | (rescale > tolerance)
    if jumped.all():
        return landmarks
    rejected = landmarks.copy()
    rejected[jumped] = np.nan
    return rejected


def smooth_crops(landmarks: np.ndarray, resolution: int, sigma: float) -> np.ndarray:
    """Per-frame (N, 2, 3) transforms video pixels -> crop pixels, from eye/mouth tracks smoothed over time."""
    eyes, mouth = eye_and_mouth_centres(landmarks)  # (N, 2) each
    if sigma > 0:
        eyes, mouth = (gaussian_filter1d(track, sigma, axis=0, mode="nearest") for track in (eyes, mouth))
    return np.stack([framing_transform(e, m, resolution) for e, m in zip(eyes, mouth)])


def preprocess_video(video: Path, out_dir: Path, config: PreprocessConfig, backend: Optional[FaceBackend] = None) -> VideoResult:
    """Turn one talking-face video into clip folders ``<out_dir>/<video stem>_<k>``.

    Raises:
        S3DNeRFError (InvalidVideoError, InvalidAudioError, FaceNotFoundError, FaceTooSmallError): the
            video is unusable; nothing is written for it.
    """
    backend = backend or get_face_backend(config.face_backend)
    video = Path(video)
    info, frames = iter_video(video, fps=config.fps)  # fails early on files that are not videos
    audio = extract_audio(video, AUDIO_SAMPLE_RATE)  # (S,); fails early on videos without sound

    # 1. Track the face.
    raw_landmarks, sizes = track_landmarks(frames, backend)  # (N, 68, 2), (N,)
    num_frames = len(raw_landmarks)
    missing = float(np.isnan(sizes).mean()) if num_frames else 1.0
    if missing > config.max_missing:
        raise FaceNotFoundError(
            f"no face in {missing:.0%} of the frames of {video.name} (at most {config.max_missing:.0%} allowed); "
            "use videos of one frontal talking face"
        )
    face_size = float(np.nanmedian(sizes))
    if face_size < MIN_FACE_SIZE:
        raise FaceTooSmallError(f"the face in {video.name} is {face_size:.0f} px across; at least {MIN_FACE_SIZE} px is needed")
    raw_landmarks = reject_jumps(_fill_gaps(raw_landmarks), config.jump_tolerance)
    slipped = float(np.isnan(raw_landmarks[:, 0, 0]).mean())
    raw_landmarks = _fill_gaps(raw_landmarks)

    # 2. Stable crops, per-frame landmarks in crop pixels and head poses.
    to_crop = smooth_crops(raw_landmarks, config.resolution, config.smoothing)  # (N, 2, 3)
    landmarks = np.stack([apply_affine(t, p) for t, p in zip(to_crop, raw_landmarks)])  # (N, 68, 2)
    poses = np.stack([estimate_head_pose(p, config.resolution) for p in landmarks])  # (N, 3) degrees
    if config.smoothing > 0:
        poses = gaussian_filter1d(poses, config.smoothing, axis=0, mode="nearest")
    cam2world = pose_to_cam2world(*(poses.T.astype(np.float32))).numpy()  # (N, 4, 4)

    # 3. Warp frames and write clips segment by segment.
    result = VideoResult(video=video, num_frames=num_frames)
    segment = max(1, int(round(config.segment_seconds * config.fps)))
    samples_per_frame = AUDIO_SAMPLE_RATE / config.fps
    _, frames = iter_video(video, fps=config.fps)
    buffer: List[np.ndarray] = []
    for index, frame in enumerate(frames):
        if index >= num_frames:
            break
        buffer.append(warp_to_crop(frame, to_crop[index], config.resolution))
        if len(buffer) == segment or index == num_frames - 1:
            start = index + 1 - len(buffer)
            if len(buffer) >= config.min_seconds * config.fps:
                clip_audio = np.zeros(int(round(len(buffer) * samples_per_frame)), dtype=np.float32)
                piece = audio[int(round(start * samples_per_frame)) : int(round(start * samples_per_frame)) + len(clip_audio)]
                clip_audio[: len(piece)] = piece
                meta = ClipMeta(
                    fps=float(config.fps),
                    num_frames=len(buffer),
                    resolution=[config.resolution, config.resolution],
                    intrinsics=intrinsics().tolist(),
                    cam2world=cam2world[start : index + 1].tolist(),
                    landmarks=landmarks[start : index + 1].tolist(),
                    identity=video.stem,
                    source="real",
                    extra={
                        "video": video.name,
                        "start_frame": start,
                        "source_fps": info.fps,
                        "face_backend": backend.name,
                        "face_missing_fraction": missing,
                        "face_slip_fraction": slipped,
                    },
                )
                name = f"{video.stem}_{len(result.clips):03d}"
                result.clips.append(write_clip(out_dir / name, meta, np.stack(buffer), clip_audio))
            buffer = []
    return result


def find_videos(folder: Path) -> List[Path]:
    """Video files under ``folder`` (any depth), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def preprocess_videos(videos: Iterable[Path], out_dir: Path, config: PreprocessConfig) -> List[VideoResult]:
    """Preprocess a batch; a bad video is logged and reported in its :class:`VideoResult`, never fatal."""
    backend = get_face_backend(config.face_backend)
    results = []
    for video in videos:
        try:
            result = preprocess_video(video, out_dir, config, backend)
        except (S3DNeRFError, RuntimeError, OSError) as exc:
            logger.warning("skipping %s: %s", video, exc)
            result = VideoResult(video=Path(video), error=str(exc))
        results.append(result)
    return results
