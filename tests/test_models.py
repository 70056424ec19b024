import pytest
import torch
import torch.nn.functional as F

from s3d_pipeline.configs import architecture, build_components
from s3d_pipeline.models import CrossModalDeformationField, LipSyncDiscriminator
from s3d_pipeline.rendering.cameras import frontal_cam2world


@pytest.fixture(scope="module")
def parts():
    return build_components(architecture("tiny"), seed=0)


def _inputs(parts, frames=3):
    torch.manual_seed(1)
    enc = parts["appearance_encoder"](torch.rand(1, 3, 64, 64) * 2 - 1)
    a = parts["audio_encoder"](torch.randn(frames, 80, 16))
    return enc, a


def test_appearance_encoder_gives_four_scale_triplanes(parts):
    enc, _ = _inputs(parts)
    assert [tuple(t.shape) for t in enc.triplanes] == [(1, 3, 8, 16, 16), (1, 3, 8, 8, 8), (1, 3, 8, 4, 4), (1, 3, 8, 2, 2)]
    assert enc.visual_tokens.shape == (1, 16, 24)


def test_audio_encoder_depends_on_its_window(parts):
    a1 = parts["audio_encoder"](torch.zeros(1, 80, 16))
    a2 = parts["audio_encoder"](torch.ones(1, 80, 16))
    assert a1.tokens.shape == (1, 2, 16) and a1.pooled.shape == (1, 16)
    assert not torch.allclose(a1.pooled, a2.pooled)


def test_audio_features_do_not_depend_on_loudness(parts):
    """Standardised over the utterance, the speech features are the same at half the volume (log-mel shifts by a
    constant), while other speech gives other features."""
    encoder = parts["audio_encoder"]
    generator = torch.Generator().manual_seed(0)
    speech = torch.randn(16000, generator=generator) * torch.linspace(0, 1, 16000).sin().abs()
    loud, quiet = encoder.frame_windows(speech, 25, 25.0), encoder.frame_windows(0.5 * speech, 25, 25.0)
    assert torch.allclose(loud, quiet, atol=1e-3)
    other = encoder.frame_windows(torch.randn(16000, generator=generator), 25, 25.0)
    assert (loud - other).abs().mean() > 0.1


@pytest.mark.parametrize("mode", ["cross_attention", "concat", "naive", "none"])
@torch.no_grad()
def test_every_deformation_variant_runs_and_bounds_displacement(parts, mode):
    cfg = dict(architecture("tiny")["deformation_field"], mode=mode)
    torch.manual_seed(0)
    field_model = CrossModalDeformationField(**cfg)
    for p in field_model.parameters():  # leave the zero-initialised start so Δx is non-trivial
        torch.nn.init.normal_(p, std=0.5)
    enc, a = _inputs(parts)
    slots = field_model.encode_identity(enc.visual_tokens)
    field = field_model(slots, enc.triplanes, a.tokens, a.pooled)
    points = torch.rand(3, 50, 3) * 0.6 - 0.3
    delta = field_model.displacement(field, points)
    assert delta.shape == points.shape
    assert float(delta.abs().max()) <= field_model.config.max_displacement + 1e-6
    if mode == "none":
        assert float(delta.abs().max()) == 0.0
    else:
        assert float(delta.abs().max()) > 0.0
    if mode == "cross_attention":
        assert field.attention_map.shape == (3, 4, 4)
        assert float(field.attention_map.min()) >= 0.0 and abs(float(field.attention_map.amax(dim=(1, 2)).min()) - 1.0) < 1e-5
        assert torch.allclose(field.cross_attention.sum(-1), torch.ones(3, 3), atol=1e-5)
    else:
        assert field.attention_map is None


@torch.no_grad()
def test_untrained_deformation_starts_at_zero_displacement(parts):
    enc, a = _inputs(parts)
    field_model = parts["deformation_field"]
    field = field_model(field_model.encode_identity(enc.visual_tokens), enc.triplanes, a.tokens, a.pooled)
    assert float(field_model.displacement(field, torch.rand(3, 10, 3)).abs().max()) == 0.0


def test_renderer_outputs_and_displacement_changes_the_render(parts):
    enc, _ = _inputs(parts)
    renderer = parts["renderer"]
    cams = frontal_cam2world()[None].repeat(2, 1, 1)
    still = renderer(enc.triplanes, cams)
    moved = renderer(enc.triplanes, cams, lambda p: torch.full_like(p, 0.05))
    assert still.features.shape == (2, 8, 16, 16) and still.depth.shape == (2, 1, 16, 16)
    assert float(still.opacity.min()) >= 0.0 and float(still.opacity.max()) <= 1.0
    assert not torch.allclose(still.features, moved.features)
    assert moved.displacement.shape == (2, 16 * 16 * 16, 3)


def test_super_resolution_keeps_the_source_where_nothing_is_rendered(parts):
    sr = parts["super_resolution"]
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    out = sr(torch.rand(2, 8, 16, 16), torch.zeros(2, 1, 16, 16), source)
    assert out.image.shape == (2, 3, 64, 64)
    # Untrained, the mask equals the render's opacity: zero opacity shows the source untouched.
    assert torch.allclose(out.image, source.expand(2, -1, -1, -1), atol=1e-3)


@torch.no_grad()
def test_super_resolution_cannot_copy_the_source_mouth(parts):
    """Inside the hidden box the frame does not depend on the source's pixels; outside it, it does."""
    sr = parts["super_resolution"]
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    hidden = sr.hide_mouth(torch.ones(1, 1, 64, 64)) == 0  # (1, 1, 64, 64)
    assert 0.05 < hidden.float().mean() < 0.15  # the ellipse: pi/4 of its box
    other_mouth = torch.where(hidden, torch.rand(1, 3, 64, 64), source)
    features, opacity = torch.rand(1, 8, 16, 16), torch.rand(1, 1, 16, 16)
    frame = lambda s: sr(features, opacity, sr.hide_mouth(s)).image  # noqa: E731
    assert torch.equal(frame(source), frame(other_mouth))
    other_forehead = source.clone()
    other_forehead[..., :8, :] = -source[..., :8, :]
    assert not torch.allclose(frame(source)[..., :8, :], frame(other_forehead)[..., :8, :])


class _LoudnessSync(LipSyncDiscriminator):
    """Embeddings from brightness (video) and energy (audio), to check the offset search exactly."""

    def embed_video(self, crops):
        v = crops.mean(dim=(2, 3, 4))  # (B, T)
        return torch.nn.functional.normalize(v - v.mean(dim=1, keepdim=True) + 1e-6, dim=-1)

    def embed_audio(self, mel):
        e = mel.exp().sum(1).reshape(mel.shape[0], self.config.num_frames, -1).mean(-1)  # (B, T) per frame step
        return torch.nn.functional.normalize(e - e.mean(dim=1, keepdim=True) + 1e-6, dim=-1)


@pytest.mark.parametrize("shift", [0, 3, -4])
def test_sync_score_finds_the_audio_visual_offset(shift):
    torch.manual_seed(0)
    fps, n = 25, 60
    loud = (torch.rand(n + 40) > 0.5).float()  # a random on/off pattern per frame
    brightness = loud[20 + shift : 20 + shift + n]  # the video shows the audio's frame i + shift
    frames = brightness[:, None, None, None].expand(n, 3, 32, 32).clone()
    samples = torch.repeat_interleave(loud[20:20 + n], 16000 // fps) * torch.sin(torch.arange(n * 640) * 0.3)
    sync = _LoudnessSync(crop_size=(16, 32))
    score = sync.score(frames, samples, fps, max_offset=6)
    assert score.offset == shift
    assert score.confidence > 0
    assert score.distances.shape == (13,)


def test_sync_score_needs_enough_frames():
    assert LipSyncDiscriminator(crop_size=(16, 32)).score(torch.rand(3, 3, 32, 32), torch.randn(2000), 25) is None


def test_lip_sync_scores_candidate_audio_windows_like_single_pairs():
    sync = LipSyncDiscriminator(crop_size=(16, 32), channels=(8, 8, 8, 8, 8), embed_dim=16).eval()
    crops, mel = torch.rand(2, 5, 3, 16, 32), torch.randn(2, 3, 80, 20)  # 2 windows, 3 candidate audio windows each
    with torch.no_grad():
        table = sync(crops, mel)  # (2, 3)
        pairs = torch.stack([sync(crops, mel[:, c]) for c in range(3)], dim=1)  # each candidate as (B,) pairs
    assert table.shape == (2, 3)
    torch.testing.assert_close(table, pairs)
    assert not torch.allclose(table[:, 0], table[:, 1])  # the candidates really differ


def test_super_resolution_compositing_stays_finite_under_bf16_autocast():
    """An opaque render under bf16 autocast (as training runs) must not give the mask an infinite logit."""
    from s3d_pipeline.models import SuperResolution

    opacity = torch.ones(1, 1, 4, 4, requires_grad=True)
    features = torch.rand(1, 8, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SuperResolution.compose(torch.zeros(1, 4, 16, 16, dtype=torch.bfloat16), features.bfloat16(), opacity.bfloat16(), torch.zeros(1, 3, 16, 16))
    assert out.image.dtype == torch.float32
    out.image.sum().backward()
    assert torch.isfinite(opacity.grad).all() and torch.isfinite(features.grad).all()


def test_super_resolution_composes_render_over_source_by_its_mask():
    """The frame is mask * (upsampled render RGB + residual) + (1 - mask) * source, the mask starting at the render's
    upsampled opacity: an opaque render shows itself, a transparent one the source, and the mask logit moves it."""
    from s3d_pipeline.models import SuperResolution

    torch.manual_seed(0)
    features, source = torch.rand(2, 8, 4, 4), torch.rand(1, 3, 16, 16) * 2 - 1
    residual = torch.randn(2, 3, 16, 16) * 0.1
    rgb = F.interpolate(features[:, :3] * 2 - 1, size=(16, 16), mode="bilinear", align_corners=False)
    for alpha, logit in ((1.0, 0.0), (0.0, 0.0), (0.5, 1.5)):
        out = torch.cat([residual, torch.full((2, 1, 16, 16), logit)], dim=1)
        frame = SuperResolution.compose(out, features, torch.full((2, 1, 4, 4), alpha), source)
        mask = torch.sigmoid(torch.logit(torch.tensor(alpha).clamp(1e-4, 1 - 1e-4)) + logit)
        torch.testing.assert_close(frame.mask, mask.expand(2, 1, 16, 16))
        torch.testing.assert_close(frame.image, mask * (rgb + residual) + (1 - mask) * source)
