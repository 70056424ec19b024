"""Corpus writer: renders synthetic talking-head clips in the shared clip format.

Layout: ``OUT/id_0007/clip_01/`` (one folder per clip, written by :func:`s3d_pipeline.data.clip.write_clip`).
Everything is a pure function of ``(seed, split, identity index, clip index)``, so a run is deterministic,
clips can be rendered in any order by any number of worker processes, and an interrupted run resumes by
skipping the clips whose folder is complete.

Per clip: an identity (:mod:`.identity`) as a 3D head (:mod:`.head`); sentences spoken by a random espeak-ng
voice (:mod:`.speech`) and turned into per-frame mouth parameters (:mod:`.visemes`); head pose of the
configured motion kind, blinks and brows (:mod:`.motion`); each frame rasterized (:mod:`.raster`) with its camera from
:func:`~s3d_pipeline.rendering.cameras.pose_to_cam2world`. Landmarks are the 3D landmark points of the
articulated mesh projected with :func:`~s3d_pipeline.rendering.cameras.project`; the 3D points are kept in
``meta.extra["landmarks_3d"]`` so the projection can be checked.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import numpy as np
import torch

from ...rendering import cameras
from ..clip import AUDIO_SAMPLE_RATE, ClipMeta, write_clip
from .augment import augment_audio, augment_voice
from .head import FaceState, HeadModel
from .motion import MOTION_KINDS, sample_motion
from .person import SPLITS, sample_person
from .raster import Rasterizer, process_rasterizer
from .sentences import make_sentences
from .speech import sample_voice, speak_sequence
from .visemes import VISEME_NAMES, viseme_track

GENERATOR = "s3d-nerf synth 1"


@dataclass(frozen=True)
class CorpusConfig:
    """What to render. Defaults give the training corpus: 2 clips of 3 s per identity at 256x256, 25 fps.

    ``motion`` picks the head-pose kind (:data:`~.motion.MOTION_KINDS`). It is drawn after the speech, so a
    corpus with another motion kind but the same seed and split has the same people saying the same sentences.
    ``augment_speech`` draws the voice from :class:`~.augment.SpeechAugmentation`'s wider ranges and adds room
    reverberation and noise, from a random stream of its own: people, sentences and motion stay the same.
    """

    out: Path
    identities: int
    clips_per_identity: int = 2
    seconds: float = 3.0
    seed: int = 0
    resolution: int = 256
    split: str = "train"
    fps: float = 25.0
    workers: int = 2
    motion: str = "sway"
    augment_speech: bool = False

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.motion not in MOTION_KINDS:
            raise ValueError(f"motion must be one of {MOTION_KINDS}, got {self.motion!r}")
        if self.identities < 1 or self.clips_per_identity < 1:
            raise ValueError("identities and clips_per_identity must be at least 1")
        if self.seconds * self.fps < 1:
            raise ValueError(f"a clip of {self.seconds} s at {self.fps} fps has no frames")

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))


@dataclass
class CorpusSummary:
    clips_rendered: int
    clips_skipped: int
    frames_rendered: int
    seconds_taken: float


def clip_path(out: os.PathLike, identity_index: int, clip_index: int) -> Path:
    return Path(out) / f"id_{identity_index:04d}" / f"clip_{clip_index + 1:02d}"


def clip_rng(config: CorpusConfig, identity_index: int, clip_index: int) -> np.random.Generator:
    """Random stream of one clip (voice, sentences, motion), independent of the identity's own stream."""
    return np.random.default_rng([config.seed, SPLITS.index(config.split), identity_index, 1 + clip_index])


def synthesize_clip(config: CorpusConfig, identity_index: int, clip_index: int):
    """Render one clip in memory: -> (ClipMeta, rgb (N, H, W, 3), audio (S,), mask (N, H, W), depth (N, H, W))."""
    identity = sample_person(config.seed, config.split, identity_index)
    head = HeadModel(identity)
    rng = clip_rng(config, identity_index, clip_index)
    n, res = config.num_frames, config.resolution
    duration = n / config.fps

    # 1. Speech and visemes.
    voice = sample_voice(rng)
    augmentation_rng = np.random.default_rng([config.seed, SPLITS.index(config.split), identity_index, 1 + clip_index, 1])
    if config.augment_speech:
        voice = augment_voice(augmentation_rng)
    utterance, spoken = speak_sequence(make_sentences(rng, 6), voice, duration, rng)
    strength = rng.uniform(0.8, 1.15)
    visemes = viseme_track(utterance.phonemes, duration, config.fps, n, utterance.audio, AUDIO_SAMPLE_RATE, strength)
    audio, augmentation = augment_audio(utterance.audio, augmentation_rng) if config.augment_speech else (utterance.audio, None)

    # 2. Motion and cameras.
    motion = sample_motion(rng, n, config.fps, config.motion)
    cam2world = cameras.pose_to_cam2world(*torch.from_numpy(motion.pose).unbind(-1))  # (N, 4, 4)

    # 3. Frames.
    raster = process_rasterizer(Rasterizer, res)
    raster.set_person(identity, head.triangles, len(head.vertices(FaceState())))
    rgb = np.empty((n, res, res, 3), np.uint8)
    mask = np.empty((n, res, res), np.uint8)
    depth = np.empty((n, res, res), np.float32)
    landmarks_3d = np.empty((n, 68, 3))
    for i in range(n):
        c2w = cam2world[i].numpy()
        gaze = np.add(head.gaze_at(c2w[:3, 3]), motion.gaze_jitter[i])
        jaw, spread, round_, closure = visemes[i]
        state = FaceState(
            jaw_open=jaw, lip_spread=spread, lip_round=round_, lip_closure=closure, brow=float(motion.brow[i]),
            blink_r=float(motion.blink[i, 0]), blink_l=float(motion.blink[i, 1]), gaze=(float(gaze[0]), float(gaze[1])),
        )  # fmt: skip
        rgb[i], mask[i], depth[i] = raster.render(head.vertices(state), c2w, state)
        landmarks_3d[i] = head.landmarks(state)
    uvz = cameras.project(torch.as_tensor(landmarks_3d, dtype=torch.float32), cam2world)  # (N, 68, 3)
    landmarks = uvz[..., :2].numpy() * res  # normalized -> pixels

    meta = ClipMeta(
        fps=config.fps,
        num_frames=n,
        resolution=[res, res],
        intrinsics=cameras.intrinsics().tolist(),
        cam2world=cam2world.tolist(),
        landmarks=np.round(landmarks, 3).tolist(),
        identity=identity.name,
        source="synthetic",
        visemes=np.round(visemes, 4).tolist(),
        viseme_names=list(VISEME_NAMES),
        extra={
            "generator": GENERATOR,
            "split": config.split,
            "seed": config.seed,
            "clip_index": clip_index,
            "voice": asdict(voice) | {"name": voice.name},
            **({"speech_augmentation": augmentation} if config.augment_speech else {}),
            "sentences": spoken,
            "phonemes": [[round(a, 4), round(b, 4), p] for a, b, p in utterance.phonemes],
            "articulation_strength": strength,
            "motion": config.motion,
            "head_pose_deg": np.round(motion.pose, 3).tolist(),
            "blink": np.round(motion.blink, 3).tolist(),
            "brow": np.round(motion.brow, 3).tolist(),
            "landmarks_3d": np.round(landmarks_3d, 6).tolist(),
            "identity_params": identity.to_dict(),
            "framing": {"scale": head.scale, "translation": head.translation.tolist()},
        },
    )
    return meta, rgb, audio, mask, depth


def _render_job(job: Tuple[CorpusConfig, int, int]) -> Tuple[str, int, float]:
    config, identity_index, clip_index = job
    start = time.perf_counter()
    out = clip_path(config.out, identity_index, clip_index)
    for stale in out.parent.glob(f".{out.name}.*"):  # half-written folder of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    meta, rgb, audio, mask, depth = synthesize_clip(config, identity_index, clip_index)
    write_clip(out, meta, rgb, audio, mask=mask, depth=depth)
    return str(out.relative_to(config.out)), meta.num_frames, time.perf_counter() - start


def _init_worker() -> None:
    # Each worker is single-threaded: llvmpipe would otherwise start one thread per core in every process.
    os.environ["LP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pending_jobs(config: CorpusConfig) -> Tuple[List[Tuple[CorpusConfig, int, int]], int]:
    """Clips still to render, and how many are already complete (their ``meta.json`` exists)."""
    jobs, done = [], 0
    for i in range(config.identities):
        for k in range(config.clips_per_identity):
            if (clip_path(config.out, i, k) / "meta.json").is_file():
                done += 1
            else:
                jobs.append((config, i, k))
    return jobs, done


def render_corpus(config: CorpusConfig, log: Callable[[str], None] = print) -> CorpusSummary:
    """Render every missing clip of the corpus, in parallel over ``config.workers`` processes."""
    start = time.perf_counter()
    jobs, skipped = pending_jobs(config)
    total = len(jobs)
    log(f"synth: {total} clips to render, {skipped} already complete, {config.workers} worker(s) -> {config.out}")
    frames = 0
    for k, (name, n, seconds) in enumerate(run_jobs(_render_job, jobs, config.workers), 1):
        frames += n
        elapsed = time.perf_counter() - start
        log(f"[{k}/{total}] {name}: {n} frames in {seconds:.1f} s (elapsed {elapsed:.0f} s)")
    return CorpusSummary(total, skipped, frames, time.perf_counter() - start)


def run_jobs(function: Callable, jobs: List, workers: int) -> Iterator:
    """``function(job)`` for every job, in this process or over ``workers`` processes; results in completion order."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(function, jobs)
        return
    # "spawn": no OpenGL or espeak state is inherited from the parent process.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(function, jobs)
