"""The evaluation harness and ``s3d-nerf eval`` on tiny clips made in the test."""

import json

import numpy as np
import pytest
import torch

from media_helpers import speech_like
from s3d_pipeline.cli import main
from s3d_pipeline.data.clip import ClipMeta, list_clips, read_clip, write_clip
from s3d_pipeline.evaluation.harness import METRICS, VARIANTS, Evaluator
from s3d_pipeline.evaluation.landmarks import LandmarkRegressor
from s3d_pipeline.evaluation.metrics import psnr
from s3d_pipeline.rendering.cameras import intrinsics, pose_to_cam2world


def _clip(path, seed, frames=12, size=64):
    rng = np.random.default_rng(seed)
    yaw = np.linspace(0, 24, frames)  # turns 24 degrees over the clip
    base = rng.integers(0, 255, (1, size, size, 3))
    rgb = np.clip(base + rng.integers(-20, 20, (frames, size, size, 3)), 0, 255).astype(np.uint8)
    landmarks = np.tile(rng.uniform(10, 54, (1, 68, 2)), (frames, 1, 1))
    landmarks[:, 66, 1] += np.sin(np.arange(frames))  # the mouth opens and closes
    meta = ClipMeta(
        fps=25, num_frames=frames, resolution=[size, size], intrinsics=intrinsics().tolist(),
        cam2world=pose_to_cam2world(torch.tensor(yaw, dtype=torch.float32)).tolist(), landmarks=landmarks.tolist(), identity=f"t{seed}",
    )  # fmt: skip
    write_clip(path, meta, rgb, speech_like(frames / 25, seed=seed))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    for k in range(2):
        _clip(root / f"c{k}", seed=k)
    return root


def test_variants_are_scored_side_by_side(tiny_pipe, clips):
    evaluator = Evaluator(pipe=tiny_pipe, sync=tiny_pipe.lip_sync, landmarks=LandmarkRegressor(input_size=32, channels=(8, 8, 8, 8, 8)), log=lambda _: None)
    result = evaluator.evaluate(list_clips(clips))
    assert set(VARIANTS) <= set(result)
    for variant in VARIANTS:
        assert set(METRICS) <= set(result[variant])
    gt, static, model = result["ground_truth"], result["static"], result["model"]
    assert gt["ssim"] == pytest.approx(1.0) and gt["psnr"] == 100.0
    assert static["ssim"] < 1.0 and static["psnr"] < 100.0
    assert model["ssim_source_view"] is not None and static["ssim_source_view"] is None
    assert model["lpips"] is None  # no backbone weights offline: reported unavailable, not estimated
    assert gt["f_lmd"] >= 0 and gt["m_lmd"] >= 0
    # The clip turns 0-24 degrees: every frame falls in one of the yaw bins.
    assert sum(model[f"frames_yaw_{lo}_{hi}"] for lo, hi in ((0, 10), (10, 20), (20, 30))) == 24
    assert len(result["per_clip"]) == 2


def test_eval_command_prints_one_json_object(tiny_pipe, clips, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "ckpt")
    code = main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(clips), "--landmarks", str(tmp_path / "none"), "--json", "--report", str(tmp_path / "r.json")])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert set(result) == {"model", "ground_truth", "static", "shuffled", "info"}
    assert result["model"]["f_lmd"] is None and "unavailable" in result["info"]["landmark_detector"]
    assert len(json.loads((tmp_path / "r.json").read_text())["per_clip"]) == 2


def test_evaluation_needs_two_clips(tiny_pipe, clips):
    evaluator = Evaluator(pipe=tiny_pipe, sync=tiny_pipe.lip_sync, log=lambda _: None)
    with pytest.raises(ValueError, match="at least 2 clips"):
        evaluator.evaluate(list_clips(clips)[:1])


def test_fast_evaluation_renders_the_same_model(tiny_pipe, clips):
    """--fast swaps the renderer, not the model: its frames match the reference path's closely."""
    clip = read_clip(list_clips(clips)[0], load_depth=False)
    poses = torch.zeros(clip.meta.num_frames, 3)
    frames = {}
    for fast in (False, True):
        evaluator = Evaluator(pipe=tiny_pipe, sync=tiny_pipe.lip_sync, fast=fast, log=lambda _: None)
        identity = tiny_pipe.encode_identity(clip.rgb[0], aligned=True, fast=fast)
        frames[fast] = evaluator.render(identity, poses, clip.audio, clip.meta.fps)
    assert frames[True].shape == frames[False].shape
    assert 30.0 < psnr(frames[True], frames[False]) < 100.0  # close, yet really the other engine


def test_eval_writes_a_sample_sheet_of_ground_truth_above_the_model(tiny_pipe, clips, tmp_path):
    """--samples: two rows per clip (ground truth, then the model's render), one column per frame that exists."""
    import PIL.Image

    tiny_pipe.save_pretrained(tmp_path / "ckpt")
    args = ["eval", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(clips), "--landmarks", str(tmp_path / "none"), "--json"]
    assert main(args + ["--samples", str(tmp_path / "missing" / "s.png")]) == 2  # refused before rendering anything
    assert not (tmp_path / "missing").exists()
    assert main(args + ["--samples", str(tmp_path / "s.png")]) == 0
    sheet = np.asarray(PIL.Image.open(tmp_path / "s.png"))
    size = tiny_pipe.resolution
    assert sheet.shape == (4 * size, 1 * size, 3)  # 12-frame clips: of frames 0, 15, 30, ... only frame 0 exists
    first = read_clip(list_clips(clips)[0], load_depth=False)
    gt_tile, model_tile = sheet[:size].astype(float), sheet[size : 2 * size].astype(float)
    resized = np.asarray(PIL.Image.fromarray(first.rgb[0]).resize((size, size), PIL.Image.BILINEAR)).astype(float)
    assert np.abs(gt_tile - resized).mean() < 8  # the ground-truth row is the clip's own frame
    assert np.abs(model_tile - gt_tile).mean() > 1  # the model's row is a render, not a copy
