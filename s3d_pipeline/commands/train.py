"""``s3d-nerf train``: pretrain the lip-sync discriminator, then train the generator (see :mod:`s3d_pipeline.training`).

Several processes: start the same command under a distributed launcher and ``accelerate`` picks the setting up
from its environment. GPUs, one or many nodes: ``accelerate launch --multi_gpu --num_processes 8 [--num_machines 2
--machine_rank R --main_process_ip HOST] -m s3d_pipeline.cli train ...``. CPUs (gloo):
``python -m torch.distributed.run --nproc_per_node 2 -m s3d_pipeline.cli train ...``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.config import MIXED_PRECISIONS

    parser.add_argument("--config", default="demo", help="a named config (demo, paper, tiny, optionally -no_deformation, -naive, -concat, -no_lip_sync) or a .json file (default: demo)")
    parser.add_argument("--ablation", default="", help="a row of the paper's ablation table (full, no_deformation, naive, concat, no_lip_sync) applied on top of --config (e.g. a recipe .json), so the rows share one recipe")
    parser.add_argument("--data", type=Path, required=True, help="folder of clip folders (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, logs, samples and the exported pipeline")
    parser.add_argument("--stage", choices=("syncnet", "generator"), default="generator", help="what to train (default: generator; run syncnet first)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, default=None, help="override the config's autocast: bf16 is fast on GPUs and on CPUs with AVX512-BF16 or AMX, about 20x slower than no (fp32) on other CPUs")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage in --out")
    parser.add_argument("--syncnet", type=Path, default=None, help="pretrained lip-sync discriminator folder (default: <out>/syncnet/lip_sync, else the --init-from folder's, else the shipped checkpoint's when its architecture matches)")
    parser.add_argument("--init-from", type=Path, default=None, help="generator stage: start from the weights of a pipeline folder (e.g. checkpoints/s3d-nerf-demo) with fresh optimisers; its lip_sync is used when --out has none")
    parser.add_argument("--reinit", nargs="+", default=(), metavar="COMPONENT", help="with --init-from: generator components that start from random weights instead (e.g. audio_encoder)")
    parser.add_argument("--export-pipeline", action="store_true", help="only write <out>/pipeline from the newest generator checkpoint, then exit")


def run(args: argparse.Namespace) -> int:
    from ..training.config import get_config
    from ..training.trainer import GeneratorTraining, SyncNetTraining, export_from_checkpoint

    try:
        config = get_config(args.config, args.ablation)
        if args.mixed_precision is not None:
            config = replace(config, mixed_precision=args.mixed_precision)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    if args.max_steps is not None and args.max_steps < 0:
        print("error: --max-steps must be >= 0")
        return 2
    if args.export_pipeline:
        print(f"pipeline written to {export_from_checkpoint(config, args.out, args.syncnet)}")
        return 0
    if not args.data.is_dir():
        print(f"error: --data {args.data} is not a folder")
        return 2
    if args.stage == "syncnet":
        run_ = SyncNetTraining(config, args.data, args.out, args.max_steps)
    else:
        try:
            run_ = GeneratorTraining(config, args.data, args.out, args.max_steps, args.syncnet, args.init_from, args.reinit)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}")
            return 2
    if args.resume:
        run_.resume()
    run_.train()
    run_.finish()
    return 0
