"""The source warped by the render's own correspondence: the geometry (analytic), the warp head's start, both
engines, frames at twice the trunk's size, and the mouth rule."""

import numpy as np
import pytest
import torch

from s3d_pipeline.benchmark import activate_zero_layers
from s3d_pipeline.configs import build_pipeline
from s3d_pipeline.evaluation.metrics import psnr
from s3d_pipeline.frames import to_uint8
from s3d_pipeline.rendering.cameras import frontal_cam2world, pose_to_cam2world, project
from s3d_pipeline.rendering.rays import pixel_rays
from s3d_pipeline.rendering.warp import OCCLUSION_TOLERANCE, pixel_centres, sample_at, source_correspondence, source_visibility

from media_helpers import speech_like
from test_speed_paths import MIN_PSNR_DB

RAYS = 8


def plane_hits(cam2world: torch.Tensor, depth_z: float = 0.0) -> torch.Tensor:
    """Where the rays of ``cam2world`` (1, 4, 4) meet the plane z = depth_z: (1, 3, RAYS, RAYS)."""
    origins, dirs = pixel_rays(cam2world, RAYS, 4.2647)  # (1, N, 3)
    t = (depth_z - origins[..., 2:]) / dirs[..., 2:]
    return (origins + t * dirs).transpose(1, 2).reshape(1, 3, RAYS, RAYS)


def test_the_source_view_of_an_opaque_surface_corresponds_to_itself():
    hits = plane_hits(frontal_cam2world()[None])
    uv, depth = source_correspondence(hits, torch.ones(1, 1, RAYS, RAYS), RAYS)
    assert torch.allclose(uv, pixel_centres(RAYS)[None], atol=1e-5)
    assert torch.allclose(depth, torch.full_like(depth, 2.7), atol=1e-4)


def test_a_turned_view_points_at_where_the_source_sees_its_surface():
    """From a camera turned 20°, each ray's surface point (on the plane z = 0.05) projects into the source at its
    own frontal projection; weights summing to 0.5 (half-transparent rays) give the same point."""
    hits = plane_hits(pose_to_cam2world(20.0)[None], 0.05)
    opacity = torch.full((1, 1, RAYS, RAYS), 0.5)
    uv, _ = source_correspondence(hits * opacity, opacity, RAYS)
    expected = project(hits.flatten(2).transpose(1, 2), frontal_cam2world())[..., :2]  # (1, N, 2)
    own = pixel_centres(RAYS).flatten(1).T[None]
    assert torch.allclose(uv.flatten(2).transpose(1, 2), own + 0.5 * (expected - own), atol=1e-5)
    assert not torch.allclose(expected, own, atol=1e-2)  # the turn really moves the correspondence


def test_rays_that_see_nothing_point_at_their_own_pixel_and_count_as_visible():
    canonical, opacity = torch.randn(1, 3, RAYS, RAYS), torch.zeros(1, 1, RAYS, RAYS)
    uv, depth = source_correspondence(canonical, opacity, RAYS, ray_window=(2, 3, RAYS))
    assert torch.allclose(uv, pixel_centres(RAYS, (2, 3, RAYS))[None])
    assert (source_visibility(depth, uv, opacity, torch.full((1, 1, RAYS, RAYS), 2.0)) == 1).all()


def test_a_point_behind_the_source_surface_is_not_visible():
    uv = pixel_centres(RAYS)[None]
    opacity = torch.ones(1, 1, RAYS, RAYS)
    surface = torch.full((1, 1, RAYS, RAYS), 2.6)
    tol = OCCLUSION_TOLERANCE
    for behind, expected in ((0.0, 1.0), (tol, 1.0), (1.5 * tol, 0.5), (3 * tol, 0.0)):
        visible = source_visibility(surface + behind, uv, opacity, surface)
        assert torch.allclose(visible, torch.full_like(visible, expected), atol=1e-4), behind


def test_sample_at_reads_the_full_resolution_image():
    """A smooth correspondence upsampled, then the high-resolution image sampled: fine detail survives."""
    image = torch.from_numpy(np.indices((32, 32)).sum(0) % 2 * 2.0 - 1).float()[None, None]  # a 1-pixel checker
    warped = sample_at(image, pixel_centres(4)[None], 32)  # the identity map, given at 4 x 4
    assert torch.allclose(warped, image, atol=1e-5)


@pytest.fixture(scope="module")
def warping_pipe():
    """The tiny architecture with a warp head, its zero-initialised output layers made non-zero."""
    pipe = build_pipeline("tiny", seed=0, super_resolution=dict(warp_channels=8))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_new_warp_head_leaves_the_frames_as_they_were(face_crop):
    """Weights trained without the head, given a fresh one (zero output layer, blend bias -8): the same frames
    within a uint8 level, by both engines."""
    plain = build_pipeline("tiny", seed=0)
    warping = build_pipeline("tiny", seed=0, super_resolution=dict(warp_channels=8))
    missing = warping.super_resolution.load_state_dict(plain.super_resolution.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("warp_head.") for key in missing)
    for pipe in (plain, warping):
        pipe.set_progress_bar_config(disable=True)
    audio = (speech_like(0.3), 16000)
    for fast in (True, False):
        before = plain(face_crop, audio, aligned=True, yaw=10.0, compute_sync=False, fast=fast).frames
        after = warping(face_crop, audio, aligned=True, yaw=10.0, compute_sync=False, fast=fast).frames
        assert np.abs(before.astype(int) - after).max() <= 1


def test_both_engines_warp_alike(warping_pipe, face_crop):
    """With the warp head active (non-zero output layer and blend), the fast engine's frames match the reference's."""
    with torch.no_grad():
        activate_zero_layers(warping_pipe)
        head_out = warping_pipe.super_resolution.warp_head[2]
        head_out.weight.copy_(torch.randn(head_out.weight.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
        head_out.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.2]))  # 40 x 0.2 - 8 = 0: the blend about one half
    identity = warping_pipe.encode_identity(face_crop, aligned=True)
    windows = warping_pipe.encode_audio(speech_like(0.4), 3, 25.0)
    cams = pose_to_cam2world(torch.tensor([0.0, 15.0, -20.0]), torch.zeros(3), torch.zeros(3))
    fast = warping_pipe.render_frames(identity, windows, cams).frames
    reference = warping_pipe.render_frames(identity, windows, cams, fast=False).frames
    assert psnr(to_uint8(fast), to_uint8(reference)) >= MIN_PSNR_DB
    plain = build_pipeline("tiny", seed=0)
    plain.super_resolution.load_state_dict(warping_pipe.super_resolution.state_dict(), strict=False)
    for name in ("appearance_encoder", "audio_encoder", "deformation_field", "renderer"):
        getattr(plain, name).load_state_dict(getattr(warping_pipe, name).state_dict())
    unwarped = plain.render_frames(plain.encode_identity(face_crop, aligned=True), windows, cams, fast=False).frames
    assert float((reference - unwarped).abs().mean()) > 0.01  # the warp takes part


def test_frames_at_twice_the_trunk_size_need_the_warp(warping_pipe, face_crop):
    audio = (speech_like(0.2), 16000)
    big = warping_pipe.encode_identity(face_crop, aligned=True, resolution=128)
    frames = warping_pipe(audio=audio, identity=big, compute_sync=False).frames
    assert frames.shape == (5, 128, 128, 3)
    with pytest.raises(ValueError, match="warps the source"):
        build_pipeline("tiny").encode_identity(face_crop, aligned=True, resolution=128)


def test_the_source_mouth_never_reaches_the_frame_through_the_warp(face_crop):
    """The warp samples the source with its mouth hidden and never blends where it lands in the hidden mouth: with
    the blend forced open everywhere else, a bright source mouth leaves no trace inside the hidden ellipse."""
    pipe = build_pipeline("tiny", seed=0, super_resolution=dict(warp_channels=8, warp_blend_bias=30.0))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pipe.super_resolution.out.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))  # the mask covers the frame
    source = face_crop.copy()
    x0, y0, x1, y1 = (round(v * 64) for v in pipe.super_resolution.config.hidden_source_box)
    source[y0:y1, x0:x1] = (255, 0, 255)  # a magenta mouth box
    frames = pipe(source, (speech_like(0.2), 16000), aligned=True, compute_sync=False, crop=True).frames
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    centre = frames[:, cy - 2 : cy + 2, cx - 2 : cx + 2].astype(int)
    assert np.abs(centre - np.array([255, 0, 255])).mean() > 100  # generated content, not the magenta
    outside = frames[:, 4:8, 4:8].astype(int)
    assert np.abs(outside - face_crop[4:8, 4:8]).mean() < 6  # elsewhere the warp shows the source itself
