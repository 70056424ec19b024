"""The clip format shared by the synthetic corpus and the semi-synthetic clips of real photos (``s3d-nerf synth``,
``synth --from-photos``), real-video preprocessing (``s3d-nerf preprocess``), training and evaluation.

One folder per clip::

    clip_0001/
      frames.npz   rgb (N, H, W, 3) uint8; optional mask (N, H, W) uint8 (255 = head), depth (N, H, W) float16
                   (camera-space z, 0 where empty)
      audio.wav    16 kHz mono PCM16
      meta.json    see :class:`ClipMeta`

Landmarks use the 68-point iBUG convention in pixel coordinates of the stored frames (x right, y down), so
LMD is comparable with published numbers. Cameras follow :mod:`s3d_pipeline.rendering.cameras`.
Writing is atomic: a clip is assembled in a temporary sibling folder and renamed into place, so a reader
never sees half a clip.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf

FORMAT_VERSION = 1
AUDIO_SAMPLE_RATE = 16000


class ClipFormatError(ValueError):
    """A clip folder is missing a file or holds inconsistent data."""


@dataclass
class ClipMeta:
    """``meta.json`` of a clip.

    Attributes:
        fps: frames per second of ``frames.npz``.
        num_frames: N.
        resolution: [H, W] of the frames.
        intrinsics: normalized 3x3 intrinsics (shared by all frames).
        cam2world: N x 4 x 4 per-frame cameras in the head's canonical frame.
        landmarks: N x 68 x 2 pixel landmarks.
        identity: identity id (disjoint between train and test splits).
        source: "synthetic", "semi-synthetic" (a real photo animated by the corpus's tracks) or "real".
        visemes: (semi-)synthetic only, N x P ground-truth mouth parameters named by ``viseme_names``.
        extra: anything else a producer wants to record (voice, sentence, head motion, ...).
    """

    fps: float
    num_frames: int
    resolution: List[int]
    intrinsics: List[List[float]]
    cam2world: List[List[List[float]]]
    landmarks: List[List[List[float]]]
    identity: str
    source: str = "synthetic"
    visemes: Optional[List[List[float]]] = None
    viseme_names: Optional[List[str]] = None
    extra: Dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        n = self.num_frames
        if np.asarray(self.cam2world).shape != (n, 4, 4):
            raise ClipFormatError(f"cam2world must be {n}x4x4, got {np.asarray(self.cam2world).shape}")
        if np.asarray(self.landmarks).shape != (n, 68, 2):
            raise ClipFormatError(f"landmarks must be {n}x68x2, got {np.asarray(self.landmarks).shape}")
        if self.visemes is not None and len(self.visemes) != n:
            raise ClipFormatError(f"visemes must have {n} rows, got {len(self.visemes)}")


@dataclass
class Clip:
    """A clip in memory."""

    path: Optional[Path]
    meta: ClipMeta
    rgb: np.ndarray  # (N, H, W, 3) uint8
    audio: np.ndarray  # (S,) float32 at 16 kHz
    mask: Optional[np.ndarray] = None  # (N, H, W) uint8
    depth: Optional[np.ndarray] = None  # (N, H, W) float16

    @property
    def cam2world(self) -> np.ndarray:
        return np.asarray(self.meta.cam2world, dtype=np.float32)

    @property
    def landmarks(self) -> np.ndarray:
        return np.asarray(self.meta.landmarks, dtype=np.float32)


def write_clip(
    out_dir: os.PathLike,
    meta: ClipMeta,
    rgb: np.ndarray,
    audio: np.ndarray,
    mask: Optional[np.ndarray] = None,
    depth: Optional[np.ndarray] = None,
) -> Path:
    """Write one clip folder atomically; returns its path. Overwrites an existing clip of the same name."""
    meta.validate()
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[0] != meta.num_frames:
        raise ClipFormatError(f"rgb must be uint8 (N={meta.num_frames}, H, W, 3), got {rgb.dtype} {rgb.shape}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        arrays = {"rgb": rgb}
        if mask is not None:
            arrays["mask"] = mask.astype(np.uint8)
        if depth is not None:
            arrays["depth"] = depth.astype(np.float16)
        np.savez_compressed(tmp / "frames.npz", **arrays)
        sf.write(tmp / "audio.wav", np.asarray(audio, dtype=np.float32), AUDIO_SAMPLE_RATE, subtype="PCM_16")
        (tmp / "meta.json").write_text(json.dumps(asdict(meta)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_meta(clip_dir: os.PathLike) -> ClipMeta:
    path = Path(clip_dir) / "meta.json"
    if not path.is_file():
        raise ClipFormatError(f"{clip_dir} is not a clip folder: meta.json is missing")
    meta = ClipMeta(**json.loads(path.read_text()))
    meta.validate()
    return meta


def read_clip(clip_dir: os.PathLike, load_depth: bool = True) -> Clip:
    """Read a clip folder written by :func:`write_clip`."""
    clip_dir = Path(clip_dir)
    meta = read_meta(clip_dir)
    for name in ("frames.npz", "audio.wav"):
        if not (clip_dir / name).is_file():
            raise ClipFormatError(f"{clip_dir} is missing {name}")
    with np.load(clip_dir / "frames.npz") as data:
        rgb = data["rgb"]
        mask = data["mask"] if "mask" in data.files else None
        depth = data["depth"] if load_depth and "depth" in data.files else None
    audio = read_clip_audio(clip_dir)
    if rgb.shape[0] != meta.num_frames:
        raise ClipFormatError(f"{clip_dir}: frames.npz has {rgb.shape[0]} frames, meta.json says {meta.num_frames}")
    return Clip(path=clip_dir, meta=meta, rgb=rgb, audio=audio, mask=mask, depth=depth)


def read_clip_audio(clip_dir: os.PathLike) -> np.ndarray:
    """A clip's speech alone, (S,) float32 at 16 kHz, without decoding its frames."""
    path = Path(clip_dir) / "audio.wav"
    if not path.is_file():
        raise ClipFormatError(f"{clip_dir} is missing audio.wav")
    audio, sr = sf.read(path, dtype="float32")
    if sr != AUDIO_SAMPLE_RATE or audio.ndim != 1:
        raise ClipFormatError(f"{path} must be 16 kHz mono, got {sr} Hz with shape {audio.shape}")
    return audio


def list_clips(root: os.PathLike) -> List[Path]:
    """All clip folders under ``root`` (any depth), sorted, skipping temporary half-written ones."""
    root = Path(root)
    if not root.is_dir():
        raise ClipFormatError(f"data folder {root} does not exist")
    return sorted(p.parent for p in root.rglob("meta.json") if not p.parent.name.startswith("."))
