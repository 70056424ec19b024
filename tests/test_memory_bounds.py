"""Memory bounded by design: the CLI and the app stream frames into the encoder and never take the whole-clip
path, ``pipe()`` refuses a result that would not fit before rendering anything, paste-back works chunk by chunk in
uint8, large photos come out at the documented cap, and the lip-sync score is computed as frames stream by."""

import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import soundfile as sf
import torch

from media_helpers import probe_media, speech_like
from s3d_pipeline import S3DNeRFPipeline, pipeline_s3d_nerf
from s3d_pipeline.app import AppConfig, GenerationRequest, TalkingHeadService
from s3d_pipeline.cli import main
from s3d_pipeline.errors import OutputTooLargeError
from s3d_pipeline.face import MAX_OUTPUT_SIDE, PreparedPortrait, apply_affine, fit_output, paste_back, prepare_portrait
from s3d_pipeline.frames import to_uint8
from s3d_pipeline.paths import DEFAULT_IMAGE
from s3d_pipeline.pipeline_s3d_nerf import StreamingSyncScore
from s3d_pipeline.video import VideoWriter, read_video

SR = 16000


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_pipe):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, speech_like(0.6), SR)
    return path


@pytest.fixture(scope="module")
def wide_photo(tmp_path_factory):
    """A 2400x1600 photo (the bundled portrait enlarged onto a wider canvas): larger than the default cap."""
    photo = PIL.Image.new("RGB", (2400, 1600), (90, 110, 130))
    photo.paste(PIL.Image.open(DEFAULT_IMAGE).convert("RGB").resize((1600, 1600), PIL.Image.BICUBIC), (400, 0))
    path = tmp_path_factory.mktemp("photo") / "wide.jpg"
    photo.save(path, quality=90)
    return path


@pytest.fixture()
def no_whole_clip(monkeypatch):
    """Fail the test if anything takes ``pipe.__call__`` (the path that returns every frame at once); record the
    chunk sizes handed to the encoder."""
    def whole_clip(self, *args, **kwargs):
        pytest.fail("pipe.__call__ was used: the whole clip's frames would be held")

    written = []
    write = VideoWriter.write
    monkeypatch.setattr(S3DNeRFPipeline, "__call__", whole_clip)
    monkeypatch.setattr(VideoWriter, "write", lambda self, frames: written.append(len(frames)) or write(self, frames))
    return written


def test_the_cli_streams_chunks_into_the_encoder(tmp_path, tiny_checkpoint, speech_file, no_whole_clip):
    out = tmp_path / "talking.mp4"
    args = ["generate", "--audio", str(speech_file), "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--batch-size", "4"]
    assert main(args) == 0
    assert no_whole_clip == [1, 4, 4, 4, 2]  # 15 frames: the first alone, then batch_size at a time
    assert probe_media(out).video[0][0] == "h264"


def test_the_app_streams_chunks_into_the_encoder(tiny_pipe, tmp_path, speech_file, no_whole_clip):
    service = TalkingHeadService(tiny_pipe, AppConfig(batch_size=4), output_dir=tmp_path)
    result = service.generate(GenerationRequest(str(DEFAULT_IMAGE), str(speech_file), consent=True, framing="full frame"))
    assert no_whole_clip == [1, 4, 4, 4, 2]
    assert probe_media(result.video).audio == ["aac"] and isinstance(result.confidence, float)
    assert service.preview(GenerationRequest(str(DEFAULT_IMAGE), consent=True, framing="face crop")).shape == (64, 64, 3)


def test_an_over_budget_call_is_refused_before_rendering(tiny_pipe, face_crop, monkeypatch, tmp_path):
    rendered = []
    render = S3DNeRFPipeline.render_frames
    monkeypatch.setattr(S3DNeRFPipeline, "render_frames", lambda self, *a, **k: rendered.append(1) or render(self, *a, **k))
    monkeypatch.setattr(pipeline_s3d_nerf, "available_memory", lambda: 1_000_000)  # one call may hold 0.5 MB
    speech = (speech_like(2.0), SR)  # 50 frames of 64x64: 0.6 MB of uint8 frames alone
    with pytest.raises(OutputTooLargeError) as refused:
        tiny_pipe(face_crop, speech, aligned=True)
    error = refused.value
    assert not rendered
    assert error.bytes_needed > error.bytes_allowed == 500_000 and error.bytes_needed >= 50 * 64 * 64 * 3
    message = str(error)
    assert str(error.bytes_needed) in message and "pipe.export" in message and "pipe.stream" in message
    with pytest.raises(OutputTooLargeError) as as_floats:
        tiny_pipe(face_crop, speech, aligned=True, output_type="pt")
    assert as_floats.value.bytes_needed > error.bytes_needed  # float32 frames take 4 bytes a channel
    # The same video streams and exports under the same budget: neither holds the clip.
    assert sum(len(c) for c in tiny_pipe.stream(face_crop, speech, aligned=True)) == 50
    assert tiny_pipe.export(face_crop, speech, tmp_path / "fits.mp4", aligned=True).sync_confidence is not None
    assert len(rendered) == 2 * 8  # two streamed clips of 1 + 7 chunks, nothing for the refused calls


def test_a_result_that_fits_is_returned_whole(tiny_pipe, face_crop, monkeypatch):
    monkeypatch.setattr(pipeline_s3d_nerf, "available_memory", lambda: 1_000_000)
    assert tiny_pipe(face_crop, (speech_like(0.4), SR), aligned=True).frames.shape == (10, 64, 64, 3)


@pytest.fixture(scope="module")
def portrait():
    return prepare_portrait(str(DEFAULT_IMAGE), resolution=64)


def test_paste_back_of_a_chunk_equals_paste_back_frame_by_frame(portrait):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    chunk = paste_back(frames, portrait)
    assert chunk.dtype == np.uint8 and chunk.shape == (5, *portrait.original.shape)
    np.testing.assert_array_equal(chunk, np.concatenate([paste_back(f, portrait) for f in frames]))


def test_pasted_frames_are_the_rendered_crops_pasted_back_in_uint8(tiny_pipe):
    speech = (speech_like(0.4), SR)
    crops = tiny_pipe(str(DEFAULT_IMAGE), speech, crop=True, compute_sync=False).frames
    full = tiny_pipe(str(DEFAULT_IMAGE), speech, crop=False, batch_size=3, compute_sync=False).frames
    identity = tiny_pipe.encode_identity(str(DEFAULT_IMAGE))
    assert full.dtype == np.uint8
    np.testing.assert_array_equal(full, paste_back(crops, fit_output(identity.portrait)))


def test_fit_output_shrinks_the_photo_and_its_transform_together():
    original = np.zeros((3000, 4000, 3), np.uint8)
    crop_to_original = np.array([[5.0, 0.5, 1200.0], [-0.5, 5.0, 700.0]], np.float32)
    portrait = PreparedPortrait(np.zeros((64, 64, 3), np.uint8), np.eye(4), original, crop_to_original, face_box=(1000, 600, 2000, 1600))
    fitted = fit_output(portrait)
    assert fitted.original.shape == (1440, 1920, 3) and fitted.original.dtype == np.uint8
    points = np.array([[0.0, 0.0], [64.0, 64.0], [10.0, 50.0]])  # crop pixels
    np.testing.assert_allclose(apply_affine(fitted.crop_to_original, points), apply_affine(crop_to_original, points) * 0.48, rtol=1e-5)
    assert fitted.face_box == pytest.approx((480, 288, 960, 768))
    assert fit_output(portrait, None) is portrait and fit_output(portrait, 4000) is portrait


def test_a_large_photo_comes_out_at_the_cap_or_at_its_own_size(tiny_pipe, wide_photo):
    assert MAX_OUTPUT_SIDE == 1920
    speech = (speech_like(0.2), SR)
    identity = tiny_pipe.encode_identity(str(wide_photo))
    first = lambda **kwargs: next(tiny_pipe.stream(audio=speech, identity=identity, **kwargs))  # noqa: E731
    assert first().shape == (1, 1280, 1920, 3)  # the default cap, aspect kept
    assert first(max_size=None).shape == (1, 1600, 2400, 3)  # the photo's own size
    assert first(max_size=600).shape == (1, 400, 600, 3)
    assert first(crop=True).shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="max_size"):
        first(max_size=0)


def test_the_cli_caps_the_video_and_keeps_the_photo_size_with_zero(tmp_path, tiny_checkpoint, speech_file, wide_photo):
    common = ["generate", "--image", str(wide_photo), "--audio", str(speech_file), "--checkpoint", str(tiny_checkpoint)]
    assert main([*common, "--out", str(tmp_path / "capped.mp4"), "--max-size", "480"]) == 0
    assert probe_media(tmp_path / "capped.mp4").video == [("h264", "480", "320")]
    assert main([*common, "--out", str(tmp_path / "default.mp4")]) == 0
    assert probe_media(tmp_path / "default.mp4").video == [("h264", "1920", "1280")]


def test_the_streamed_sync_score_equals_the_whole_clip_score(tiny_pipe):
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(23, 3, 64, 64, generator=generator)
    waveform = speech_like(23 / 25)
    whole = tiny_pipe.lip_sync.score(frames, torch.from_numpy(waveform), 25)
    streamed = StreamingSyncScore(tiny_pipe.lip_sync)
    for chunk in frames.split([1, 2, 8, 3, 9]):  # chunks shorter than a window too
        streamed.add(chunk)
    score = streamed.score(waveform, 25)
    assert score.offset == whole.offset and score.confidence == pytest.approx(whole.confidence, abs=1e-5)
    np.testing.assert_allclose(score.per_window, whole.per_window, atol=1e-5)
    np.testing.assert_allclose(score.distances, whole.distances, atol=1e-5)
    short = StreamingSyncScore(tiny_pipe.lip_sync)
    short.add(frames[:4])
    assert short.score(waveform, 25) is None  # fewer frames than one window, as the whole-clip score says


def test_export_writes_the_video_call_returns_and_the_same_score(tiny_pipe, face_crop, tmp_path):
    speech = (speech_like(0.8), SR)
    out = tiny_pipe(face_crop, speech, aligned=True, batch_size=3)
    exported = tiny_pipe.export(face_crop, speech, tmp_path / "talking.mp4", aligned=True, batch_size=3, frame_filter=lambda f: 255 - f)
    assert exported.frames is None
    assert exported.sync_offset == out.sync_offset and exported.sync_confidence == pytest.approx(out.sync_confidence, abs=1e-5)
    np.testing.assert_allclose(exported.sync_per_window, out.sync_per_window, atol=1e-5)
    np.testing.assert_array_equal(exported.depth[0], out.depth[len(out.depth) // 2])  # the middle frame's
    np.testing.assert_allclose(exported.attention_map[0], out.attention_map.mean(axis=0), atol=1e-5)
    decoded, _ = read_video(tmp_path / "talking.mp4")
    assert len(decoded) == len(out.frames)
    error = lambda expected: np.abs(decoded.astype(int) - expected).mean()  # noqa: E731
    assert error(255 - out.frames) < 10 < 50 < error(out.frames)  # the filtered frames, within H.264's loss


def test_the_pasted_frames_never_exist_as_floats_at_the_photos_size(tiny_pipe, wide_photo, monkeypatch):
    """Float copies are made at the crop's size only: to_uint8 never sees a frame larger than the render."""
    sizes = []
    monkeypatch.setattr(pipeline_s3d_nerf, "to_uint8", lambda frames: sizes.append(tuple(frames.shape[-2:])) or to_uint8(frames))
    frames = tiny_pipe(str(wide_photo), (speech_like(0.2), SR), max_size=None, compute_sync=False).frames
    assert frames.shape == (5, 1600, 2400, 3) and frames.dtype == np.uint8
    assert sizes and set(sizes) == {(64, 64)}


def test_the_bench_measures_the_user_path_in_a_process_of_its_own(tiny_checkpoint):
    cmd = [sys.executable, "-m", "s3d_pipeline.benchmark", "--user-path-rss", "0.4", "--photo-size", "2200", "--checkpoint", str(tiny_checkpoint), "--threads", "1"]
    report = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout.strip().splitlines()[-1])
    assert report["photo"] == "2200x2200" and report["video_size"] == [1920, 1920]  # the CLI's default cap
    assert report["video_frames"] == 10 and report["video_seconds"] == pytest.approx(0.4, abs=0.05)
    assert report["peak_rss_mb"] > 0 and report["encoder_peak_rss_mb"] > 0
