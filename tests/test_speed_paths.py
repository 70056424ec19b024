"""The fast engine against the reference engine, streaming, and the fast engine's building blocks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3d_pipeline.audio import SAMPLE_RATE
from s3d_pipeline.benchmark import BenchSetup, activate_zero_layers, load_pipeline
from s3d_pipeline.configs import build_pipeline
from s3d_pipeline.engines.fast.folded_conv import fold_upsampling, upsampled_conv
from s3d_pipeline.engines.fast.plane_table import PlaneTable, presum_triplanes
from s3d_pipeline.evaluation.metrics import psnr
from s3d_pipeline.frames import to_uint8
from s3d_pipeline.rendering.cameras import pose_to_cam2world
from s3d_pipeline.rendering.volume import composite
from s3d_pipeline.rendering.triplane import plane_coordinates, sample_multiscale, sample_planes
from s3d_pipeline.video import VideoWriter

from media_helpers import probe_media, speech_like

# Measured 45-49 dB on the tiny and demo architectures with random weights; the bound leaves room for seeds.
MIN_PSNR_DB = 38.0


@pytest.fixture(scope="module")
def active_pipe():
    """The tiny architecture with its zero-initialised output layers made non-zero (Δx and the residual matter)."""
    return load_pipeline(BenchSetup(config="tiny"))


@pytest.mark.parametrize("batch", [1, 3])
def test_plane_table_lookup_equals_grid_sample(batch):
    torch.manual_seed(0)
    planes = torch.randn(batch, 3, 5, 7, 9)
    points = (torch.rand(batch, 500, 3) * 2 - 1) * 0.6  # inside and well outside the planes
    expected = sample_planes(planes, plane_coordinates(points, 0.35))
    assert torch.allclose(PlaneTable.from_planes(planes, 0.35).lookup(points), expected, atol=1e-5)


def test_presummed_triplane_is_exact_for_one_scale_and_close_for_four():
    torch.manual_seed(0)
    scales = [torch.randn(1, 3, 4, s, s) for s in (16, 8, 4, 2)]
    points = (torch.rand(1, 2000, 3) * 2 - 1) * 0.5
    one = presum_triplanes(scales[:1], 0.35).lookup(points)
    assert torch.allclose(one, sample_multiscale(scales[:1], points, 0.35), atol=1e-5)
    # White-noise planes are the worst case for re-interpolating coarse scales on the fine grid (~10 % here).
    error = presum_triplanes(scales, 0.35).lookup(points) - sample_multiscale(scales, points, 0.35)
    assert float(error.abs().mean()) < 0.15 * float(sample_multiscale(scales, points, 0.35).abs().mean())


@pytest.mark.parametrize("size", [(2, 2), (5, 7), (16, 16)])
def test_upsampled_conv_is_the_conv_of_the_bilinear_upsampling(size):
    """The folded convolution gives the super-resolution's conv(interpolate(x)) at every pixel, edges included,
    without building the upsampled image."""
    torch.manual_seed(0)
    low = torch.randn(2, 6, *size).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 6, 3, 3)
    expected = F.conv2d(F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False), weight, padding=1)
    got = upsampled_conv(low, weight, fold_upsampling(weight))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(upsampled_conv(low, weight, fold_upsampling(weight.flip(-1))), expected, atol=1e-2)


def test_fast_frames_do_not_depend_on_blocks_or_workers(active_pipe, face_crop):
    """Rays and frames go through the fast path in blocks (for the CPU's cache), and a chunk's frames are split
    over worker threads: any block size and any number of workers give the same frames."""
    identity = active_pipe.encode_identity(face_crop, aligned=True, fast=True)
    windows = active_pipe.encode_audio(speech_like(0.5), 3, 25.0)
    cams = pose_to_cam2world(torch.tensor([0.0, 10.0, -15.0]), torch.zeros(3), torch.zeros(3))
    engine = active_pipe.fast_engine
    whole = engine.render_part(identity, engine.prepare(identity), windows, cams, 1.0).frames  # one thread; the tiny chunk is one block
    sizes, threads = (engine.rays_per_block, engine.frames_per_block), torch.get_num_threads()
    try:
        engine.rays_per_block, engine.frames_per_block = 37, 1  # blocks that split frames and rays unevenly
        torch.set_num_threads(2)  # two workers of 2 and 1 frames
        blocked = engine.render(identity, windows, cams).frames
    finally:
        engine.rays_per_block, engine.frames_per_block = sizes
        torch.set_num_threads(threads)
    assert engine._pool_workers == 2
    assert torch.allclose(blocked, whole, atol=1e-5)


@pytest.mark.parametrize("yaw", [0.0, 20.0])
def test_fast_frames_match_the_reference(active_pipe, face_crop, yaw):
    identity = active_pipe.encode_identity(face_crop, aligned=True, fast=True)
    windows = active_pipe.encode_audio(speech_like(0.5), 4, 25.0)
    cams = pose_to_cam2world(torch.full((4,), yaw), torch.linspace(-10, 10, 4), torch.zeros(4))
    reference = active_pipe.render_frames(identity, windows, cams, fast=False).frames
    fast = active_pipe.render_frames(identity, windows, cams).frames
    assert psnr(to_uint8(fast), to_uint8(reference)) >= MIN_PSNR_DB
    assert not torch.equal(fast, reference)  # a different computation, not a shortcut to the same code


@pytest.mark.parametrize("mode", ["cross_attention", "concat", "naive"])
def test_fast_point_mlps_compute_the_models_functions(face_crop, mode):
    """The fast path's rearranged per-point MLPs (first layers split by input, the naive variant's audio share
    computed once per frame, bf16) give the deformation field's Δx and the renderer's decoded, integrated samples."""
    torch.manual_seed(0)
    pipe = build_pipeline("tiny", deformation_field=dict(mode=mode))
    activate_zero_layers(pipe)
    identity = pipe.encode_identity(face_crop, aligned=True, fast=True)
    engine = pipe.fast_engine
    fast = engine.prepare(identity)
    with torch.no_grad():
        a_dri = pipe.audio_encoder(pipe.encode_audio(speech_like(0.5), 3, 25.0))
        field = pipe.deformation_field(identity.slots, identity.triplanes, a_dri.tokens, a_dri.pooled)
        deform_planes, _ = engine.deformation_planes(identity, fast, a_dri)
        points = (torch.rand(3, 400, 3) * 2 - 1) * 0.3  # (frames, M, 3)
        frames = torch.arange(3).repeat_interleave(400)
        moved = engine.displace(fast, points.reshape(-1, 3), frames, engine.deformation_table(deform_planes), a_dri.pooled, 1.0).reshape(3, 400, 3)
        delta = pipe.deformation_field.displacement(field, points)
        assert float((moved - points - delta).abs().mean()) < 0.03 * float(delta.abs().mean())  # bf16 rounding

        depths = torch.linspace(0.4, 1.2, 12).expand(50, 12)[..., None]  # (K, S, 1)
        samples = points[0, :50, None] + torch.tensor([0.0, 0.0, 1.0]) * (depths - 0.8)  # (K, S, 3)
        features, depth, opacity, canonical = engine.shade(fast, samples, depths)
        density, feats = pipe.renderer.decode(fast.triplane.lookup(samples.reshape(1, -1, 3)).float())
        with_points = torch.cat([feats.reshape(1, 50, 12, -1), samples[None]], dim=-1)  # the positions integrated too
        expected = composite(density.reshape(1, 50, 12, 1), with_points, depths[None])
        assert torch.allclose(opacity, expected.opacity[0], atol=0.01)
        assert torch.allclose(features, expected.features[0, :, :-3], atol=0.01)
        assert torch.allclose(canonical, expected.features[0, :, -3:], atol=0.01)


def test_reference_path_ignores_the_fast_cache(active_pipe, face_crop):
    """Building the fast path's cache leaves the reference path's frames bit-identical."""
    audio = (speech_like(0.4), SAMPLE_RATE)
    before = active_pipe(face_crop, audio, aligned=True, compute_sync=False, fast=False).frames
    active_pipe.encode_identity(face_crop, aligned=True, fast=True)
    after = active_pipe(face_crop, audio, aligned=True, compute_sync=False, fast=False).frames
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("fast", [True, False])
def test_stream_chunks_concatenate_to_the_call_frames(active_pipe, face_crop, fast):
    audio = (speech_like(0.92), SAMPLE_RATE)  # 23 frames
    chunks = list(active_pipe.stream(face_crop, audio, aligned=True, yaw=5.0, batch_size=4, fast=fast))
    assert [len(c) for c in chunks] == [1, 4, 4, 4, 4, 4, 2]  # the first frame alone, as soon as it is ready
    whole = active_pipe(face_crop, audio, aligned=True, yaw=5.0, batch_size=4, compute_sync=False, fast=fast).frames
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_stream_is_lazy(active_pipe, face_crop):
    calls = []
    render = active_pipe.render_frames
    active_pipe.render_frames = lambda *a, **k: calls.append(1) or render(*a, **k)
    try:
        stream = active_pipe.stream(face_crop, (speech_like(2.0), SAMPLE_RATE), aligned=True, batch_size=5)
        next(stream)
        assert len(calls) == 1  # one frame rendered for the first yield, not the whole video
        assert len(next(stream)) == 5 and len(calls) == 2
    finally:
        del active_pipe.render_frames


def test_streamed_chunks_write_a_video_with_every_frame(active_pipe, face_crop, tmp_path):
    speech = speech_like(1.0)
    path = tmp_path / "stream.mp4"
    with VideoWriter(path, fps=25, audio=speech, sample_rate=SAMPLE_RATE, preset="ultrafast") as writer:
        for chunk in active_pipe.stream(face_crop, (speech, SAMPLE_RATE), aligned=True, batch_size=8):
            writer.write(chunk)
    assert writer.num_frames == 25
    media = probe_media(path)
    assert media.video and media.audio and abs(media.duration - 1.0) < 0.1


def test_the_fast_path_refuses_a_generator(active_pipe, face_crop):
    with pytest.raises(ValueError, match="fast=False"):
        next(active_pipe.stream(face_crop, (speech_like(0.4), SAMPLE_RATE), aligned=True, generator=torch.Generator().manual_seed(0)))
