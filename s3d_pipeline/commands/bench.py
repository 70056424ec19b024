"""``s3d-nerf bench``: speed and memory of the per-frame path (audio features -> deformation -> rendering ->
super-resolution -> uint8 frame), fast path and reference path in the same run (see :mod:`s3d_pipeline.benchmark`).
The last stdout line is one JSON object."""

from __future__ import annotations

import argparse
import json

from ..paths import DEFAULT_CHECKPOINT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmark import FAST_DTYPES

    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pipeline folder to measure")
    parser.add_argument("--config", default=None, help="measure a named architecture with random weights instead (demo, paper, tiny)")
    parser.add_argument("--as-shipped", action="store_true", help="keep zero-initialised output layers at zero (see benchmark.load_pipeline)")
    parser.add_argument("--frames", type=int, default=48, help="frames timed on the fast path")
    parser.add_argument("--reference-frames", type=int, default=8, help="frames timed on the (slow) reference path")
    parser.add_argument("--repeats", type=int, default=3, help="repeats behind each median")
    parser.add_argument("--rss-seconds", type=float, nargs=2, default=(10.0, 60.0), metavar=("SHORT", "LONG"), help="speech lengths for peak RSS")
    parser.add_argument(
        "--rss-photo-size", type=int, default=0, metavar="PIXELS",
        help="also measure the user path's peak RSS: s3d-nerf generate with --checkpoint's weights on a PIXELS x PIXELS "
        "synthetic photo for each --rss-seconds length, one process each (minutes per length; off by default)",
    )  # fmt: skip
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fast-dtype", choices=FAST_DTYPES, default=None, help="the fast engine's compute type (default: bfloat16 where the CPU computes bf16 natively, else float32)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchSetup, run_benchmark

    setup = BenchSetup(config=args.config, checkpoint=args.checkpoint, threads=args.threads, as_shipped=args.as_shipped, fast_dtype=args.fast_dtype)
    result = run_benchmark(
        setup,
        frames=args.frames,
        reference_frames=args.reference_frames,
        batch_size=args.batch_size,
        repeats=args.repeats,
        rss_seconds=tuple(args.rss_seconds),
        fps=args.fps,
        rss_photo_size=args.rss_photo_size,
    )
    if not args.json:
        print(
            f"fast {result['fps']:.2f} FPS vs reference {result['reference_fps']:.3f} FPS (x{result['speedup']}), "
            f"PSNR {result['psnr_vs_reference']:.1f} dB; identity {result['identity_encode_ms']:.0f} ms, first frame "
            f"{result['first_frame_ms']:.0f} ms; load {result['loadavg']['before'][0]:.1f}"
        )
        if "user_path" in result:
            print(f"user path ({result['user_path']['photo']}): {result['user_path']}")
    print(json.dumps(result))
    return 0
