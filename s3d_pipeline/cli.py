"""The ``s3d-nerf`` console script.

Each subcommand lives in ``s3d_pipeline/commands/<name>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so ``s3d-nerf --help`` stays fast.
``eval`` and ``bench`` print their results as one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMANDS = {
    "generate": "Render a talking-head video from a portrait and a speech clip.",
    "synth": "Render a synthetic talking-head corpus in the clip format.",
    "preprocess": "Turn real talking-face videos (e.g. HDTF) into the clip format.",
    "train": "Train the lip-sync discriminator or the generator on clip folders.",
    "eval": "Evaluate a checkpoint on held-out clips (SSIM, PSNR, LPIPS, LMD, CPBD, sync).",
    "bench": "Measure speed and memory of the per-frame path.",
}


def _command_module(name: str):
    return importlib.import_module(f"s3d_pipeline.commands.{name}")


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3d-nerf", description="S3D-NeRF: single-shot speech-driven talking heads.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    chosen = next((a for a in (argv or []) if a in SUBCOMMANDS), None)
    for name, help_text in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen command's module is imported
            _command_module(name).add_arguments(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(_command_module(args.command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
