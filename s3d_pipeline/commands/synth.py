"""``s3d-nerf synth``: render a synthetic talking-head corpus in the clip format.

Example::

    s3d-nerf synth --out data/synth/train --identities 200 --split train --seed 0
    s3d-nerf synth --out data/synth/test --identities 20 --split test --seed 0
    s3d-nerf synth --out data/synth/test_views --identities 8 --clips-per-identity 1 --split test --seed 1 --motion yaw-sweep
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (one id_XXXX/clip_YY folder per clip)")
    parser.add_argument("--identities", type=int, required=True, help="number of synthetic people")
    parser.add_argument("--clips-per-identity", type=int, default=2, help="clips per person (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed; the same seed renders identical clips")
    parser.add_argument("--resolution", type=int, default=256, help="frame size in pixels (default 256)")
    parser.add_argument(
        "--split", choices=("train", "test"), default="train", help="identities of the two splits never overlap"
    )
    parser.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    parser.add_argument("--workers", type=int, default=2, help="parallel render processes (default 2)")
    parser.add_argument(
        "--motion",
        choices=("sway", "yaw-sweep"),  # data.synth.motion.MOTION_KINDS, not imported so that --help stays fast
        default="sway",
        help="head motion: slow random sway (default, training), or a yaw sweep to about +-25 deg from a "
        "near-frontal frame 0 (novel-view evaluation)",
    )


def run(args: argparse.Namespace) -> int:
    from ..data.synth import CorpusConfig, render_corpus

    config = CorpusConfig(
        out=args.out,
        identities=args.identities,
        clips_per_identity=args.clips_per_identity,
        seconds=args.seconds,
        seed=args.seed,
        resolution=args.resolution,
        split=args.split,
        fps=args.fps,
        workers=args.workers,
        motion=args.motion,
    )
    summary = render_corpus(config)
    print(
        f"synth: done, {summary.clips_rendered} clips rendered ({summary.frames_rendered} frames), "
        f"{summary.clips_skipped} skipped as complete, {summary.seconds_taken:.1f} s"
    )
    return 0
