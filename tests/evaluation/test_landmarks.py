"""The shipped evaluation landmark detector on a held-out synthetic identity, and its training loop."""

import numpy as np
import pytest

from s3d_pipeline.data.clip import ClipMeta, write_clip
from s3d_pipeline.evaluation.landmarks import LandmarkRegressor, fit_landmark_regressor
from s3d_pipeline.evaluation.metrics import correlation, mouth_opening
from s3d_pipeline.paths import REPO_ROOT
from s3d_pipeline.rendering.cameras import intrinsics, pose_to_cam2world


def test_shipped_detector_finds_landmarks_and_mouth_motion_on_an_unseen_identity(tmp_path):
    synth = pytest.importorskip("s3d_pipeline.data.synth")
    try:
        meta, rgb, _, _, _ = synth.synthesize_clip(synth.CorpusConfig(out=tmp_path, identities=1, seconds=1.2, seed=42, split="test"), 0, 0)
    except RuntimeError as exc:  # no EGL context, or espeak-ng missing (SpeechUnavailable is a RuntimeError)
        pytest.skip(f"synthetic renderer unavailable: {exc}")
    detector = LandmarkRegressor.from_pretrained(REPO_ROOT / "checkpoints" / "landmarks-synth", use_safetensors=True)
    truth = np.asarray(meta.landmarks, dtype=np.float32)
    found = detector.detect(rgb)
    assert np.linalg.norm(found - truth, axis=-1).mean() < 5.0  # pixels at 256 (2.04 on the held-out set)
    opening = mouth_opening(truth)
    if opening.std() > 0.01:  # the clip speaks: the detected mouth follows it
        assert correlation(mouth_opening(found), opening) > 0.5


def test_fitting_learns_the_landmarks_of_a_tiny_corpus(tmp_path):
    rng = np.random.default_rng(0)
    frames, size = 20, 64
    rgb = np.zeros((frames, size, size, 3), np.uint8)
    landmarks = np.zeros((frames, 68, 2))
    for i in range(frames):  # a bright square whose position the 68 points follow
        x, y = rng.integers(8, 40, size=2)
        rgb[i, y : y + 16, x : x + 16] = 255
        landmarks[i] = np.array([x + 8, y + 8]) + rng.normal(0, 0.1, (68, 2))
    meta = ClipMeta(fps=25, num_frames=frames, resolution=[size, size], intrinsics=intrinsics().tolist(),
                    cam2world=pose_to_cam2world(np.zeros(frames)).tolist(), landmarks=landmarks.tolist(), identity="sq")  # fmt: skip
    clip = write_clip(tmp_path / "sq", meta, rgb, np.zeros(12800, np.float32))
    fit = fit_landmark_regressor([clip], [clip], steps=150, batch_size=8, frames_per_clip=20, log=lambda _: None)
    assert fit.heldout_error_px < 0.5 * np.linalg.norm(landmarks - landmarks.mean(0), axis=-1).mean() * 256 / size
