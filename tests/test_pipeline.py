"""S3DNeRFPipeline behaviour on the tiny architecture: lengths, poses, identity reuse, save/load, errors."""

import numpy as np
import pytest
import torch

from media_helpers import speech_like
from s3d_pipeline import S3DNeRFPipeline, S3DNeRFPipelineOutput
from s3d_pipeline.errors import InvalidAudioError, InvalidImageError, InvalidPoseError


def _speech(seconds, sr=16000):
    return (speech_like(seconds, sr), sr)


@pytest.mark.parametrize("seconds,fps", [(0.5, 25), (0.62, 25), (0.5, 30)])
def test_frame_count_follows_the_audio(tiny_pipe, face_crop, seconds, fps):
    out = tiny_pipe(face_crop, _speech(seconds), fps=fps, aligned=True, compute_sync=False)
    assert isinstance(out, S3DNeRFPipelineOutput)
    assert out.frames.shape == (round(seconds * fps), 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.sample_rate == 16000 and abs(out.audio.size - round(seconds * fps) / fps * 16000) <= 1
    assert out.depth.shape == (round(seconds * fps), 16, 16)
    assert out.attention_map.shape == (round(seconds * fps), 64, 64)


def test_yaw_changes_the_frames_and_per_frame_poses_are_per_frame(tiny_pipe, face_crop):
    audio = _speech(0.4)
    still = tiny_pipe(face_crop, audio, aligned=True, compute_sync=False).frames
    turned = tiny_pipe(face_crop, audio, yaw=20, aligned=True, compute_sync=False).frames
    assert np.abs(still.astype(int) - turned).max() > 0
    per_frame = tiny_pipe(face_crop, audio, yaw=[0] * 5 + [20] * 5, aligned=True, compute_sync=False).frames
    np.testing.assert_array_equal(per_frame[:5], still[:5])
    np.testing.assert_array_equal(per_frame[5:], turned[5:])


def test_reusing_an_encoded_identity_gives_the_same_frames(tiny_pipe, face_crop):
    identity = tiny_pipe.encode_identity(face_crop, aligned=True)
    a = tiny_pipe(face_crop, _speech(0.3), aligned=True, compute_sync=False).frames
    b = tiny_pipe(audio=_speech(0.3), identity=identity, compute_sync=False).frames
    np.testing.assert_array_equal(a, b)


def test_batch_size_does_not_change_the_result(tiny_pipe, face_crop):
    a = tiny_pipe(face_crop, _speech(0.4), aligned=True, batch_size=1, compute_sync=False).frames
    b = tiny_pipe(face_crop, _speech(0.4), aligned=True, batch_size=7, compute_sync=False).frames
    assert np.abs(a.astype(int) - b).max() <= 1


def test_seeded_jitter_is_reproducible_and_differs_from_deterministic(tiny_pipe, face_crop):
    run = lambda g: tiny_pipe(face_crop, _speech(0.2), aligned=True, generator=g, compute_sync=False, fast=False).frames  # noqa: E731
    a, b = run(torch.Generator().manual_seed(5)), run(torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - run(None)).max() > 0


@pytest.mark.parametrize("fast", [None, True, False])
def test_call_renders_with_the_fast_engine_unless_asked_for_the_reference(tiny_pipe, face_crop, monkeypatch, fast):
    used = []
    for name in ("fast_engine", "reference_engine"):
        engine = getattr(tiny_pipe, name)
        monkeypatch.setattr(engine, "render", lambda *a, _render=engine.render, _name=name, **k: used.append(_name) or _render(*a, **k))
    kwargs = {} if fast is None else {"fast": fast}
    tiny_pipe(face_crop, _speech(0.2), aligned=True, compute_sync=False, **kwargs)
    assert used and set(used) == {"reference_engine" if fast is False else "fast_engine"}


def test_output_types(tiny_pipe, face_crop):
    pil = tiny_pipe(face_crop, _speech(0.2), aligned=True, output_type="pil", compute_sync=False).frames
    pt = tiny_pipe(face_crop, _speech(0.2), aligned=True, output_type="pt", compute_sync=False).frames
    assert len(pil) == 5 and pil[0].size == (64, 64)
    assert pt.shape == (5, 3, 64, 64) and float(pt.min()) >= 0 and float(pt.max()) <= 1
    frames, confidence = tiny_pipe(face_crop, _speech(0.4), aligned=True, return_dict=False)
    assert frames.shape[0] == 10 and isinstance(confidence, float)


def test_sync_score_is_reported(tiny_pipe, face_crop):
    out = tiny_pipe(face_crop, _speech(1.0), aligned=True)
    assert isinstance(out.sync_confidence, float) and out.sync_confidence >= 0
    assert -15 <= out.sync_offset <= 15


def test_mouth_amplitude_zero_equals_no_deformation(tiny_pipe, face_crop):
    field = tiny_pipe.deformation_field
    saved = {k: v.clone() for k, v in field.state_dict().items()}
    try:
        for p in field.displacement_mlp.parameters():  # make Δx non-zero
            torch.nn.init.normal_(p, std=0.3)
        audio = _speech(0.2)
        moving = tiny_pipe(face_crop, audio, aligned=True, compute_sync=False).frames
        silent = tiny_pipe(face_crop, audio, aligned=True, mouth_amplitude=0.0, compute_sync=False).frames
        assert np.abs(moving.astype(int) - silent).max() > 0
        field.register_to_config(mode="none")
        undeformed = tiny_pipe(face_crop, audio, aligned=True, compute_sync=False).frames
        np.testing.assert_array_equal(silent, undeformed)
    finally:
        field.register_to_config(mode="cross_attention")
        field.load_state_dict(saved)


def test_save_and_reload_gives_identical_frames(tiny_pipe, face_crop, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "renderer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list((tmp_path / "ckpt").rglob("*.bin"))
    reloaded = S3DNeRFPipeline.from_pretrained(tmp_path / "ckpt")
    reloaded.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    a = tiny_pipe(face_crop, _speech(0.3), yaw=5, aligned=True, generator=g(), fast=False)
    b = reloaded(face_crop, _speech(0.3), yaw=5, aligned=True, generator=g(), fast=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.sync_confidence == b.sync_confidence


def test_hub_ids_go_through_snapshot_download(monkeypatch, tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "snap")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        return str(tmp_path / "snap")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    pipe = S3DNeRFPipeline.from_pretrained("someone/s3d-nerf-demo")
    assert calls == ["someone/s3d-nerf-demo"] and pipe.resolution == 64


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(yaw=45.0), InvalidPoseError, "yaw"),
        (dict(pitch=[1.0, 2.0]), InvalidPoseError, "one value per frame"),
        (dict(roll=float("nan")), InvalidPoseError, "NaN"),
        (dict(fps=0), ValueError, "fps"),
        (dict(output_type="gif"), ValueError, "output_type"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny_pipe, face_crop, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_pipe(face_crop, _speech(0.2), aligned=True, **kwargs)


def test_bad_media_raise_typed_errors(tiny_pipe, face_crop, tmp_path):
    with pytest.raises(InvalidAudioError):
        tiny_pipe(face_crop, (np.zeros(0, np.float32), 16000), aligned=True)
    (tmp_path / "not_an_image.png").write_text("hello")
    with pytest.raises(InvalidImageError):
        tiny_pipe(tmp_path / "not_an_image.png", _speech(0.2))
    with pytest.raises(InvalidImageError):
        tiny_pipe(np.zeros((4, 4, 7), np.uint8), _speech(0.2), aligned=True)


def test_sync_over_time_is_reported_per_window(tiny_pipe, face_crop):
    out = tiny_pipe(face_crop, _speech(1.0), aligned=True)
    assert out.sync_distances.shape == (31,) and out.sync_per_window.shape == (25 - 5 + 1,)
    # The confidence is the median minus the minimum of the per-offset distances.
    assert abs(out.sync_confidence - (np.median(out.sync_distances) - out.sync_distances.min())) < 1e-5


def test_a_pipeline_without_deformation_runs_and_round_trips(face_crop, tmp_path):
    """The no-deformation ablation has a deformation field without weights: it must still run, save and reload."""
    from s3d_pipeline.configs import build_pipeline

    pipe = build_pipeline("tiny", deformation_field={"mode": "none"})
    pipe.set_progress_bar_config(disable=True)
    out = pipe(face_crop, _speech(0.2), aligned=True, compute_sync=False)
    assert out.frames.shape == (5, 64, 64, 3) and out.attention_map is None
    pipe.save_pretrained(tmp_path / "no_deformation")
    reloaded = S3DNeRFPipeline.from_pretrained(tmp_path / "no_deformation")
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.deformation_field.config.mode == "none"
    np.testing.assert_array_equal(reloaded(face_crop, _speech(0.2), aligned=True, compute_sync=False).frames, out.frames)


def test_the_super_resolution_never_sees_the_source_mouth_but_frames_sit_on_the_whole_source(tiny_pipe, face_crop):
    """The super-resolution's source features come from the source with its mouth hidden (a different mouth changes
    nothing of them), while the frames are composited onto the unaltered source: no grey where the mask is below 1."""
    sr = tiny_pipe.super_resolution
    hidden = (sr.hide_mouth(torch.ones(1, 1, 64, 64)) == 0)[0, 0].numpy()  # (64, 64) the hidden ellipse
    other_mouth = face_crop.copy()
    other_mouth[hidden] = 255 - other_mouth[hidden]
    identity, other = (tiny_pipe.encode_identity(img, aligned=True) for img in (face_crop, other_mouth))
    for mine, theirs in zip(identity.source_features, other.source_features):
        assert torch.equal(mine, theirs)
    whole = torch.from_numpy(face_crop).permute(2, 0, 1).float().div(127.5).sub(1.0)
    assert torch.allclose(identity.source[0], whole)  # the mouth region included, not set to grey
    assert not torch.equal(identity.triplanes[0], other.triplanes[0])  # the appearance encoder sees the whole face
