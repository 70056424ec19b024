"""Real-video preprocessing on a short talking-face video synthesised from the astronaut photo."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data

from s3d_pipeline.cli import main
from s3d_pipeline.data.clip import AUDIO_SAMPLE_RATE, list_clips, read_clip
from s3d_pipeline.rendering.framing import EYE_CENTER, MOUTH_CENTER
from s3d_pipeline.face import eye_and_mouth_centres
from s3d_pipeline.video import export_to_video

FPS = 25
FRAMES = 30


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder with a 1.2 s video of the astronaut drifting and zooming, with a tone, plus a broken file."""
    folder = tmp_path_factory.mktemp("videos")
    photo = skimage.data.astronaut()
    frames = []
    for i in range(FRAMES):
        motion = cv2.getRotationMatrix2D((256, 256), 0, 1.0 + 0.05 * np.sin(i / 5))
        motion[0, 2] += 6 * np.sin(i / 4)
        frames.append(cv2.warpAffine(photo, motion, (512, 512), borderMode=cv2.BORDER_REFLECT)[40:328, 100:388])
    t = np.arange(int(AUDIO_SAMPLE_RATE * FRAMES / FPS)) / AUDIO_SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    export_to_video(SimpleNamespace(frames=np.stack(frames), fps=FPS, audio=tone, sample_rate=AUDIO_SAMPLE_RATE), folder / "talk.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


def test_preprocess_writes_valid_clips_and_skips_bad_videos(videos, tmp_path, capsys):
    out = tmp_path / "clips"
    assert main(["preprocess", "--videos", str(videos), "--out", str(out), "--fps", str(FPS), "--resolution", "128", "--face-backend", "offline"]) == 0
    summary = capsys.readouterr().out
    assert "skipped" in summary and "broken.mp4" in summary and "preprocessed 1 of 2 videos into 1 clips" in summary

    (path,) = list_clips(out)
    clip = read_clip(path)
    assert clip.meta.source == "real" and clip.meta.identity == "talk" and clip.meta.extra["face_backend"] == "offline"
    assert clip.meta.extra["face_slip_fraction"] < 0.1  # a slip is a rare frame, not the track
    assert clip.rgb.shape == (FRAMES, 128, 128, 3)
    assert len(clip.audio) == FRAMES * AUDIO_SAMPLE_RATE // FPS
    landmarks = clip.landmarks  # (N, 68, 2) crop pixels
    assert ((landmarks >= 0) & (landmarks < 128)).all()
    eyes, mouth = eye_and_mouth_centres(landmarks / 128)
    # The crop follows the moving face: per frame, eyes and mouth stay near the framing despite the motion.
    assert np.abs(eyes - EYE_CENTER).max() < 0.03 and np.abs(mouth - MOUTH_CENTER).max() < 0.03
    np.testing.assert_allclose(np.linalg.norm(clip.cam2world[:, :3, 3], axis=-1), 2.7, atol=1e-4)  # on the camera sphere


def test_jump_rejection_drops_detector_slips_and_keeps_speech_and_smooth_motion():
    from s3d_pipeline.data.preprocess import reject_jumps
    from s3d_pipeline.face import mean_landmarks

    frames = np.arange(40)
    face = mean_landmarks(128).astype(np.float64)  # (68, 2); eye-to-mouth distance 0.26 * 128 = 33 px
    # A head drifting fast but smoothly: 5 px a frame sideways (0.15 eye-to-mouth), slowly zooming.
    scale = 1.0 + 0.1 * np.sin(frames / 6)
    track = (face - 64) * scale[:, None, None] + 64 + np.stack([5.0 * frames, 3 * np.sin(frames / 3)], -1)[:, None]
    assert not np.isnan(reject_jumps(track, 0.1)).any()

    speech = track.copy()
    speech[10, 48:68, 1] += 10.0  # the mouth opens wide for one frame; jaw and lips jump, nose and eyes stay
    speech[10, 5:12, 1] += 10.0
    assert not np.isnan(reject_jumps(speech, 0.1)).any()

    slipped = track.copy()
    slipped[20] += (0.0, 6.0)  # the detector box slips 6 px (0.18 eye-to-mouth) for one frame
    slipped[30] = (slipped[30] - slipped[30].mean(0)) * 1.15 + slipped[30].mean(0)  # and is 15% too large on another
    lost = np.isnan(reject_jumps(slipped, 0.1)[:, 0, 0])
    assert frames[lost].tolist() == [20, 30]
    assert not np.isnan(reject_jumps(slipped, 0.0)).any()  # 0 turns the check off


def test_long_videos_are_cut_into_segments(videos, tmp_path):
    from s3d_pipeline.data.preprocess import PreprocessConfig, preprocess_video

    result = preprocess_video(videos / "talk.mp4", tmp_path, PreprocessConfig(segment_seconds=0.5, min_seconds=0.1, face_backend="offline"))
    assert [read_clip(p).meta.num_frames for p in result.clips] == [12, 12, 6]  # 0.5 s = 12.5 frames -> 12
    assert [read_clip(p).meta.extra["start_frame"] for p in result.clips] == [0, 12, 24]


def test_nothing_usable_exits_non_zero(videos, tmp_path, capsys):
    only_broken = tmp_path / "in"
    only_broken.mkdir()
    (only_broken / "broken.mp4").write_bytes((videos / "broken.mp4").read_bytes())
    assert main(["preprocess", "--videos", str(only_broken), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists() or list_clips(tmp_path / "out") == []


def test_training_accepts_preprocessed_clips(videos, tmp_path):
    """The clips preprocess writes are what `train` reads: one generator step of the tiny config runs on them."""
    import torch

    from s3d_pipeline.models import LipSyncDiscriminator
    from s3d_pipeline.training.config import get_config

    clips, run = tmp_path / "clips", tmp_path / "run"
    assert main(["preprocess", "--videos", str(videos), "--out", str(clips), "--fps", str(FPS), "--resolution", "64", "--face-backend", "offline"]) == 0
    torch.manual_seed(0)
    LipSyncDiscriminator(**get_config("tiny").components()["lip_sync"]).save_pretrained(run / "syncnet" / "lip_sync")
    assert main(["train", "--config", "tiny", "--data", str(clips), "--out", str(run), "--max-steps", "1"]) == 0
    assert (run / "pipeline" / "model_index.json").is_file()
