"""``s3d-nerf preprocess``: talking-face videos -> clip folders (see :mod:`s3d_pipeline.data.preprocess`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True, help="folder of talking-face videos (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write clip folders into")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the clips (default: 25)")
    parser.add_argument("--resolution", type=int, default=256, help="side of the square face crops (default: 256)")
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="cut videos into clips of at most this length (default: 10)")
    parser.add_argument(
        "--face-backend", choices=("auto", "offline", "face-alignment"), default="auto",
        help="face landmarks: FAN when its weights are cached ('auto'), or force one (default: auto)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..data.preprocess import VIDEO_EXTENSIONS, PreprocessConfig, find_videos, preprocess_videos

    if not args.videos.is_dir():
        print(f"error: --videos {args.videos} is not a folder")
        return 2
    videos = find_videos(args.videos)
    if not videos:
        print(f"error: no videos ({' '.join(VIDEO_EXTENSIONS)}) under {args.videos}")
        return 2
    config = PreprocessConfig(fps=args.fps, resolution=args.resolution, segment_seconds=args.segment_seconds, face_backend=args.face_backend)
    results = preprocess_videos(videos, args.out, config)
    for result in results:
        if result.error:
            print(f"skipped {result.video}: {result.error}")
        else:
            print(f"ok      {result.video}: {result.num_frames} frames -> {len(result.clips)} clips")
    done = [r for r in results if not r.error]
    print(
        f"preprocessed {len(done)} of {len(results)} videos into {sum(len(r.clips) for r in done)} clips "
        f"in {args.out} ({len(results) - len(done)} skipped)"
    )
    return 0 if done else 1
