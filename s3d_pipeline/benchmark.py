"""Measuring the per-frame path: speed of the fast and reference engines in one run (stage by stage too), their
PSNR (mean per frame), ``pipe(image, audio)`` with its defaults, identity encoding, time to first frame, and peak memory of streamed generation (each length in its own subprocess, because a
process's RSS high-water mark never goes down).

The machine may be shared, so every timing is a median over repeats and the load average is recorded with it;
compare the fast path with the reference path from the same run, not across runs.

Run one memory measurement alone with ``python -m s3d_pipeline.benchmark --peak-rss SECONDS [--config NAME |
--checkpoint PATH]``; it prints one JSON line.

The user path's memory (``s3d-nerf bench --rss-photo-size 4000``): ``s3d-nerf generate`` itself, run in a fresh
process per speech length on a large synthetic photo (the bundled portrait enlarged to N x N pixels), streaming to
mp4 with the CLI's defaults; alone, ``python -m s3d_pipeline.benchmark --user-path-rss SECONDS --photo-size N``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .engines import STAGES
from .evaluation.metrics import psnr
from .frames import to_uint8
from .paths import DEFAULT_CHECKPOINT, DEFAULT_IMAGE

FAST_DTYPES = ("bfloat16", "float32")


@dataclass
class BenchSetup:
    """What to measure: a named random-weight config or a checkpoint folder; ``fast_dtype`` ("bfloat16" or
    "float32") overrides the fast engine's hardware-chosen compute type (:mod:`s3d_pipeline.hardware`)."""

    config: Optional[str] = None
    checkpoint: str = str(DEFAULT_CHECKPOINT)
    threads: int = 2
    as_shipped: bool = False
    fast_dtype: Optional[str] = None


def load_pipeline(setup: BenchSetup):
    """The pipeline to measure. Unless ``as_shipped``, the two output layers that start at zero (the displacement
    MLP's last layer, the super-resolution's output convolution) get small seeded random values, so Δx and the
    residual are not trivially zero when the two paths are compared (an untrained checkpoint has them at zero).
    The compute is the same either way."""
    from . import S3DNeRFPipeline
    from .configs import build_pipeline

    torch.set_num_threads(setup.threads)
    pipe = build_pipeline(setup.config) if setup.config else S3DNeRFPipeline.from_pretrained(setup.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    if not setup.as_shipped:
        activate_zero_layers(pipe)
    if setup.fast_dtype:
        pipe.fast_engine.dtype = getattr(torch, setup.fast_dtype)  # read when an identity is prepared
    return pipe


@torch.no_grad()
def activate_zero_layers(pipe) -> None:
    """Give the output layers that start at exactly zero (the displacement MLP's last layer, the super-resolution's
    output convolution) small seeded random weights, so that Δx and the residual take part in a comparison."""
    generator = torch.Generator().manual_seed(1)
    for layer, std in ((getattr(pipe.deformation_field, "displacement_mlp", [None])[-1], 0.05), (pipe.super_resolution.out, 0.02)):
        if layer is not None and not layer.weight.any():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)


def speech(seconds: float) -> np.ndarray:
    """A voiced tone with a syllable-rate envelope and a little noise (16 kHz float32): stands in for speech."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@torch.no_grad()
def stage_times(engine, identity, windows, cams, repeats: int) -> Dict[str, float]:
    """Milliseconds per frame of each stage of ``engine``'s render (:data:`~s3d_pipeline.engines.STAGES`) and of
    the conversion to uint8, median over ``repeats`` renders of one chunk on the calling thread (with its intra-op
    threads). The fast engine's untimed render instead splits a chunk's frames over 1-thread workers, so its frame
    time is shorter than these stages' sum."""
    n = windows.shape[0]
    times: Dict[str, List[float]] = {stage: [] for stage in (*STAGES, "to_uint8")}

    @contextlib.contextmanager
    def timer(stage: str):
        start = time.perf_counter()
        yield
        times[stage].append((time.perf_counter() - start) * 1000 / n)

    for _ in range(repeats):
        batch = engine.render(identity, windows, cams, timer=timer)
        with timer("to_uint8"):
            to_uint8(batch.frames)
    return {stage: round(statistics.median(t), 2) for stage, t in times.items()}


@torch.no_grad()
def chunk_fps(pipe, identity, waveform, poses, fps: float, batch_size: int, fast: bool, chunks: int) -> tuple:
    """Frames per second of the whole per-frame path (median over ``chunks`` full chunks of ``batch_size`` frames)
    and the uint8 frames rendered (including the one-frame first chunk, which is not timed)."""
    rates, frames = [], []
    iterator = pipe.iter_frames(identity, waveform, poses, fps, batch_size, fast=fast)
    frames.append(to_uint8(next(iterator).frames))  # the stream's first chunk: one frame
    for _ in range(chunks):
        start = time.perf_counter()
        chunk = next(iterator)
        frames.append(to_uint8(chunk.frames))
        rates.append(len(chunk.frames) / (time.perf_counter() - start))
    return statistics.median(rates), np.concatenate(frames)


def call_fps(pipe, waveform: np.ndarray, fps: float) -> float:
    """Frames per second of ``pipe(image, audio)`` with its defaults, on the aligned portrait: what a Python user's
    first call gets (identity encoding and the lip-sync score included)."""
    start = time.perf_counter()
    out = pipe(str(DEFAULT_IMAGE), (waveform, SAMPLE_RATE), aligned=True, fps=fps)
    return len(out.frames) / (time.perf_counter() - start)


def peak_rss_subprocess(setup: BenchSetup, seconds: float, batch_size: int) -> float:
    """Peak RSS (MB) of streaming ``seconds`` of speech into an mp4 with the fast path, in a fresh process."""
    cmd = [sys.executable, "-m", "s3d_pipeline.benchmark", "--peak-rss", str(seconds), "--threads", str(setup.threads), "--batch-size", str(batch_size)]
    cmd += ["--config", setup.config] if setup.config else ["--checkpoint", setup.checkpoint]
    if setup.as_shipped:
        cmd.append("--as-shipped")
    if setup.fast_dtype:
        cmd += ["--fast-dtype", setup.fast_dtype]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def run_benchmark(
    setup: BenchSetup,
    frames: int = 48,
    reference_frames: int = 8,
    batch_size: int = 8,
    repeats: int = 3,
    rss_seconds: tuple = (10.0, 60.0),
    fps: float = 25.0,
    call_seconds: float = 2.0,
    rss_photo_size: int = 0,
) -> dict:
    """Everything ``s3d-nerf bench`` reports, as one dict; with ``rss_photo_size`` also the user path's peak RSS
    (:func:`measure_user_path_rss` for each of ``rss_seconds``, on ``setup.checkpoint``) under ``"user_path"``."""
    from .rendering.cameras import pose_to_cam2world

    load_before = os.getloadavg()
    pipe = load_pipeline(setup)
    seconds = (max(frames, reference_frames) + 1) / fps  # + the one-frame first chunk
    waveform = speech(seconds)
    num_frames = round(seconds * fps)
    # A gentle head turn, so the cameras differ from frame to frame.
    poses = torch.stack([10 * torch.sin(torch.linspace(0, 3, num_frames)), torch.zeros(num_frames), torch.zeros(num_frames)], -1)

    # Identity encoding: the single-shot "fit" (the aligned portrait: face detection is not the model's work).
    pipe.encode_identity(str(DEFAULT_IMAGE), aligned=True, fast=True)  # warm-up
    identity_ms = median_ms(lambda: pipe.encode_identity(str(DEFAULT_IMAGE), aligned=True, fast=True), repeats)
    identity = pipe.encode_identity(str(DEFAULT_IMAGE), aligned=True, fast=True)

    # Warm up both paths (a one-frame and a full chunk each; the fast path last, as it is timed first), then the time
    # from asking for a stream to its first frame.
    for fast in (False, True):
        warm = pipe.iter_frames(identity, waveform, poses, fps, batch_size, fast=fast)
        next(warm)
        next(warm)
    first_frame_ms = median_ms(lambda: next(pipe.stream(audio=(waveform, SAMPLE_RATE), identity=identity, yaw=poses[:, 0], fps=fps, batch_size=batch_size)), repeats)

    # Speed of the whole per-frame path, fast and reference, on the same inputs; their PSNR on the same frames.
    fast_fps, fast_frames = chunk_fps(pipe, identity, waveform, poses, fps, batch_size, True, max(1, frames // batch_size))
    reference_fps, reference_frames_out = chunk_fps(pipe, identity, waveform, poses, fps, batch_size, False, max(1, reference_frames // batch_size))
    compared = min(len(fast_frames), len(reference_frames_out))
    quality = psnr(fast_frames[:compared], reference_frames_out[:compared])

    windows = pipe.encode_audio(waveform, num_frames, fps)[:batch_size]
    cams = pose_to_cam2world(poses[:batch_size, 0], poses[:batch_size, 1], poses[:batch_size, 2])
    stages = stage_times(pipe.fast_engine, identity, windows, cams, repeats)
    reference_stages = stage_times(pipe.reference_engine, identity, windows, cams, 1)
    _, _, _, _, crossed = pipe.fast_engine.rays_crossing(pipe.fast_engine.prepare(identity), cams)
    default_call_fps = call_fps(pipe, waveform[: round(call_seconds * SAMPLE_RATE)], fps)

    rss = {s: peak_rss_subprocess(setup, s, batch_size) for s in rss_seconds}
    user_path = {}
    if rss_photo_size:
        runs = {s: user_path_rss_subprocess(setup, s, rss_photo_size) for s in rss_seconds}
        short, long = runs[rss_seconds[0]], runs[rss_seconds[-1]]
        user_path = {
            "user_path": {
                "photo": f"{rss_photo_size}x{rss_photo_size} (assets/portrait_astronaut.png enlarged)",
                "checkpoint": os.path.basename(os.path.normpath(setup.checkpoint)),
                "video_size": long["video_size"],
                **{f"peak_rss_mb_{s:g}s": run["peak_rss_mb"] for s, run in runs.items()},
                **{f"encoder_peak_rss_mb_{s:g}s": run["encoder_peak_rss_mb"] for s, run in runs.items()},
                **{f"wall_s_{s:g}s": run["wall_s"] for s, run in runs.items()},
                "rss_ratio": round(long["peak_rss_mb"] / short["peak_rss_mb"], 3),
            }
        }
    renderer = pipe.renderer.config
    return {
        "config": {
            "weights": setup.config or os.path.basename(os.path.normpath(setup.checkpoint)),
            "zero_init_layers": "as shipped" if setup.as_shipped else "seeded random",
            "resolution": pipe.resolution,
            "ray_resolution": renderer.ray_resolution,
            "reference_samples": renderer.num_coarse + renderer.num_importance,
            "fast_samples": pipe.fast_engine.num_samples,
            "fast_dtype": str(pipe.fast_engine.dtype).replace("torch.", ""),
            "batch_size": batch_size,
            "threads": torch.get_num_threads(),
        },
        "fps": round(fast_fps, 2),
        "reference_fps": round(reference_fps, 3),
        "speedup": round(fast_fps / reference_fps, 1),
        "psnr_vs_reference": round(quality, 2),
        "psnr_frames": compared,
        "fast_rays_evaluated": round(float(crossed.float().mean()), 3),
        "call_fps": round(default_call_fps, 2),
        "identity_encode_ms": round(identity_ms, 1),
        "first_frame_ms": round(first_frame_ms, 1),
        "stages_ms": stages,
        "reference_stages_ms": reference_stages,
        **{f"peak_rss_mb_{s:g}s": round(v, 1) for s, v in rss.items()},
        "rss_ratio": round(rss[rss_seconds[-1]] / rss[rss_seconds[0]], 3),
        "loadavg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "cpus": os.cpu_count(),
        **user_path,
    }


def user_path_rss_subprocess(setup: BenchSetup, seconds: float, photo_size: int) -> dict:
    """:func:`measure_user_path_rss` in a fresh process (a process's peak RSS never goes down)."""
    cmd = [sys.executable, "-m", "s3d_pipeline.benchmark", "--user-path-rss", str(seconds), "--photo-size", str(photo_size)]
    cmd += ["--checkpoint", setup.checkpoint, "--threads", str(setup.threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def synthetic_photo(size: int, path: str) -> str:
    """The bundled portrait enlarged (bicubic) to a ``size`` x ``size`` JPEG at ``path``: a phone-sized photo with a
    face the detector finds. Its pixels carry no more detail than the 512 px original; memory and time depend on
    the size only."""
    import PIL.Image

    with PIL.Image.open(DEFAULT_IMAGE) as portrait:
        portrait.convert("RGB").resize((size, size), PIL.Image.BICUBIC).save(path, quality=92)
    return path


class ChildPeakRSS:
    """The highest peak RSS (``VmHWM``) among this process's children, polled in a thread every ``interval`` seconds
    while the block runs: the ffmpeg encoder's own high-water mark, in MB. ``getrusage(RUSAGE_CHILDREN)`` cannot
    give it: a child's count starts from the parent's resident memory before it executes ffmpeg."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            for child in self._children():
                try:
                    status = open(f"/proc/{child}/status").read()
                except OSError:  # exited meanwhile
                    continue
                hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
                if hwm:
                    self.peak_mb = max(self.peak_mb, int(hwm[0]) / 1024)  # reported in kB

    @staticmethod
    def _children() -> List[int]:
        pids = []
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            try:
                pids += [int(pid) for pid in open(f"/proc/{os.getpid()}/task/{task}/children").read().split()]
            except OSError:
                continue
        return pids

    def __enter__(self) -> "ChildPeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure_user_path_rss(checkpoint: str, seconds: float, photo_size: int, threads: int, max_size: Optional[int] = None) -> dict:
    """Run ``s3d-nerf generate`` on a ``photo_size``-pixel synthetic photo and ``seconds`` of speech in this process,
    with the CLI's defaults (fast engine; ``--max-size`` unless ``max_size`` is given, 0 for the photo's size); its
    peak RSS and the written video's size and duration, decoded back.

    ``peak_rss_mb`` is this process's high-water mark, ``encoder_peak_rss_mb`` the largest child's (the ffmpeg
    encoder, polled: :class:`ChildPeakRSS`); both run at the same time, so their sum bounds the machine's use.
    """
    import soundfile as sf

    from .cli import main as cli_main
    from .video import iter_video

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        photo = synthetic_photo(photo_size, os.path.join(tmp, "photo.jpg"))
        audio, out = os.path.join(tmp, "speech.wav"), os.path.join(tmp, "talking.mp4")
        sf.write(audio, speech(seconds), SAMPLE_RATE)
        start = time.perf_counter()
        with ChildPeakRSS() as encoder, contextlib.redirect_stdout(sys.stderr):  # the CLI's JSON line is not ours
            args = ["generate", "--image", photo, "--audio", audio, "--out", out, "--checkpoint", checkpoint]
            code = cli_main(args if max_size is None else [*args, "--max-size", str(max_size)])
        wall = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"s3d-nerf generate failed with exit code {code}")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        info, frames = iter_video(out)
        num_frames = sum(1 for _ in frames)
    return {
        "seconds": seconds,
        "photo": f"{photo_size}x{photo_size}",
        "peak_rss_mb": round(own, 1),
        "encoder_peak_rss_mb": round(encoder.peak_mb, 1),
        "video_size": [info.size[1], info.size[0]],  # (width, height)
        "video_frames": num_frames,
        "video_seconds": round(info.duration, 2),
        "wall_s": round(wall, 1),
    }


@torch.no_grad()
def measure_peak_rss(setup: BenchSetup, seconds: float, batch_size: int) -> float:
    """Stream ``seconds`` of speech through the fast path into an mp4; the process's peak RSS in MB."""
    from .video import VideoWriter

    pipe = load_pipeline(setup)
    waveform = speech(seconds)
    identity = pipe.encode_identity(str(DEFAULT_IMAGE), aligned=True, fast=True)
    with tempfile.TemporaryDirectory() as tmp:
        with VideoWriter(os.path.join(tmp, "bench.mp4"), fps=25, audio=waveform, sample_rate=SAMPLE_RATE, preset="ultrafast") as writer:
            for chunk in pipe.stream(audio=(waveform, SAMPLE_RATE), identity=identity, batch_size=batch_size):
                writer.write(chunk)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="One peak-RSS measurement of streamed generation (JSON line).")
    measurement = parser.add_mutually_exclusive_group(required=True)
    measurement.add_argument("--peak-rss", type=float, metavar="SECONDS", help="the aligned portrait streamed to mp4")
    measurement.add_argument("--user-path-rss", type=float, metavar="SECONDS", help="s3d-nerf generate on a large photo")
    parser.add_argument("--photo-size", type=int, default=4000, help="with --user-path-rss: the synthetic photo's side")
    parser.add_argument("--max-size", type=int, default=None, help="with --user-path-rss: generate's --max-size (default: its own)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--as-shipped", action="store_true")
    parser.add_argument("--fast-dtype", choices=FAST_DTYPES, default=None)
    args = parser.parse_args(argv)
    if args.user_path_rss is not None:
        print(json.dumps(measure_user_path_rss(args.checkpoint, args.user_path_rss, args.photo_size, args.threads, args.max_size)))
        return 0
    setup = BenchSetup(config=args.config, checkpoint=args.checkpoint, threads=args.threads, as_shipped=args.as_shipped, fast_dtype=args.fast_dtype)
    print(json.dumps({"seconds": args.peak_rss, "peak_rss_mb": measure_peak_rss(setup, args.peak_rss, args.batch_size)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
