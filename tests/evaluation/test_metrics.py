import numpy as np
from scipy import ndimage

from s3d_pipeline.evaluation.metrics import correlation, cpbd, landmark_distance, mouth_opening, psnr, ssim


def _texture(seed=0, size=128):
    rng = np.random.default_rng(seed)
    checker = ((np.add.outer(np.arange(size) // 8, np.arange(size) // 8) % 2) * 200 + 25).astype(np.float64)
    return np.clip(checker + rng.normal(0, 5, (size, size)), 0, 255).astype(np.uint8)


def test_psnr_and_ssim_rank_noise_levels():
    ref = np.repeat(_texture()[None, ..., None], 3, axis=-1)  # (1, H, W, 3)
    rng = np.random.default_rng(1)
    light = np.clip(ref + rng.normal(0, 5, ref.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(ref + rng.normal(0, 40, ref.shape), 0, 255).astype(np.uint8)
    assert psnr(ref, ref) == 100.0 and abs(ssim(ref, ref) - 1.0) < 1e-9
    assert psnr(light, ref) > psnr(heavy, ref) + 10
    assert 1.0 > ssim(light, ref) > ssim(heavy, ref)
    assert abs(psnr(light, ref) - 10 * np.log10(255**2 / 25)) < 0.5  # noise sigma 5 -> ~34 dB


def test_cpbd_drops_with_blur():
    sharp = _texture()
    blurred = ndimage.gaussian_filter(sharp.astype(float), 1.5).astype(np.uint8)
    assert cpbd(sharp) > 0.5  # step edges one pixel wide are below the just-noticeable blur
    assert cpbd(blurred) < 0.1
    assert cpbd(np.full((128, 128), 90, np.uint8)) == 0.0


def _face(open_amount=0.0):
    pts = np.zeros((68, 2))
    pts[36:42] = [100, 100]
    pts[42:48] = [156, 100]
    pts[48:68] = [128, 170]
    pts[66] = [128, 170 + open_amount]
    return pts


def test_lmd_centres_the_mouth_only_for_m_lmd():
    ref = np.stack([_face()])
    shifted = ref + 3.0  # the whole face moved 3 px in x and y
    assert abs(landmark_distance(shifted, ref) - 3 * np.sqrt(2)) < 1e-9
    assert landmark_distance(shifted, ref, mouth_only=True) < 1e-9


def test_mouth_opening_is_scale_free_and_correlation_follows_it():
    opens = np.array([0, 4, 10, 2, 8, 0.5])
    faces = np.stack([_face(o) for o in opens])
    m = mouth_opening(faces)
    assert np.allclose(m, opens / 56.0)
    assert np.allclose(mouth_opening(faces * 2), m)
    assert correlation(m, opens) > 0.999
    assert correlation(m, np.ones_like(m)) is None
