"""The procedural 3D head: geometry of one identity, its articulation and its 68 landmarks.

Construction, in three layers:

1. *Canonical coordinates* ``(x, y, z)``: a point on the skull ellipsoid, parameterised by longitude / latitude.
   The eye line is ``y = 0``, the face looks down +z. All facial features (and the shader's painted details:
   eyes, brows, lips, nostrils) are laid out in these coordinates, and every vertex carries them as an
   attribute, so paint moves with the skin when the jaw opens or the brows rise.
2. *Static shape*: identity-specific displacements of the ellipsoid (eye sockets with an eyeball bulge, brow
   ridge, cheekbones, nose, lips, chin, narrower jaw, ears).
3. *Articulation* (:class:`FaceState`): the lower face rotates about a jaw pivot; lips round, spread and press;
   brows rise. The skull grid has a duplicated row along the mouth line whose inner part is not triangulated,
   so the lips separate into a real opening that shows the mouth cavity and the teeth behind it.

Finally a similarity transform (scale + translation) places the head so that its frontal render matches the
face framing of :mod:`s3d_pipeline.data.framing` (plus the identity's small jitter), with cameras from
:mod:`s3d_pipeline.rendering.cameras`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ...rendering.cameras import CAMERA_RADIUS, FOCAL
from ...rendering.framing import EYE_CENTER, EYE_TO_MOUTH
from .geometry import bump, grid_normals, grid_triangles, smoothstep
from .person import Person

# Material ids written to the vertex attribute read by the shader.
SKIN, HAIR, TEETH, CAVITY = 0.0, 1.0, 2.0, 3.0
# Floats per vertex: position (3), normal (3), canonical coordinate (3), material, shade (AO or hair coverage).
VERTEX_FLOATS = 11
# Jaw pivot (near the ear, behind and below the eye line), canonical units.
JAW_PIVOT = (-0.03, -0.06)
_HEAD_ROWS, _HEAD_COLS = 150, 180
_EPS_LAT = 1e-3


@dataclass
class FaceState:
    """Articulation of the face in one frame (all in [0, 1] except ``brow``, ``gaze``).

    Attributes:
        jaw_open: jaw rotation as a fraction of the identity's maximum.
        lip_spread: lips stretched sideways (as in "ee").
        lip_round: lips pursed and pushed forward (as in "oo", "w").
        lip_closure: lips pressed together whatever the jaw does (p, b, m).
        brow: brow raise, about [-1, 1].
        blink_l, blink_r: eyelid closure of the subject's left (+x) and right eye.
        gaze: iris offset (x right, y up) in canonical units.
    """

    jaw_open: float = 0.0
    lip_spread: float = 0.0
    lip_round: float = 0.0
    lip_closure: float = 0.0
    brow: float = 0.0
    blink_l: float = 0.0
    blink_r: float = 0.0
    gaze: Tuple[float, float] = (0.0, 0.0)


def lip_profile(x: np.ndarray, half_width: float) -> np.ndarray:
    """Lip thickness profile across the mouth: 1 in the middle, 0 at the corners (the shader mirrors it)."""
    return np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0.0, 1.0))


def upper_lip_height(x: np.ndarray, p: Person) -> np.ndarray:
    """Upper lip thickness above the mouth line, with a Cupid's bow dip in the middle."""
    bow = 1.0 - 0.2 * np.exp(-0.5 * (x / (0.12 * p.mouth_w)) ** 2)
    return p.lip_upper * lip_profile(x, p.mouth_w) ** 0.7 * bow


def lower_lip_height(x: np.ndarray, p: Person) -> np.ndarray:
    return p.lip_lower * lip_profile(x, p.mouth_w) ** 0.9


def upper_lid(q: np.ndarray, eye_h: float, blink: float) -> np.ndarray:
    """Upper eyelid height over the eye centre at ``q = dx / eye_w`` in [-1, 1] (the shader mirrors it)."""
    shape = np.clip(1.0 - q * q, 0.0, 1.0)
    return (1.0 - blink) * eye_h * shape**0.6 + blink * lower_lid(q, eye_h, blink)


def lower_lid(q: np.ndarray, eye_h: float, blink: float) -> np.ndarray:
    shape = np.clip(1.0 - q * q, 0.0, 1.0)
    return -0.55 * eye_h * (1.0 - 0.3 * blink) * shape**0.8


def brow_line(bx: np.ndarray, p: Person) -> np.ndarray:
    """Height of the brow's centre line at ``bx`` (outward distance from the eye centre)."""
    return p.brow_y + p.brow_arch * (1.0 - ((bx - 0.25 * p.eye_w) / (1.3 * p.eye_w)) ** 2)


BROW_SPAN = (-1.05, 1.6)  # brow extent in units of eye_w, inner (negative) to outer


class HeadModel:
    """Mesh and landmarks of one identity for any :class:`FaceState`.

    Attributes:
        triangles: (T, 3) int32 vertex indices, fixed for the identity.
        scale, translation: the framing transform, world = scale * local + translation.
    """

    def __init__(self, identity: Person):
        self.p = identity
        self._build_skull()
        self._build_neck()
        self._build_hair()
        self._build_mouth_interior()
        parts = [self._skull_tris, self._neck_tris, self._hair_tris, self._cavity_tris, self._teeth_tris]
        offsets = np.cumsum([0] + self._part_sizes[:-1])
        self.triangles = np.concatenate([t + o for t, o in zip(parts, offsets)]).astype(np.int32)
        self.scale, self.translation = 1.0, np.zeros(3)
        self._fit_framing()
        self._build_template()

    # ------------------------------------------------------------------ canonical surface and static shape
    def _ellipsoid(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Canonical skull points (..., 3) for longitude / latitude (radians)."""
        p = self.p
        b = np.where(lat > 0, p.head_b_up, p.head_b_low)
        return np.stack(
            [p.head_a * np.cos(lat) * np.sin(lon), b * np.sin(lat), p.head_c * np.cos(lat) * np.cos(lon)], -1
        )

    def _to_lonlat(self, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`_ellipsoid` on the front half, for landmarks given in canonical x, y."""
        p = self.p
        b = np.where(y > 0, p.head_b_up, p.head_b_low)
        lat = np.arcsin(np.clip(y / b, -1.0, 1.0))
        lon = np.arcsin(np.clip(x / (p.head_a * np.cos(lat)), -1.0, 1.0))
        return lon, lat

    def _static(self, can: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The person's shape: canonical (N, 3) -> displaced local points (N, 3) and ambient occlusion (N,)."""
        p = self.p
        x, y, z = can[:, 0], can[:, 1], can[:, 2]
        ym, tip = p.mouth_y, -p.nose_len
        front = smoothstep(0.0, 0.55 * p.head_c, z)
        dz = np.zeros_like(x)
        socket = np.zeros_like(x)
        crease = np.zeros_like(x)
        for s in (-1.0, 1.0):
            socket += bump(x, y, s * p.eye_x, 0.004, 0.036, 0.026)
            r2 = ((x - s * p.eye_x) ** 2 + y**2) / (1.3 * p.eye_w) ** 2
            dz += 0.012 * np.clip(1.0 - r2, 0.0, None) ** 1.5  # eyeball under the lids, blending into the socket
            dz += p.brow_ridge * bump(x, y, s * 0.95 * p.eye_x, p.brow_y + 0.006, 0.045, 0.016)
            dz += p.cheek * bump(x, y, s * 0.072, -0.065, 0.04, 0.035)
            dz += 0.45 * p.nose_h * bump(x, y, s * 1.1 * p.nose_w, tip - 0.006, 0.011, 0.009)  # nostril wings
            crease += 0.5 * bump(x, y, s * 1.9 * p.nose_w, tip - 0.012, 0.006, 0.012)  # beside the nostrils
            crease += 0.6 * bump(x, y, s * p.mouth_w, ym, 0.006, 0.006)  # mouth corners
        dz -= p.socket_depth * socket
        # Nose: a ridge rising from the bridge to the tip, then falling quickly to the upper lip.
        t = np.clip(-y / p.nose_len, 0.0, 1.0)
        ridge = p.nose_h * (0.15 + 0.85 * t**1.6) * smoothstep(0.03, 0.0, y)
        ridge = np.where(y < tip, p.nose_h * np.exp(-0.5 * ((y - tip) / 0.011) ** 2), ridge)
        dz += ridge * np.exp(-0.5 * (x / (p.nose_w * (0.45 + 0.6 * t))) ** 2)
        # Muzzle, lips (bulges centred in each lip) and chin.
        dz += 0.016 * bump(x, y, 0.0, ym + 0.005, 0.05, 0.045)
        tu, tl = upper_lip_height(x, p), lower_lip_height(x, p)
        prof = lip_profile(x, 1.15 * p.mouth_w) ** 0.5
        dz += p.lip_protrude * prof * np.exp(-0.5 * ((y - ym - 0.5 * tu) / (0.5 * tu + 0.003)) ** 2)
        dz += p.lip_protrude * prof * np.exp(-0.5 * ((y - ym + 0.5 * tl) / (0.5 * tl + 0.003)) ** 2)
        dz += p.chin * bump(x, y, 0.0, ym - 0.075, 0.03, 0.022)
        crease += 0.4 * bump(x, y, 0.0, ym - lower_lip_height(np.zeros(1), p) - 0.012, 0.02, 0.006)
        dz *= front
        # The lower face narrows towards the chin; ears stick out at the sides.
        out = can.copy()
        out[:, 0] *= 1.0 - p.jaw_taper * smoothstep(-0.04, -0.24, y)
        ear = np.exp(-0.5 * (((y + 0.025) / 0.028) ** 2 + ((z + 0.015) / 0.022) ** 2))
        out[:, 0] += np.sign(x) * p.ear_size * ear * smoothstep(0.5 * p.head_a, 0.9 * p.head_a, np.abs(x))
        out[:, 2] += dz
        ao = np.clip(1.0 - 11.0 * p.socket_depth * socket - 0.35 * crease * front, 0.3, 1.0)
        return out, ao

    # ------------------------------------------------------------------ articulation
    def _articulate(self, can: np.ndarray, pos: np.ndarray, side: np.ndarray, st: FaceState) -> np.ndarray:
        """Apply a :class:`FaceState` to local points: (N, 3) canonical + (N, 3) static -> (N, 3).

        ``side`` is +1 above the mouth line and -1 below; the two lips of the slit share canonical coordinates
        and differ only by it.
        """
        p = self.p
        x, y, z = can[:, 0], can[:, 1], can[:, 2]
        ym = p.mouth_y
        out = pos.copy()
        mouth = bump(x, y, 0.0, ym, 1.3 * p.mouth_w, 0.03) * smoothstep(0.0, 0.5 * p.head_c, z)
        # Lips: spreading widens and pulls the corners back, rounding narrows and pushes forward.
        corner = (x / p.mouth_w) ** 2
        out[:, 0] *= 1.0 + mouth * (0.16 * st.lip_spread - 0.28 * st.lip_round)
        out[:, 1] += 0.002 * st.lip_spread * mouth * corner
        out[:, 2] += mouth * (0.013 * st.lip_round - 0.005 * st.lip_spread * corner)
        # The upper lip lifts a little when the mouth opens.
        prof = lip_profile(x, p.mouth_w)
        near_line = np.exp(-0.5 * ((y - ym) / 0.012) ** 2)
        out[:, 1] += np.where(side > 0, 0.003 * st.jaw_open * prof * near_line, 0.0)
        # Jaw: the lower face rotates about the pivot; the weight tapers to the mouth corners along the slit,
        # and pressing the lips keeps the lower lip up while the chin still drops.
        below = np.clip(ym - y, 0.0, None)
        w = prof + (1.0 - prof) * smoothstep(0.0, 0.045, below)
        w *= 1.0 - st.lip_closure * smoothstep(p.lip_lower + 0.03, p.lip_lower, below)
        w = np.where(side < 0, w, 0.0) * smoothstep(-0.05, 0.08, z)
        out[:, 1:] = self._rotate_jaw(out[:, 1:], st.jaw_open * w)
        # Brows rise.
        brow = sum(bump(x, y, s * p.eye_x, p.brow_y, 0.045, 0.03) for s in (-1.0, 1.0))
        out[:, 1] += 0.007 * st.brow * brow * smoothstep(0.0, 0.5 * p.head_c, z)
        return out

    def _rotate_jaw(self, yz: np.ndarray, amount: np.ndarray) -> np.ndarray:
        """Rotate (N, 2) (y, z) points about the jaw pivot by ``amount`` x the identity's maximum angle."""
        angle = np.deg2rad(self.p.jaw_max_deg) * amount
        c, s = np.cos(angle), np.sin(angle)
        dy, dz = yz[:, 0] - JAW_PIVOT[0], yz[:, 1] - JAW_PIVOT[1]
        return np.stack([JAW_PIVOT[0] + c * dy - s * dz, JAW_PIVOT[1] + s * dy + c * dz], -1)

    # ------------------------------------------------------------------ mesh parts
    def _build_skull(self) -> None:
        p = self.p
        lat_m = np.arcsin(p.mouth_y / p.head_b_low)
        n_low = int(_HEAD_ROWS * (lat_m + np.pi / 2) / np.pi)
        lat = np.concatenate(
            [
                np.linspace(-np.pi / 2 + _EPS_LAT, lat_m, n_low),
                np.linspace(lat_m, np.pi / 2 - _EPS_LAT, _HEAD_ROWS - n_low),
            ]
        )
        u = np.linspace(-1.0, 1.0, _HEAD_COLS, endpoint=False)
        lon = np.pi * (0.45 * u + 0.55 * u**3)  # denser columns on the face
        lon_g, lat_g = np.meshgrid(lon, lat)  # (rows, cols)
        can = self._ellipsoid(lon_g, lat_g).reshape(-1, 3)
        side = np.where(np.arange(_HEAD_ROWS) < n_low, -1.0, 1.0)
        self._skull_side = np.repeat(side, _HEAD_COLS)
        self._skull_can = can
        self._skull_static, self._skull_ao = self._static(can)
        self._skull_split = n_low  # rows [0, n_low) are below the slit, [n_low, rows) above
        # Leave the cells between the two mouth-line rows open across the mouth.
        keep = np.ones((_HEAD_ROWS - 1, _HEAD_COLS), bool)
        slit_x = can.reshape(_HEAD_ROWS, _HEAD_COLS, 3)[n_low, :, 0]
        slit_front = np.abs(lon) < np.pi / 2
        open_cols = slit_front & (np.abs(slit_x) < p.mouth_w) & (np.abs(np.roll(slit_x, -1)) < p.mouth_w)
        keep[n_low - 1, open_cols] = False
        self._slit_cols = open_cols | np.roll(open_cols, 1)
        self._skull_tris = grid_triangles(_HEAD_ROWS, _HEAD_COLS, wrap=True, keep=keep)
        self._part_sizes = [len(can)]

    def _build_neck(self) -> None:
        p = self.p
        rows, cols = 16, 64
        theta = np.linspace(-np.pi, np.pi, cols, endpoint=False)
        y = np.linspace(-0.75, -0.16, rows)
        th_g, y_g = np.meshgrid(theta, y)
        radius = 0.46 * p.head_a
        pts = np.stack([radius * np.sin(th_g), y_g, radius * np.cos(th_g) - 0.025], -1)  # (rows, cols, 3)
        self._neck = self._pack(
            pts.reshape(-1, 3),
            grid_normals(pts, wrap=True).reshape(-1, 3),
            np.stack([pts[..., 0], pts[..., 1], -np.ones_like(y_g)], -1).reshape(-1, 3),  # no face paint
            SKIN,
            (1.0 - 0.5 * smoothstep(-0.3, -0.17, y_g) * smoothstep(-0.02, 0.05, pts[..., 2])).reshape(-1),
        )
        self._neck_tris = grid_triangles(rows, cols, wrap=True)
        self._part_sizes.append(rows * cols)

    def _hair_boundary(self, azimuth_deg: np.ndarray) -> np.ndarray:
        """Lowest canonical y covered by hair at each azimuth (0 = front, 180 = back)."""
        p = self.p
        hl = p.hairline
        knots = [0, 25, 40, 70, 85, 100, 130, 180]
        lows = {
            "buzz": [hl, hl, hl - 0.005, 0.035, 0.01, -0.02, -0.09, -0.12],
            "short": [hl, hl, hl - 0.005, 0.035, 0.01, -0.02, -0.09, -0.12],
            "medium": [hl, hl, hl - 0.01, 0.03, -0.02, -0.08, -0.16, -0.19],
            "long": [hl, hl, hl - 0.01, 0.03, -0.04, -1.0, -1.0, -1.0],
        }[p.hair_style]
        return np.interp(np.abs(azimuth_deg), knots, lows)

    def _build_hair(self) -> None:
        p = self.p
        rows, cols = 110, 160
        lat = np.linspace(-np.pi / 2 + _EPS_LAT, np.pi / 2 - _EPS_LAT, rows)
        lon = np.linspace(-np.pi, np.pi, cols, endpoint=False)
        lon_g, lat_g = np.meshgrid(lon, lat)
        can = self._ellipsoid(lon_g, lat_g)  # (rows, cols, 3)
        azimuth = np.rad2deg(lon_g)
        depth = can[..., 1] - self._hair_boundary(azimuth)
        coverage = depth / 0.008
        thick = 0.0035 if p.hair_style == "buzz" else p.hair_thick
        ph = p.noise_offset
        lumps = 1.0 + 0.3 * np.sin(7 * lon_g + ph[0]) * np.sin(5 * lat_g + ph[1])
        offset = 0.004 + thick * smoothstep(0.0, 0.04, depth) * lumps
        pts = can + can / np.linalg.norm(can, axis=-1, keepdims=True) * offset[..., None]
        if p.hair_style == "long":
            # Hang the back and side hair down past the neck and slightly outwards.
            hang = smoothstep(75.0, 110.0, np.abs(azimuth)) * (pts[..., 1] < 0)
            pts[..., 1] *= 1.0 + 1.2 * hang
            pts[..., 0] *= 1.0 + 0.2 * hang
        self._hair = self._pack(
            pts.reshape(-1, 3), grid_normals(pts, wrap=True).reshape(-1, 3), can.reshape(-1, 3), HAIR, coverage.reshape(-1)
        )
        # Triangulate only cells that touch the hair region.
        cov = coverage
        near = np.maximum.reduce([cov[:-1], cov[1:], np.roll(cov[:-1], -1, 1), np.roll(cov[1:], -1, 1)]) > -1.0
        self._hair_tris = grid_triangles(rows, cols, wrap=True, keep=near)
        self._part_sizes.append(rows * cols)

    def _build_mouth_interior(self) -> None:
        """Dark mouth cavity and the two rows of teeth, seen through the lips when the jaw opens."""
        p = self.p
        ym = p.mouth_y
        # Front of the face along the mouth line, to tuck the interior just behind the lips.
        xs = np.linspace(-0.85 * p.mouth_w, 0.85 * p.mouth_w, 36)
        lon, lat = self._to_lonlat(xs, np.full_like(xs, ym))
        face_z = self._static(self._ellipsoid(lon, lat))[0][:, 2]  # (36,)
        # Cavity: an ellipsoid behind the lips; its lower half follows the jaw.
        rows, cols = 20, 32
        lat_c = np.linspace(-np.pi / 2 + _EPS_LAT, np.pi / 2 - _EPS_LAT, rows)
        lon_c = np.linspace(-np.pi, np.pi, cols, endpoint=False)
        lon_g, lat_g = np.meshgrid(lon_c, lat_c)
        unit = np.stack([np.cos(lat_g) * np.sin(lon_g), np.sin(lat_g), np.cos(lat_g) * np.cos(lon_g)], -1)
        radii = np.array([1.05 * p.mouth_w, 0.032, 0.04])
        centre = np.array([0.0, ym - 0.004, face_z.max() - p.lip_protrude - 0.085])
        self._cavity_rest = unit * radii + centre  # (rows, cols, 3)
        self._cavity_unit = unit.reshape(-1, 3)
        self._cavity_jaw = smoothstep(0.3, -0.3, unit[..., 1]).reshape(-1)
        self._cavity_shape = (rows, cols)
        self._cavity_tris = grid_triangles(rows, cols, wrap=True)
        # Teeth: two curved strips following the dental arch.
        zs = face_z - p.lip_protrude - 0.012 - 0.02 * (xs / p.mouth_w) ** 2
        upper_y = np.linspace(ym - 0.009, ym + 0.006, 5)
        lower_y = np.linspace(ym - 0.012, ym + 0.004, 5)
        strips = []
        for ys, dz in ((upper_y, 0.0), (lower_y, -0.003)):
            x_g, y_g = np.meshgrid(xs, ys)  # (5, 36)
            strips.append(np.stack([x_g, y_g, np.broadcast_to(zs + dz, x_g.shape)], -1))
        self._teeth_rest = np.concatenate(strips, 0)  # (10, 36, 3): rows 0-4 upper, 5-9 lower
        self._teeth_lower = np.repeat(np.arange(10) >= 5, 36)
        tris = grid_triangles(5, 36, wrap=False)
        self._teeth_tris = np.concatenate([tris, tris + 5 * 36])
        self._part_sizes += [rows * cols, 10 * 36]

    @staticmethod
    def _pack(pos, nrm, can, material: float, shade) -> np.ndarray:
        """Interleave per-vertex attributes: -> (N, VERTEX_FLOATS) float32."""
        n = len(pos)
        return np.concatenate(
            [pos, nrm, can, np.full((n, 1), material), np.broadcast_to(np.asarray(shade, float).reshape(-1, 1), (n, 1))],
            axis=1,
        ).astype(np.float32)

    # ------------------------------------------------------------------ per-frame outputs
    def _build_template(self) -> None:
        """Per-vertex buffer with everything that does not change between frames already filled in."""
        p = self.p
        self._skull_active = np.flatnonzero(
            (self._skull_can[:, 2] > -0.06) & (self._skull_can[:, 1] < p.brow_y + 0.1)
        )  # vertices any articulation can move
        teeth_can = self._teeth_rest.reshape(-1, 3) - [0.0, p.mouth_y, 0.0]
        n_skull, n_cavity = len(self._skull_can), len(self._cavity_unit)
        zeros = lambda n: np.zeros((n, 3))  # noqa: E731 - positions and normals filled per frame
        template = np.concatenate(
            [
                self._pack(self._skull_static, zeros(n_skull), self._skull_can, SKIN, self._skull_ao),
                self._neck,
                self._hair,
                self._pack(zeros(n_cavity), zeros(n_cavity), self._cavity_unit, CAVITY, 1.0),
                self._pack(zeros(len(teeth_can)), zeros(len(teeth_can)), teeth_can, TEETH, 1.0),
            ]
        )
        bounds = np.cumsum([0] + self._part_sizes)
        self._slices = {name: slice(a, b) for name, a, b in zip(("skull", "neck", "hair", "cavity", "teeth"), bounds[:-1], bounds[1:])}
        # Static parts go to world coordinates once.
        for name in ("neck", "hair"):
            template[self._slices[name], :3] = template[self._slices[name], :3] * self.scale + self.translation
        self._template = template

    def vertices(self, st: FaceState) -> np.ndarray:
        """All vertices in world coordinates for one frame: -> (N, VERTEX_FLOATS) float32."""
        out = self._template.copy()
        act = self._skull_active
        skull = self._skull_static.copy()
        skull[act] = self._articulate(self._skull_can[act], self._skull_static[act], self._skull_side[act], st)
        grid = skull.reshape(_HEAD_ROWS, _HEAD_COLS, 3)
        k, cols = self._skull_split, self._slit_cols
        # Smooth normals everywhere except along the open part of the slit, where each lip keeps its edge:
        # there the row direction comes from one side only.
        nrm = grid_normals(grid, wrap=True)
        for row, d_row in ((k - 1, grid[k - 1] - grid[k - 2]), (k, grid[k + 1] - grid[k])):
            d_col = np.roll(grid[row], -1, axis=0) - np.roll(grid[row], 1, axis=0)
            n = np.cross(d_col, d_row)[cols]
            nrm[row, cols] = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        out[self._slices["skull"], :3] = skull
        out[self._slices["skull"], 3:6] = nrm.reshape(-1, 3)
        cavity = self._cavity_rest.reshape(-1, 3).copy()
        cavity[:, 1:] = self._rotate_jaw(cavity[:, 1:], st.jaw_open * self._cavity_jaw)
        out[self._slices["cavity"], :3] = cavity
        out[self._slices["cavity"], 3:6] = grid_normals(cavity.reshape(*self._cavity_shape, 3), wrap=True).reshape(-1, 3)
        teeth = self._teeth_rest.reshape(-1, 3).copy()
        teeth[:, 1:] = self._rotate_jaw(teeth[:, 1:], st.jaw_open * self._teeth_lower)
        strips = teeth.reshape(2, 5, 36, 3)  # (upper / lower, rows, cols, 3)
        out[self._slices["teeth"], :3] = teeth
        out[self._slices["teeth"], 3:6] = np.stack([grid_normals(g, wrap=False) for g in strips]).reshape(-1, 3)
        for name in ("skull", "cavity", "teeth"):
            out[self._slices[name], :3] = out[self._slices[name], :3] * self.scale + self.translation
        return out

    def landmark_canonical(self, st: FaceState) -> Tuple[np.ndarray, np.ndarray]:
        """The 68 iBUG landmarks in canonical x, y (68, 2) and their mouth-line side (68,)."""
        p = self.p
        ym, mw = p.mouth_y, p.mouth_w
        pts: List[Tuple[float, float, float]] = []
        # 0-16 jaw line, from the subject's right ear (image left) round the chin.
        y_top, y_chin = -0.01, -0.93 * p.head_b_low
        for phi in np.linspace(0.0, np.pi, 17):
            y = y_top + (y_chin - y_top) * np.sin(phi) ** 0.8
            half = 0.94 * p.head_a * np.sqrt(max(1.0 - (y / p.head_b_low) ** 2, 0.0))
            pts.append((-np.cos(phi) * half, y, -1.0))
        # 17-26 brows: right brow outer -> inner, left brow inner -> outer.
        for s, order in ((-1.0, BROW_SPAN[::-1]), (1.0, BROW_SPAN)):
            for bx in np.linspace(order[0], order[1], 5) * p.eye_w:
                pts.append((s * (p.eye_x + bx), float(brow_line(bx, p)), 1.0))
        # 27-30 nose bridge to tip, 31-35 nostril base.
        for y in np.linspace(0.0, -p.nose_len, 4):
            pts.append((0.0, y, 1.0))
        base = -p.nose_len - 0.012
        for f in (-1.3, -0.7, 0.0, 0.7, 1.3):
            pts.append((f * p.nose_w, base + 0.004 * abs(f), 1.0))
        # 36-47 eyes: right eye from its outer corner, left eye from its inner corner, clockwise in the image.
        for s, blink in ((-1.0, st.blink_r), (1.0, st.blink_l)):
            qs = (-1.0, -0.35, 0.35, 1.0, 0.35, -0.35)
            upper = (False, True, True, False, False, False)
            for q, up in zip(qs, upper):
                lid = upper_lid(np.array(q), p.eye_h, blink) if up else lower_lid(np.array(q), p.eye_h, blink)
                pts.append((s * p.eye_x + q * p.eye_w, float(lid), 1.0))
        # 48-59 outer lips, 60-67 inner lips.
        for f in (-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0):
            x = np.array(f * mw)
            pts.append((float(x), ym + float(upper_lip_height(x, p)), 1.0))
        for f in (0.6, 0.25, 0.0, -0.25, -0.6):
            x = np.array(f * mw)
            pts.append((float(x), ym - float(lower_lip_height(x, p)), -1.0))
        for f, side in ((-0.92, 1.0), (-0.4, 1.0), (0.0, 1.0), (0.4, 1.0), (0.92, 1.0), (0.4, -1.0), (0.0, -1.0), (-0.4, -1.0)):
            pts.append((f * mw, ym, side))
        arr = np.array(pts)  # (68, 3)
        side = np.where(arr[:, 1] > ym, 1.0, np.where(arr[:, 1] < ym, -1.0, arr[:, 2]))
        return arr[:, :2], side

    def landmarks(self, st: FaceState) -> np.ndarray:
        """The 68 landmarks as 3D world points on the articulated surface: -> (68, 3)."""
        xy, side = self.landmark_canonical(st)
        lon, lat = self._to_lonlat(xy[:, 0], xy[:, 1])
        can = self._ellipsoid(lon, lat)
        static, _ = self._static(can)
        local = self._articulate(can, static, side, st)
        return local * self.scale + self.translation

    # ------------------------------------------------------------------ framing
    def _fit_framing(self) -> None:
        """Scale and translate so a frontal render puts the eyes and mouth where the framing wants them."""
        p = self.p
        lm = self.landmarks(FaceState())
        eye, mouth = lm[36:48].mean(0), lm[48:68].mean(0)
        target_u, target_v = EYE_CENTER[0] + p.frame_dx, EYE_CENTER[1] + p.frame_dy
        target_gap = EYE_TO_MOUTH * p.frame_scale

        def frontal(point):  # frontal camera: u = 0.5 + f x / (R - z), v = 0.5 - f y / (R - z)
            d = CAMERA_RADIUS - point[2]
            return 0.5 + FOCAL * point[0] / d, 0.5 - FOCAL * point[1] / d

        scale, shift = 1.0, np.zeros(3)
        for _ in range(10):
            e, m = eye * scale + shift, mouth * scale + shift
            scale *= target_gap / (frontal(m)[1] - frontal(e)[1])
            e = eye * scale + shift
            u, v = frontal(e)
            shift[0] += (target_u - u) * (CAMERA_RADIUS - e[2]) / FOCAL
            shift[1] -= (target_v - v) * (CAMERA_RADIUS - e[2]) / FOCAL
        self.scale, self.translation = float(scale), shift

    def eye_centres(self) -> np.ndarray:
        """World positions of the two eyeball centres (right, left): -> (2, 3)."""
        p = self.p
        can = self._ellipsoid(*self._to_lonlat(np.array([-p.eye_x, p.eye_x]), np.zeros(2)))
        surface = self._static(can)[0] - [0.0, 0.0, 1.3 * p.eye_w]
        return surface * self.scale + self.translation

    def gaze_at(self, point: np.ndarray) -> Tuple[float, float]:
        """Iris offset (canonical units) that makes the eyes look at a world point, limited to the eye opening."""
        p = self.p
        d = np.asarray(point, float) - self.eye_centres().mean(0)
        d /= np.linalg.norm(d)
        radius = 1.3 * p.eye_w
        gx = np.clip(radius * d[0], -0.6 * (p.eye_w - p.iris_r), 0.6 * (p.eye_w - p.iris_r))
        gy = np.clip(radius * d[1], -0.4 * p.eye_h, 0.4 * p.eye_h)
        return float(gx), float(gy)
