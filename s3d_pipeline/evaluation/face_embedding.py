"""Face identity embeddings for CSIM, the identity similarity of the talking-head literature (cosine of two
faces' recognition embeddings).

The one backend is dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1.dat``, 22.5 MB: a
29-layer ResNet giving 128-d descriptors, 99.38 % on LFW), released into the public domain by its author, Davis
King (its training faces come from FaceScrub, VGG-Face and images he collected). The file is read from the
``face-recognition-models`` package or, failing that, from Debian's ``libdlib-data`` (``/usr/share/dlib``);
it runs with the ``dlib-bin`` wheel. dlib's own landmark predictors are not used: the face chip the network
expects is cut with the 68 iBUG points the caller already has (the MediaPipe face mesh here), so the
non-commercial 68-point predictor stays out. Without dlib or the model file, :func:`load_face_embedder` says
so and CSIM is reported as None, never estimated.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Protocol, Tuple

import numpy as np

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DEBIAN_MODEL_DIR = Path("/usr/share/dlib")
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # the chip the ResNet was trained on


class FaceEmbedder(Protocol):
    """Maps a face, given by its 68 iBUG landmarks in an image, to a unit identity embedding."""

    name: str

    def __call__(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB and (68, 2) pixel landmarks -> (D,) unit vector."""
        ...


def resnet_model_path() -> Optional[Path]:
    """The installed ResNet model file: the ``face-recognition-models`` package's copy, else Debian's.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer ships).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    candidates = [Path(p) / "models" / RESNET_FILE for p in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(DEBIAN_MODEL_DIR / RESNET_FILE)
    return next((p for p in candidates if p.is_file()), None)


class DlibResNetEmbedder:
    """dlib's ResNet face descriptor on a face chip aligned by the caller's 68 landmarks."""

    name = "dlib-resnet-v1"

    def __init__(self, model_path: Path):
        import dlib

        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(model_path))

    def __call__(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
        box = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
        shape = dlib.full_object_detection(box, [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
        chip = dlib.get_face_chip(np.ascontiguousarray(rgb, dtype=np.uint8), shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        descriptor = np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float64)  # (128,)
        return descriptor / max(np.linalg.norm(descriptor), 1e-12)


def load_face_embedder() -> Tuple[Optional[FaceEmbedder], str]:
    """The face embedder and a note naming it, or None and the reason it is unavailable."""
    if importlib.util.find_spec("dlib") is None:
        return None, "unavailable: dlib is not installed (pip install dlib-bin)"
    path = resnet_model_path()
    if path is None:
        return None, f"unavailable: {RESNET_FILE} is in neither the face-recognition-models package nor {DEBIAN_MODEL_DIR}"
    return DlibResNetEmbedder(path), f"{DlibResNetEmbedder.name} ({path})"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (D,)."""
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
