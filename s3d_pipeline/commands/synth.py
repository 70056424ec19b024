"""``s3d-nerf synth``: render a synthetic talking-head corpus in the clip format.

Example::

    s3d-nerf synth --out data/synth/train --identities 200 --split train --seed 0
    s3d-nerf synth --out data/synth/test --identities 20 --split test --seed 0
    s3d-nerf synth --out data/synth/test_views --identities 8 --clips-per-identity 1 --split test --seed 1 --motion yaw-sweep
    s3d-nerf synth --from-photos photos/ --clips-per-photo 4 --seconds 3 --out data/synth/photos
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (one id_XXXX/clip_YY folder per clip)")
    parser.add_argument("--identities", type=int, help="number of synthetic people (required without --from-photos)")
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
    parser.add_argument(
        "--from-photos",
        type=Path,
        metavar="DIR",
        help="instead of synthetic people, animate the portraits in DIR (one identity per photo, sorted by file "
        "name): semi-synthetic clips with exact cameras, landmarks and mouth parameters",
    )
    parser.add_argument("--clips-per-photo", type=int, default=2, help="clips per portrait with --from-photos (default 2)")
    parser.add_argument(
        "--speech-augmentation",
        choices=("auto", "on", "off"),
        default="auto",
        help="wider voice ranges, room reverberation and noise; auto (default) = off for synthetic people, on "
        "with --from-photos",
    )


def run(args: argparse.Namespace) -> int:
    from ..data.synth import (
        CorpusConfig,
        PhotoCorpusConfig,
        SpeechAugmentation,
        render_corpus,
        render_photo_corpus,
    )

    if args.from_photos is not None:
        config = PhotoCorpusConfig(
            photos=args.from_photos,
            out=args.out,
            clips_per_photo=args.clips_per_photo,
            seconds=args.seconds,
            seed=args.seed,
            resolution=args.resolution,
            fps=args.fps,
            workers=args.workers,
            motion=args.motion,
            augmentation=None if args.speech_augmentation == "off" else SpeechAugmentation(),
        )
        summary = render_photo_corpus(config)
    else:
        if args.identities is None:
            raise SystemExit("synth: --identities is required (or give --from-photos DIR)")
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
            augment_speech=args.speech_augmentation == "on",
        )
        summary = render_corpus(config)
    print(
        f"synth: done, {summary.clips_rendered} clips rendered ({summary.frames_rendered} frames), "
        f"{summary.clips_skipped} skipped as complete, {summary.seconds_taken:.1f} s"
    )
    return 0
