"""Training samples drawn from clip folders (:mod:`s3d_pipeline.data.clip`).

The generator learns single-shot animation and novel views: each sample pairs a *source* frame with a window of
T consecutive *target* frames of the same identity (another clip of it, or the same clip at another time), so
source and targets differ in head pose and mouth state. Targets are seen by
``relative_cam2world(source_c2w, target_c2w)``: the camera in the source view's tri-plane frame, the same frame
the pipeline's pose offsets (``pose_to_cam2world``) live in at inference.

Sampling is driven by one seeded ``numpy`` generator per process (seed + rank), whose state goes into the
checkpoint, so a resumed run draws exactly the samples the uninterrupted run would have.
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.clip import Clip, ClipMeta, list_clips, read_clip, read_meta
from ..models.lip_sync import LipSyncDiscriminator
from ..rendering.cameras import relative_cam2world


@dataclass
class ClipInfo:
    """What sampling needs to know about a clip without loading its frames."""

    path: Path
    identity: str
    num_frames: int
    fps: float


@dataclass
class Corpus:
    """Clip folders grouped by identity, split into training and held-out identities."""

    train: List[ClipInfo]
    holdout: List[ClipInfo]

    @classmethod
    def from_folder(cls, root: os.PathLike, holdout_identities: int = 0, min_frames: int = 1) -> "Corpus":
        """Index every clip under ``root``; the last ``holdout_identities`` identities (sorted) are held out when
        the corpus has more identities than that. Clips shorter than ``min_frames`` are skipped."""
        infos = []
        for path in list_clips(root):
            meta: ClipMeta = read_meta(path)
            if meta.num_frames >= min_frames:
                infos.append(ClipInfo(path=path, identity=meta.identity, num_frames=meta.num_frames, fps=float(meta.fps)))
        if not infos:
            raise ValueError(f"no clip folders with at least {min_frames} frames under {root}")
        identities = sorted({c.identity for c in infos})
        held = set(identities[-holdout_identities:]) if 0 < holdout_identities < len(identities) else set()
        return cls(train=[c for c in infos if c.identity not in held], holdout=[c for c in infos if c.identity in held])


class ClipCache:
    """Keeps the most recently read clips in memory (reading and decompressing a clip costs far more than a step)."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._clips: "OrderedDict[Path, Clip]" = OrderedDict()

    def __call__(self, path: Path) -> Clip:
        if path in self._clips:
            self._clips.move_to_end(path)
            return self._clips[path]
        clip = read_clip(path, load_depth=False)
        self._clips[path] = clip
        if len(self._clips) > self.capacity:
            self._clips.popitem(last=False)
        return clip


def frames_to_tensor(rgb: np.ndarray, resolution: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, resolution, resolution) float in [0, 1] (area-resampled if needed)."""
    frames = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float().div(255.0)  # (N, C, H, W)
    if frames.shape[-1] != resolution or frames.shape[-2] != resolution:
        frames = F.interpolate(frames, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return frames


@dataclass
class GeneratorBatch:
    """B (source, target window) pairs.

    Attributes:
        source: (B, 3, R, R) source frames in [-1, 1].
        targets: (B, T, 3, R, R) target frames in [-1, 1].
        cameras: (B, T, 4, 4) target cameras in each source's tri-plane frame.
        waveforms: per pair, the clip's (S,) 16 kHz speech.
        starts: per pair, the index of the first target frame in its clip.
        num_frames, fps: per pair, of the target clip.
        masks: (B, T, 1, R, R) target head masks in [0, 1], or None when any target clip has none.
    """

    source: torch.Tensor
    targets: torch.Tensor
    cameras: torch.Tensor
    waveforms: List[torch.Tensor]
    starts: List[int]
    num_frames: List[int]
    fps: List[float]
    masks: Optional[torch.Tensor] = None


class Sampler:
    """Draws training batches from a list of clips with a seeded generator whose state can be saved and restored."""

    def __init__(self, clips: Sequence[ClipInfo], resolution: int, window: int, seed: int, cache_size: int = 8) -> None:
        if not clips:
            raise ValueError("no training clips")
        short = [c.path for c in clips if c.num_frames < window]
        if short:
            raise ValueError(f"{len(short)} clips have fewer than {window} frames, e.g. {short[0]}")
        self.clips = list(clips)
        self.resolution = resolution
        self.window = window
        self.rng = np.random.default_rng(seed)
        self.cache = ClipCache(cache_size)
        self.by_identity: Dict[str, List[int]] = defaultdict(list)
        for i, clip in enumerate(self.clips):
            self.by_identity[clip.identity].append(i)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    # ------------------------------------------------------------------ generator pairs
    def _source_for(self, clip_index: int, target_start: int) -> Tuple[int, int]:
        """A source (clip, frame) of the same identity, outside the target window when it is drawn from the same clip."""
        candidates = self.by_identity[self.clips[clip_index].identity]
        source_clip = candidates[self.rng.integers(len(candidates))]
        n = self.clips[source_clip].num_frames
        if source_clip == clip_index and n > self.window:
            outside = [f for f in range(n) if not (target_start <= f < target_start + self.window)]
            return source_clip, int(outside[self.rng.integers(len(outside))])
        return source_clip, int(self.rng.integers(n))

    def generator_batch(self, batch_size: int) -> GeneratorBatch:
        sources, targets, masks, cameras, waveforms, starts, lengths, rates = [], [], [], [], [], [], [], []
        for _ in range(batch_size):
            clip_index = int(self.rng.integers(len(self.clips)))
            info = self.clips[clip_index]
            start = int(self.rng.integers(info.num_frames - self.window + 1))
            source_clip, source_frame = self._source_for(clip_index, start)
            clip, source = self.cache(info.path), self.cache(self.clips[source_clip].path)
            sources.append(frames_to_tensor(source.rgb[source_frame : source_frame + 1], self.resolution)[0])
            targets.append(frames_to_tensor(clip.rgb[start : start + self.window], self.resolution))
            if clip.mask is not None:
                masks.append(frames_to_tensor(clip.mask[start : start + self.window, :, :, None], self.resolution))  # (T, 1, R, R)
            source_c2w = torch.from_numpy(source.cam2world[source_frame])  # (4, 4)
            cameras.append(relative_cam2world(source_c2w, torch.from_numpy(clip.cam2world[start : start + self.window])))
            waveforms.append(torch.from_numpy(clip.audio))
            starts.append(start)
            lengths.append(info.num_frames)
            rates.append(info.fps)
        return GeneratorBatch(
            source=torch.stack(sources) * 2 - 1,
            targets=torch.stack(targets) * 2 - 1,
            cameras=torch.stack(cameras),
            waveforms=waveforms,
            starts=starts,
            num_frames=lengths,
            fps=rates,
            masks=torch.stack(masks) if len(masks) == batch_size else None,
        )


@dataclass
class SyncBatch:
    """B video windows, each with C candidate audio windows of which the first is the aligned one.

    Attributes:
        crops: (B, T, 3, h, w) consecutive lower-face crops in [0, 1].
        mel: (B, C, n_mels, steps) candidate audio windows: index 0 in sync, the rest shifted or from another clip.
    """

    crops: torch.Tensor
    mel: torch.Tensor


class SyncPairBank:
    """Every training clip's lower-face crops and log-mel, cut once, from which lip-sync pairs are drawn.

    A pair needs only the T mouth crops and 0.2 s of mel, so holding those for the whole corpus (about 1 MB per
    3 s clip) replaces loading and decoding a clip's full frames for every pair.
    """

    def __init__(self, clips: Sequence[ClipInfo], lip_sync: LipSyncDiscriminator, resolution: int) -> None:
        from ..data.clip import read_clip

        self.clips = list(clips)
        self.lip_sync = lip_sync
        self.window = lip_sync.config.num_frames
        self.crops: List[torch.Tensor] = []  # per clip (N, 3, h, w) uint8
        self.mels: List[torch.Tensor] = []  # per clip (n_mels, T)
        with torch.no_grad():
            for info in self.clips:
                clip = read_clip(info.path, load_depth=False)
                crops = lip_sync.crop_lower_face(frames_to_tensor(clip.rgb, resolution))
                self.crops.append(crops.mul(255).round().to(torch.uint8))
                self.mels.append(lip_sync.mel(torch.from_numpy(clip.audio)))

    def batch(self, rng: np.random.Generator, batch_size: int, candidates: int, min_shift: int, max_shift: int, mismatched_fraction: float) -> SyncBatch:
        """B windows, each with its aligned audio first and ``candidates - 1`` negatives: audio shifted by
        ``min_shift``..``max_shift`` frames (either sign, distinct shifts) within the clip, or, for
        ``mismatched_fraction`` of them (and whenever the shifts run out), audio from another clip."""
        crops, mels = [], []
        for _ in range(batch_size):
            clip_index = int(rng.integers(len(self.clips)))
            info = self.clips[clip_index]
            start = int(rng.integers(info.num_frames - self.window + 1))
            crops.append(self.crops[clip_index][start : start + self.window])
            shifts = [s for s in range(min_shift, max_shift + 1) for s in (s, -s) if 0 <= start + s <= info.num_frames - self.window]
            shifts = list(rng.permutation(shifts))
            sources = [(clip_index, start)]
            for _ in range(candidates - 1):
                if len(self.clips) > 1 and (not shifts or rng.random() < mismatched_fraction):
                    other = int(rng.choice([j for j in range(len(self.clips)) if j != clip_index]))
                    sources.append((other, int(rng.integers(self.clips[other].num_frames - self.window + 1))))
                elif shifts:
                    sources.append((clip_index, start + int(shifts.pop())))
                else:
                    raise ValueError(f"cannot draw {candidates - 1} negatives: one clip of {info.num_frames} frames is too short to shift by {min_shift}")
            mels.append(torch.stack([self.lip_sync.mel_windows(self.mels[i], torch.tensor([s]), self.clips[i].fps)[0] for i, s in sources]))
        return SyncBatch(torch.stack(crops).float().div(255.0), torch.stack(mels))
