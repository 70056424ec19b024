"""The real-photo lip meter (``s3d-nerf eval --photos DIR --speech DIR``): its measures on videos made in the
test whose answer is known, identity similarity on the bundled portraits, and the command's JSON line."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage

from media_helpers import speech_like
from s3d_pipeline.audio import SAMPLE_RATE
from s3d_pipeline.cli import main
from s3d_pipeline.evaluation.face_embedding import cosine, load_face_embedder
from s3d_pipeline.evaluation.real_photos import (
    METRICS,
    VARIANTS,
    PhotoReference,
    RealPhotoMeter,
    lagged_correlation,
    laplacian_sharpness,
    opening_variation,
    speech_envelope,
)
from s3d_pipeline.face import FaceBox, get_face_backend, load_image, mean_landmarks, pick_largest_face
from s3d_pipeline.paths import REPO_ROOT

PORTRAITS = REPO_ROOT / "assets" / "portraits"
FPS = 25.0


def _speech_with_envelope(envelope, seed):
    """Noise whose RMS over each 1/25 s frame follows ``envelope`` (N,)."""
    rng = np.random.default_rng(seed)
    per_frame = int(SAMPLE_RATE / FPS)
    carrier = rng.standard_normal(len(envelope) * per_frame)
    carrier /= np.sqrt((carrier.reshape(len(envelope), per_frame) ** 2).mean(1)).repeat(per_frame)  # unit RMS per frame
    return (0.1 * np.repeat(envelope, per_frame) * carrier).astype(np.float32)


class BrightnessMouth:
    """A landmark model for videos made in the test: the mean face, its inner lips apart by the frame's brightness."""

    def __call__(self, rgb, box):
        points = mean_landmarks(64).astype(np.float64)  # (68, 2)
        points[66, 1] += rgb.mean() / 10.0  # lower inner lip
        return points


@pytest.fixture(scope="module")
def meter(tiny_pipe):
    return RealPhotoMeter(pipe=tiny_pipe, sync=tiny_pipe.lip_sync, landmarker=BrightnessMouth(), log=lambda line: None)


def _reference(size=64):
    return PhotoReference(portrait=None, box=FaceBox(8, 8, size - 8, size - 8), embedding=None, sharpness=1.0)


def _video(opening, size=64):
    """Frames (N, size, size, 3) whose brightness, hence BrightnessMouth's opening, follows ``opening`` (N,) in [0, 1]."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, (size, size, 3))
    return np.clip(texture + 200 * np.asarray(opening)[:, None, None, None], 0, 255).astype(np.uint8)


def test_envelope_is_the_loudness_of_each_frame():
    envelope = np.r_[np.zeros(10), np.ones(5), np.zeros(10)]
    measured = speech_envelope(_speech_with_envelope(envelope, seed=0), FPS, 27)  # two frames past the end
    assert measured.shape == (27,)
    np.testing.assert_allclose(measured[:25], 0.1 * envelope, atol=1e-6)
    assert measured[25:].max() == 0.0


def test_lag_search_finds_a_shifted_envelope():
    rng = np.random.default_rng(1)
    envelope = rng.uniform(0, 1, 80)
    for lag in (-2, 0, 1, 2):
        opening = np.roll(envelope, lag)  # opening[t] = envelope[t - lag]
        r, found = lagged_correlation(opening, envelope)
        assert found == lag and r > 0.99
    r, found = lagged_correlation(np.roll(envelope, 5), envelope)  # outside +-2 frames
    assert r < 0.5


def test_still_mouth_has_no_variation_and_no_correlation():
    opening = np.full(50, 0.1)
    assert opening_variation(opening) == 0.0
    assert lagged_correlation(opening, np.random.default_rng(0).uniform(size=50)) == (None, None)
    assert opening_variation(np.r_[np.full(10, np.nan), np.linspace(0, 1, 101)]) == pytest.approx(0.9)


def test_mouth_that_follows_the_speech_scores_high_and_shuffled_speech_low(meter):
    rng = np.random.default_rng(2)
    envelope = ndimage.uniform_filter1d(rng.uniform(0, 1, 60), 3)  # syllable-like, a few frames long
    speech = _speech_with_envelope(envelope, seed=3)
    other = _speech_with_envelope(ndimage.uniform_filter1d(rng.uniform(0, 1, 60), 3), seed=4)
    video = _video(np.roll(envelope, 1) / envelope.max())  # the mouth one frame after the sound
    crops = video  # the tiny discriminator takes any square frames
    aligned, opening = meter.score(video, crops, speech, _reference())
    shuffled, _ = meter.score(video, crops, other, _reference())
    assert aligned["mouth_corr"] > 0.95 and aligned["mouth_lag"] == 1
    assert shuffled["mouth_corr"] < 0.6
    assert aligned["opening_var"] > 0.05 and aligned["faces_missed"] == 0
    assert opening.shape == (60,) and np.isfinite(opening).all()
    assert set(aligned) == set(METRICS) and aligned["csim"] is None  # no embedder: None, never guessed
    assert isinstance(aligned["sync_conf"], float)
    still, _ = meter.score(video[:1].repeat(60, axis=0), crops[:1].repeat(60, axis=0), speech, _reference())
    assert still["opening_var"] == 0.0 and still["mouth_corr"] is None


def test_sharpness_drops_when_the_face_is_blurred():
    rgb = np.random.default_rng(5).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    blurred = ndimage.gaussian_filter(rgb, sigma=(1.5, 1.5, 0))
    box = FaceBox(8, 8, 56, 56)
    assert laplacian_sharpness(blurred, box) < 0.2 * laplacian_sharpness(rgb, box)


def test_identity_similarity_of_real_faces():
    embedder, note = load_face_embedder()
    assert embedder is not None, note
    backend = get_face_backend("offline")

    def embed(rgb):
        box, _ = pick_largest_face(backend.detector(rgb))
        return embedder(rgb, backend.landmarker(rgb, box))

    astronaut = load_image(str(PORTRAITS / "astronaut.jpg"))
    same = embed(astronaut)
    assert cosine(same, embed(astronaut)) == pytest.approx(1.0, abs=1e-6)
    mirrored = cosine(same, embed(np.ascontiguousarray(astronaut[:, ::-1])))
    other = cosine(same, embed(load_image(str(PORTRAITS / "grace_hopper.jpg"))))
    assert other < mirrored - 0.05 and mirrored > 0.95


def test_eval_photos_prints_one_json_line(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "photos").mkdir()
    (tmp_path / "speech").mkdir()
    shutil.copy(PORTRAITS / "astronaut.jpg", tmp_path / "photos")
    for k in range(2):
        sf.write(tmp_path / "speech" / f"s{k}.wav", speech_like(0.6, seed=k), SAMPLE_RATE)
    args = ["eval", "--checkpoint", str(tmp_path / "ckpt"), "--photos", str(tmp_path / "photos"), "--speech", str(tmp_path / "speech"), "--json"]
    assert main(args + ["--samples", str(tmp_path / "sheet.png")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {*VARIANTS, "per_pair", "info"}
    assert [(p["photo"], p["speech"]) for p in result["per_pair"]] == [("astronaut.jpg", "s0.wav"), ("astronaut.jpg", "s1.wav")]
    assert all(set(result[v]) == set(METRICS) for v in VARIANTS)
    static = result["static"]
    assert static["opening_var"] == 0.0 and static["sharpness"] == pytest.approx(1.0) and static["csim"] == pytest.approx(1.0)
    assert result["info"]["pairs"] == 2 and result["info"]["face_embedding"].startswith("dlib-resnet-v1")
    assert (tmp_path / "sheet.png").stat().st_size > 0
    assert main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--photos", str(tmp_path / "photos")]) == 2  # --speech missing
    assert "--photos and --speech go together" in capsys.readouterr().out
