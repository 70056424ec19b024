"""``s3d-nerf generate``: portrait + speech -> mp4 with the speech, using a pipeline checkpoint.

Frames go into the encoder as they are rendered (:meth:`S3DNeRFPipeline.export`), so memory does not grow with the
clip's length or, past ``--max-size``, with the photo's size."""

from __future__ import annotations

import argparse
import json
import sys

from ..paths import DEFAULT_AUDIO, DEFAULT_CHECKPOINT, DEFAULT_IMAGE

# The pipeline's messages name its Python arguments; on the command line the same advice names the flags.
CLI_SPELLINGS = {"aligned=True": "--aligned", "`yaw`": "--yaw", "`pitch`": "--pitch", "`roll`": "--roll"}


def cli_message(exc: Exception) -> str:
    """An error's message with every Python argument it mentions replaced by the flag that sets it."""
    message = str(exc)
    for python, flag in CLI_SPELLINGS.items():
        message = message.replace(python, flag)
    return message


def _frame_rate(text: str) -> float:
    """``--fps``: a number of frames per second from 1 to 60 (what the pipeline renders)."""
    value = float(text)
    if not 1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 1 and 60, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _output_side(text: str) -> int:
    """``--max-size``: pixels, or 0 for the photo's own size."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of pixels, or 0 to keep the photo's size; got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..face import MAX_OUTPUT_SIDE

    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="portrait photo (default: the bundled example)")
    parser.add_argument("--audio", default=str(DEFAULT_AUDIO), help="speech: wav, mp3, flac, ogg or m4a (default: the bundled example)")
    parser.add_argument("--out", default="talking.mp4", help="output mp4 path")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pipeline folder or Hub repo id")
    parser.add_argument("--yaw", type=float, default=0.0, help="head yaw offset from the source pose, degrees (±30)")
    parser.add_argument("--pitch", type=float, default=0.0, help="head pitch offset, degrees (±20)")
    parser.add_argument("--roll", type=float, default=0.0, help="head roll offset, degrees (±15)")
    parser.add_argument("--fps", type=_frame_rate, default=25.0, help="video frame rate, 1-60")
    parser.add_argument("--reference", action="store_true", help="render with the reference path (EG3D-like 24 + 24 samples, about 10x slower) instead of the fast engine")
    parser.add_argument("--seed", type=int, default=None, help="with --reference: jitter its ray samples reproducibly with this seed (the fast engine is deterministic)")
    parser.add_argument("--aligned", action="store_true", help="the image is already a face crop in the model's framing")
    parser.add_argument("--crop", action="store_true", help="write the aligned face video instead of the whole photo with the head pasted back")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="frames rendered together")
    parser.add_argument(
        "--max-size", type=_output_side, default=MAX_OUTPUT_SIDE,
        help=f"longest side of the video in pixels: larger photos are shrunk to it before the head is pasted back (default {MAX_OUTPUT_SIDE}; 0 keeps the photo's size)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.seed is not None and not args.reference:
        print("error: --seed jitters the reference renderer's samples; add --reference (the fast engine is deterministic)", file=sys.stderr)
        return 2
    import torch

    from .. import S3DNeRFPipeline
    from ..app.watermark import VIDEO_METADATA, mark_frames
    from ..errors import S3DNeRFError

    try:
        pipe = S3DNeRFPipeline.from_pretrained(args.checkpoint)
        generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
        out = pipe.export(
            args.image,
            args.audio,
            args.out,
            yaw=args.yaw,
            pitch=args.pitch,
            roll=args.roll,
            fps=args.fps,
            aligned=args.aligned,
            crop=True if args.crop else None,
            max_size=args.max_size or None,
            batch_size=args.batch_size,
            generator=generator,
            fast=not args.reference,
            frame_filter=mark_frames,  # the same disclosure as the app: a visible label in every frame and the mp4 tags
            metadata=VIDEO_METADATA,
        )
    except S3DNeRFError as exc:
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return 2
    frames = round(out.audio.size / out.sample_rate * out.fps)  # the speech was fitted to the video's length
    print(json.dumps({"video": str(args.out), "frames": frames, "fps": out.fps, "sync_confidence": out.sync_confidence, "sync_offset": out.sync_offset}))
    return 0
