"""Sampling synthetic people: everything that makes one synthetic person look like themselves.

A :class:`Person` is a flat record of shape, colour, lighting and backdrop parameters drawn from a seeded
random stream. The stream is derived from ``(base_seed, split, index)`` through ``numpy.random.SeedSequence``,
so the train and test splits draw from disjoint streams and never share a person, and the same identity can be
rebuilt from its three numbers alone.

Lengths are in *head units* before the framing transform of :mod:`.head` (the eye-to-mouth distance is about
0.155, roughly 7 cm), with the eye line at ``y = 0`` and the face looking down +z. Colours are linear RGB in
[0, 1]; the renderer converts to sRGB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np

SPLITS = ("train", "test")

Vec3 = Tuple[float, float, float]

# Reference albedos (linear RGB) spanning light to deep skin; an identity interpolates between neighbours.
_SKIN_TONES = np.array(
    [
        [0.78, 0.57, 0.47],
        [0.70, 0.47, 0.36],
        [0.58, 0.38, 0.27],
        [0.42, 0.26, 0.17],
        [0.26, 0.15, 0.09],
        [0.15, 0.085, 0.05],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.018, 0.014, 0.012],  # black
        [0.06, 0.035, 0.02],  # dark brown
        [0.16, 0.09, 0.045],  # brown
        [0.45, 0.32, 0.17],  # dark blond
        [0.70, 0.55, 0.32],  # blond
        [0.35, 0.10, 0.035],  # red
        [0.45, 0.44, 0.42],  # grey
    ]
)
_IRIS_COLOURS = np.array(
    [
        [0.09, 0.04, 0.015],  # dark brown
        [0.22, 0.11, 0.04],  # brown
        [0.25, 0.22, 0.09],  # hazel
        [0.12, 0.24, 0.38],  # blue
        [0.13, 0.25, 0.14],  # green
        [0.28, 0.31, 0.33],  # grey
    ]
)
HAIR_STYLES = ("buzz", "short", "medium", "long")


@dataclass(frozen=True)
class Person:
    """Parameters of one synthetic person (all floats or tuples, so ``asdict`` is JSON-ready)."""

    name: str
    split: str
    index: int
    seed: int
    # Skull: ellipsoid semi-axes (width, height above / below the eye line, depth).
    head_a: float
    head_b_up: float
    head_b_low: float
    head_c: float
    jaw_taper: float  # how much the lower face narrows towards the chin
    chin: float  # chin protrusion
    cheek: float  # cheekbone protrusion
    brow_ridge: float
    socket_depth: float
    ear_size: float
    # Eyes (centres at (+-eye_x, 0)); almond half-width / half-height; iris radius.
    eye_x: float
    eye_w: float
    eye_h: float
    iris_r: float
    # Nose: length from the eye line to the tip, half-width at the tip, protrusion.
    nose_len: float
    nose_w: float
    nose_h: float
    # Mouth line height (negative: below the eyes), half-width, lip thicknesses and protrusion.
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_protrude: float
    jaw_max_deg: float  # jaw rotation at jaw_open = 1
    # Brows: height above the eye line, thickness, arch.
    brow_y: float
    brow_thick: float
    brow_arch: float
    # Colours (linear RGB).
    skin: Vec3
    lip: Vec3
    hair: Vec3
    brow: Vec3
    iris: Vec3
    teeth: Vec3
    skin_noise: float
    freckles: float
    blush: float
    hair_style: str
    hair_thick: float
    hairline: float  # forehead hairline height above the eye line
    # Backdrop: two colours, gradient angle (radians), texture amount and scale.
    bg_a: Vec3
    bg_b: Vec3
    bg_angle: float
    bg_noise: float
    bg_scale: float
    # Lighting in the head frame: key direction and colour, fill, ambient, skin specular.
    key_dir: Vec3
    key_col: Vec3
    fill_col: Vec3
    ambient: float
    spec: float
    shininess: float
    # Framing jitter: offset of the eye midpoint (normalized image units) and eye-to-mouth scale.
    frame_dx: float
    frame_dy: float
    frame_scale: float
    noise_offset: Vec3

    def to_dict(self) -> Dict:
        return asdict(self)


def identity_seed(base_seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The random stream of identity ``index`` in ``split``; streams of different splits never coincide."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence([int(base_seed), SPLITS.index(split), int(index)])


def identity_name(split: str, index: int) -> str:
    """Person id stored in ``ClipMeta.identity``; unique across splits."""
    return f"synth-{split}-{index:04d}"


def _mix(palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour between two neighbouring palette entries, with a little per-channel jitter."""
    t = rng.uniform(0, len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    colour = palette[i] * (1 - (t - i)) + palette[i + 1] * (t - i)
    return np.clip(colour * rng.uniform(0.92, 1.08, size=3), 0.0, 1.0)


def _tuple(v) -> Vec3:
    return tuple(float(x) for x in v)


def sample_person(base_seed: int, split: str, index: int) -> Person:
    """Draw identity ``index`` of ``split`` for the corpus seed ``base_seed`` (deterministic)."""
    seq = identity_seed(base_seed, split, index)
    rng = np.random.default_rng(seq)
    u = rng.uniform

    skin = _mix(_SKIN_TONES, rng)
    lip = np.clip(skin * np.array([0.85, 0.48, 0.5]) + np.array([0.08, 0.0, 0.01]) * u(0.3, 1.0), 0, 1)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2)
    hair_style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.15, 0.4, 0.3, 0.15])]
    # Brows are usually darker than scalp hair, especially for light hair.
    brow = np.clip(np.minimum(hair * u(0.5, 0.9), skin * 0.35), 0, 1)

    # Backdrop colours: muted, some light and some dark, so the head is not always on the same contrast.
    base = rng.uniform(0.05, 0.75, size=3) ** 1.4
    bg_a = np.clip(base * u(0.8, 1.2) + u(-0.05, 0.05, size=3), 0, 1)
    bg_b = np.clip(base * u(0.3, 1.1) + u(-0.1, 0.1, size=3), 0, 1)

    key = np.array([u(-0.9, 0.9), u(0.1, 0.8), u(0.6, 1.2)])
    key /= np.linalg.norm(key)
    warmth = u(-0.12, 0.12)
    key_col = np.array([1.0 + warmth, 1.0, 1.0 - warmth]) * u(1.5, 2.3)
    fill_col = np.array([1.0 - warmth, 1.0, 1.0 + warmth]) * u(0.15, 0.45)

    jaw_taper = u(0.12, 0.32)
    return Person(
        name=identity_name(split, index),
        split=split,
        index=int(index),
        seed=int(seq.generate_state(1)[0]),
        head_a=u(0.150, 0.172),
        head_b_up=u(0.225, 0.255),
        head_b_low=u(0.245, 0.270),
        head_c=u(0.195, 0.220),
        jaw_taper=jaw_taper,
        chin=u(0.008, 0.022),
        cheek=u(0.006, 0.016),
        brow_ridge=u(0.008, 0.018),
        socket_depth=u(0.022, 0.034),
        ear_size=u(0.018, 0.028),
        eye_x=u(0.060, 0.070),
        eye_w=u(0.024, 0.029),
        eye_h=u(0.0095, 0.0135),
        iris_r=u(0.0105, 0.0125),
        nose_len=u(0.085, 0.105),
        nose_w=u(0.014, 0.020),
        nose_h=u(0.035, 0.052),
        mouth_y=-u(0.150, 0.160),
        mouth_w=u(0.040, 0.052),
        lip_upper=u(0.008, 0.014),
        lip_lower=u(0.010, 0.017),
        lip_protrude=u(0.006, 0.012),
        jaw_max_deg=u(11.0, 15.0),
        brow_y=u(0.030, 0.040),
        brow_thick=u(0.009, 0.015),
        brow_arch=u(0.002, 0.008),
        skin=_tuple(skin),
        lip=_tuple(lip),
        hair=_tuple(np.clip(hair, 0, 1)),
        brow=_tuple(brow),
        iris=_tuple(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * u(0.8, 1.2)),
        teeth=_tuple(np.array([0.80, 0.76, 0.66]) * u(0.75, 1.0)),
        skin_noise=u(0.15, 0.35),
        freckles=u(0.0, 0.5) if rng.random() < 0.3 else 0.0,
        blush=u(0.0, 0.35),
        hair_style=str(hair_style),
        hair_thick=u(0.015, 0.045),
        hairline=u(0.095, 0.125),
        bg_a=_tuple(bg_a),
        bg_b=_tuple(bg_b),
        bg_angle=u(0, 2 * np.pi),
        bg_noise=u(0.0, 0.25),
        bg_scale=u(2.0, 12.0),
        key_dir=_tuple(key),
        key_col=_tuple(key_col),
        fill_col=_tuple(fill_col),
        ambient=u(0.15, 0.3),
        spec=u(0.04, 0.14),
        shininess=u(12.0, 40.0),
        frame_dx=u(-0.015, 0.015),
        frame_dy=u(-0.015, 0.015),
        frame_scale=u(0.94, 1.06),
        noise_offset=_tuple(rng.uniform(0, 100, size=3)),
    )
