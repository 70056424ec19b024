"""``s3d-nerf bench``: speed and memory of the per-frame path (audio features -> deformation -> rendering ->
super-resolution -> uint8 frame) at a checkpoint's config. The last stdout line is one JSON object."""

from __future__ import annotations

import argparse
import json
import resource
import time

from ..paths import DEFAULT_CHECKPOINT, DEFAULT_IMAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pipeline folder to measure")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of (synthetic) speech to render")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .. import S3DNeRFPipeline
    from ..audio import SAMPLE_RATE

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = S3DNeRFPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(args.seconds * SAMPLE_RATE)) / SAMPLE_RATE
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)

    start = time.perf_counter()
    identity = pipe.encode_identity(str(DEFAULT_IMAGE), aligned=True)  # the model alone; face detection is not timed
    identity_ms = (time.perf_counter() - start) * 1000

    pipe(audio=(speech[: SAMPLE_RATE // 5], SAMPLE_RATE), identity=identity, compute_sync=False)  # warm-up
    start = time.perf_counter()
    out = pipe(audio=(speech, SAMPLE_RATE), identity=identity, fps=args.fps, batch_size=args.batch_size, compute_sync=False)
    render_s = time.perf_counter() - start
    frames = len(out.frames)
    result = {
        "config": {"ray_resolution": pipe.renderer.config.ray_resolution, "resolution": pipe.resolution,
                   "samples": pipe.renderer.config.num_coarse + pipe.renderer.config.num_importance, "batch_size": args.batch_size,
                   "threads": torch.get_num_threads()},
        "frames": frames,
        "fps": frames / render_s,
        "identity_encode_ms": identity_ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if not args.json:
        print(f"{frames} frames in {render_s:.2f} s: {result['fps']:.2f} FPS; identity {identity_ms:.0f} ms")
    print(json.dumps(result))
    return 0
