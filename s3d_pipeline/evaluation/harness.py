"""The held-out evaluation: render each clip from its own first frame and speech, score it with the field's
metrics, and score three references the same way, side by side.

Variants per clip (frame-aligned metrics use the ground-truth camera of every frame):
  - ``model``: the pipeline driven by the clip's speech from its first frame, at each frame's camera;
  - ``ground_truth``: the clip itself (the ceiling for sync, CPBD and the landmark detector's own error);
  - ``static``: the first frame repeated (what "no animation" scores);
  - ``shuffled``: the model driven by another clip's speech (what sync looks like when audio is unrelated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.clip import Clip, read_clip, read_clip_audio
from ..engines import Identity
from ..frames import resize_uint8, to_uint8
from ..models.lip_sync import LipSyncDiscriminator
from ..pipeline_s3d_nerf import S3DNeRFPipeline
from ..rendering.cameras import cam2world_to_pose, relative_cam2world
from . import metrics
from .landmarks import DETECTOR_NAME, LandmarkRegressor
from .sample_sheet import SampleSheet

VARIANTS = ("model", "ground_truth", "static", "shuffled")
METRICS = ("ssim", "ssim_source_view", "psnr", "lpips", "f_lmd", "m_lmd", "cpbd", "sync_conf", "sync_offset", "mouth_corr")
# |yaw - source yaw| bins (degrees) for the model's novel-view report.
YAW_BINS = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0))


@dataclass
class Evaluator:
    """Scores clips. ``landmarks`` and ``lpips`` are optional: without them their metrics are None (never guessed).

    Attributes:
        pipe: the pipeline under test.
        sync: the lip-sync discriminator that scores every variant (by default the checkpoint's own).
        landmarks: the landmark detector run on every variant's frames.
        lpips: a callable (frames, reference) -> mean LPIPS, when its backbone weights are available.
        batch_size: frames rendered together.
        fast: render the model with the fast engine (:mod:`s3d_pipeline.engines.fast`) instead of the reference
            engine; ``s3d-nerf bench`` reports the PSNR between the two.
        samples: when set, collects the model's frames beside the ground truth for a picture of the results.
    """

    pipe: S3DNeRFPipeline
    sync: LipSyncDiscriminator
    landmarks: Optional[LandmarkRegressor] = None
    lpips: Optional[Callable[[np.ndarray, np.ndarray], float]] = None
    batch_size: int = 8
    fast: bool = False
    samples: Optional[SampleSheet] = None
    log: Callable[[str], None] = print

    def render(self, identity: Identity, poses: torch.Tensor, audio: np.ndarray, fps: float) -> np.ndarray:
        """The model's frames (N, R, R, 3) uint8 from an encoded source, pose offsets (N, 3) and speech."""
        chunks = self.pipe.iter_frames(identity, audio, poses, fps, self.batch_size, fast=self.fast)
        return to_uint8(torch.cat([chunk.frames for chunk in chunks]))

    def score(self, frames: np.ndarray, clip: Clip, frames_gt: np.ndarray, landmarks_gt: np.ndarray, opening_gt: np.ndarray) -> Dict[str, Optional[float]]:
        """Every metric of one variant's frames against the clip's ground truth."""
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        sync = self.sync.score(video, torch.from_numpy(clip.audio), clip.meta.fps)
        result: Dict[str, Optional[float]] = {
            "ssim": metrics.ssim(frames, frames_gt),
            "psnr": metrics.psnr(frames, frames_gt),
            "lpips": self.lpips(frames, frames_gt) if self.lpips is not None else None,
            "cpbd": metrics.mean_cpbd(frames),
            "sync_conf": sync.confidence if sync is not None else None,
            "sync_offset": float(sync.offset) if sync is not None else None,
            "ssim_source_view": None,
            "f_lmd": None,
            "m_lmd": None,
            "mouth_corr": None,
        }
        if self.landmarks is not None:
            detected = self.landmarks.detect(frames)
            result["f_lmd"] = metrics.landmark_distance(detected, landmarks_gt)
            result["m_lmd"] = metrics.landmark_distance(detected, landmarks_gt, mouth_only=True)
            result["mouth_corr"] = metrics.correlation(metrics.mouth_opening(detected), opening_gt)
        return result

    def evaluate_clip(self, clip: Clip, other_audio: np.ndarray) -> Dict[str, Dict[str, Optional[float]]]:
        size = self.pipe.resolution
        frames_gt = resize_uint8(clip.rgb, size)
        scale = size / clip.rgb.shape[2]
        landmarks_gt = clip.landmarks * scale
        opening_gt = metrics.mouth_opening(landmarks_gt)
        # Source = frame 0; every frame at its own camera, as an offset from the source view.
        identity = self.pipe.encode_identity(frames_gt[0], aligned=True, fast=self.fast)
        c2w = torch.from_numpy(clip.cam2world)
        poses = cam2world_to_pose(relative_cam2world(c2w[:1], c2w))  # (N, 3)
        model = self.render(identity, poses, clip.audio, clip.meta.fps)
        shuffled = self.render(identity, poses, _fit_length(other_audio, clip.audio.size), clip.meta.fps)
        static = np.repeat(frames_gt[:1], len(frames_gt), axis=0)
        if self.samples is not None:
            self.samples.add(frames_gt, model)
        out = {
            "model": self.score(model, clip, frames_gt, landmarks_gt, opening_gt),
            "ground_truth": self.score(frames_gt, clip, frames_gt, landmarks_gt, opening_gt),
            "static": self.score(static, clip, frames_gt, landmarks_gt, opening_gt),
            "shuffled": self.score(shuffled, clip, frames_gt, landmarks_gt, opening_gt),
        }
        # Single-shot reconstruction: frame 0 is rendered at the source camera itself.
        out["model"]["ssim_source_view"] = metrics.ssim(model[:1], frames_gt[:1])
        out["model"].update(_yaw_binned(model, frames_gt, clip))
        return out

    def evaluate(self, clip_dirs: Sequence[Path]) -> Dict[str, Dict]:
        """Evaluate clips; returns per-variant means plus per-clip results under ``"per_clip"``."""
        if len(clip_dirs) < 2:
            raise ValueError("evaluation needs at least 2 clips (the shuffled-audio reference borrows another clip's speech)")
        per_clip: List[Dict] = []
        for k, clip_dir in enumerate(clip_dirs):
            clip = read_clip(clip_dir, load_depth=False)
            other = read_clip_audio(clip_dirs[(k + 1) % len(clip_dirs)])
            result = self.evaluate_clip(clip, other)
            result["clip"] = str(clip_dir)
            per_clip.append(result)
            m = result["model"]
            self.log(f"[{k + 1}/{len(clip_dirs)}] {clip_dir}: ssim {m['ssim']:.3f} psnr {m['psnr']:.2f} sync {m['sync_conf']}")
        summary = {variant: _mean([c[variant] for c in per_clip]) for variant in VARIANTS}
        summary["per_clip"] = per_clip
        return summary


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Loop or cut ``audio`` to ``length`` samples."""
    reps = -(-length // max(audio.size, 1))
    return np.tile(audio, reps)[:length]


def _yaw_binned(frames: np.ndarray, frames_gt: np.ndarray, clip: Clip) -> Dict[str, Optional[float]]:
    """SSIM and PSNR of the model per |yaw offset from the source| bin: novel views against ground-truth renders."""
    c2w = torch.from_numpy(clip.cam2world)
    yaw = cam2world_to_pose(c2w)[:, 0].numpy()
    delta = np.abs(yaw - yaw[0])
    out: Dict[str, Optional[float]] = {}
    for lo, hi in YAW_BINS:
        pick = (delta >= lo) & (delta < hi)
        key = f"yaw_{int(lo)}_{int(hi)}"
        out[f"ssim_{key}"] = metrics.ssim(frames[pick], frames_gt[pick]) if pick.any() else None
        out[f"psnr_{key}"] = metrics.psnr(frames[pick], frames_gt[pick]) if pick.any() else None
        out[f"frames_{key}"] = int(pick.sum())
    return out


def _mean(results: List[Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """Mean of each metric over clips, skipping clips where it is None; None if no clip has it.

    ``frames_*`` counters are summed instead.
    """
    keys = list(dict.fromkeys(k for r in results for k in r))
    out: Dict[str, Optional[float]] = {}
    for key in keys:
        values = [r[key] for r in results if r.get(key) is not None]
        if key.startswith("frames_"):
            out[key] = int(sum(values))
        else:
            out[key] = float(np.mean(values)) if values else None
    for key in METRICS:
        out.setdefault(key, None)
    return out


def landmark_detector_note() -> str:
    return f"{DETECTOR_NAME}: a two-stage CNN regressor (face, then a full-resolution mouth window) trained on synthetic clips; valid on synthetic-looking aligned faces only"
