"""Portrait loading, face finding and alignment, head pose, paste-back, and the FAN code path."""

import io
import logging

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch

from s3d_pipeline.errors import FaceNotFoundError, FaceTooSmallError, InvalidImageError
from s3d_pipeline.face import (
    FaceBackend,
    FaceBox,
    FanLandmarks,
    MeanShapeLandmarks,
    estimate_head_pose,
    eye_and_mouth_centres,
    load_image,
    mean_face_3d,
    mean_landmarks,
    offline_backend,
    paste_back,
    prepare_portrait,
)
from s3d_pipeline.rendering.cameras import pose_to_cam2world, project
from s3d_pipeline.rendering.framing import EYE_CENTER, MOUTH_CENTER


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # (512, 512, 3), one frontal face about 96 px across


@pytest.fixture(scope="module")
def portrait(astronaut):
    return prepare_portrait(astronaut, backend="offline")


def test_mean_face_matches_the_framing():
    eyes, mouth = eye_and_mouth_centres(mean_landmarks(256) / 256)
    np.testing.assert_allclose(eyes, EYE_CENTER, atol=1e-3)
    np.testing.assert_allclose(mouth, MOUTH_CENTER, atol=1e-3)


def test_pose_estimate_recovers_a_known_pose():
    yaw, pitch, roll = 20.0, -10.0, 5.0
    uv = project(torch.as_tensor(mean_face_3d(), dtype=torch.float32), pose_to_cam2world(yaw, pitch, roll))[:, :2]
    np.testing.assert_allclose(estimate_head_pose(uv.numpy() * 256, 256), [yaw, pitch, roll], atol=0.5)


def test_photo_is_aligned_to_the_framing(portrait, astronaut):
    assert portrait.backend == "offline" and portrait.aligned.shape == (256, 256, 3)
    assert portrait.warnings == []
    eyes, mouth = eye_and_mouth_centres(portrait.landmarks / 256)
    np.testing.assert_allclose(eyes, EYE_CENTER, atol=1e-3)
    np.testing.assert_allclose(mouth, MOUTH_CENTER, atol=1e-3)
    # Her eyes in the photo (annotated by hand) are at about (203, 100) and (246, 103).
    to_photo = portrait.crop_to_original
    eye_in_photo = eyes * 256 @ to_photo[:, :2].T + to_photo[:, 2]
    np.testing.assert_allclose(eye_in_photo, [225, 102], atol=8)
    np.testing.assert_allclose(portrait.source_cam2world, pose_to_cam2world(*portrait.pose).numpy(), atol=1e-5)


def test_exif_rotated_copy_gives_the_same_crop(tmp_path, astronaut, portrait):
    rotated = PIL.Image.fromarray(np.ascontiguousarray(np.rot90(astronaut)))  # stored turned 90 degrees anticlockwise
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    rotated.save(path, exif=exif)
    again = prepare_portrait(path, backend="offline")
    assert again.original.shape == astronaut.shape
    np.testing.assert_allclose(again.crop_to_original, portrait.crop_to_original, atol=1e-4)
    np.testing.assert_array_equal(again.aligned, portrait.aligned)


@pytest.mark.parametrize("mode", ["RGBA", "L", "CMYK", "P", "I;16"])
def test_any_image_mode_loads_as_rgb(mode, astronaut):
    image = PIL.Image.fromarray(astronaut[:64, :48])
    if mode == "I;16":
        image = PIL.Image.fromarray((np.asarray(image.convert("L")).astype(np.uint16) * 257))
    else:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    rgb = load_image(PIL.Image.open(buffer))
    assert rgb.shape == (64, 48, 3) and rgb.dtype == np.uint8
    gray = np.asarray(PIL.Image.fromarray(astronaut[:64, :48]).convert("L"), dtype=int)
    assert np.abs(rgb.astype(int).mean(-1) - gray).mean() < 25  # the picture survives, not clipped or blank


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    assert (load_image(rgba) == 255).all()
    with pytest.raises(InvalidImageError):
        load_image(np.zeros((4, 4, 2)))


def test_no_face_raises_with_a_remedy():
    noise = np.random.default_rng(0).integers(100, 140, (200, 300, 3), dtype=np.uint8)
    with pytest.raises(FaceNotFoundError, match="aligned=True"):
        prepare_portrait(noise, backend="offline")


def test_small_face_raises_with_its_size(astronaut):
    small = np.asarray(PIL.Image.fromarray(astronaut).resize((320, 320), PIL.Image.LANCZOS))  # face ~60 px
    with pytest.raises(FaceTooSmallError, match=r"\d+ px across"):
        prepare_portrait(small, backend="offline")


class _TwoFaces:
    name = "two-faces"

    def __call__(self, rgb, min_size=None, max_size=None):
        return [FaceBox(10, 10, 90, 90), FaceBox(179, 67, 275, 163), FaceBox(300, 300, 396, 396)]


def test_several_faces_pick_the_largest_deterministically_with_a_warning(astronaut, caplog):
    backend = FaceBackend("test", _TwoFaces(), MeanShapeLandmarks())
    with caplog.at_level(logging.WARNING):
        first = prepare_portrait(astronaut, backend=backend)
    assert first.face_box == (179, 67, 275, 163)  # equal size to the third: the upper one wins
    assert "3 faces" in first.warnings[0] and "3 faces" in caplog.text


def test_extreme_profile_warns(astronaut):
    class Profile(MeanShapeLandmarks):
        def __call__(self, rgb, box):
            uv = project(torch.as_tensor(mean_face_3d(), dtype=torch.float32), pose_to_cam2world(60.0))[:, :2].numpy()
            return uv * box.size + [box.x0, box.y0]

    portrait = prepare_portrait(astronaut, backend=FaceBackend("test", offline_backend().detector, Profile()))
    assert portrait.pose[0] == pytest.approx(60, abs=5)  # perspective of the similarity crop: a few degrees
    assert any("turned" in w for w in portrait.warnings)


def test_pre_aligned_face_is_only_resized(astronaut):
    portrait = prepare_portrait(astronaut[:, 50:450], aligned=True, resolution=128)
    assert portrait.backend == "pre-aligned" and portrait.aligned.shape == (128, 128, 3)
    np.testing.assert_allclose(portrait.pose, 0.0)
    np.testing.assert_allclose(portrait.crop_to_original, [[400 / 128, 0, 0], [0, 400 / 128, 56]], atol=1e-5)


def test_paste_back_keeps_the_photo_and_replaces_the_face(portrait, astronaut):
    rendered = np.stack([portrait.aligned, 255 - portrait.aligned])  # (2, 256, 256, 3)
    out = paste_back(rendered, portrait)
    assert out.shape == (2,) + astronaut.shape and out.dtype == np.uint8
    # The photo's own crop pasted back changes almost nothing; an inverted face changes the face only.
    assert np.abs(out[0].astype(int) - astronaut).mean() < 1.0
    changed = np.abs(out[1].astype(int) - astronaut).sum(-1) > 30
    assert changed[100, 225] and not changed[400, 60] and not changed[20, 480]
    half = paste_back(rendered[:1, ::2, ::2], portrait)  # frames at another resolution land in the same place
    assert np.abs(half[0].astype(int) - astronaut).mean() < 2.0


def test_fan_code_path_with_random_weights(astronaut):
    from face_alignment.models import FAN

    torch.manual_seed(0)
    backend = FaceBackend("face-alignment", _TwoFaces(), FanLandmarks(FAN(4)))  # the true 2DFAN-4 architecture
    portrait = prepare_portrait(astronaut, backend=backend)
    assert portrait.backend == "face-alignment" and portrait.aligned.shape == (256, 256, 3)
    # Untrained heatmap peaks are arbitrary, but must come back from FAN's crop around the chosen face
    # (2 face sizes wide) to photo pixels.
    box = FaceBox(*portrait.face_box)
    to_photo = portrait.crop_to_original
    points = portrait.landmarks @ to_photo[:, :2].T + to_photo[:, 2]  # (68, 2) photo pixels
    assert np.isfinite(points).all() and (np.abs(points - box.centre) <= 1.2 * box.size).all()
