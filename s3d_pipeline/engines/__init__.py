"""Render engines: one protocol (:mod:`.base`), two implementations of the per-frame path.

``ReferenceEngine`` (:mod:`.reference`) evaluates every network as written and is differentiable: training and
the reference renders use it. ``FastEngine`` (:mod:`.fast`) computes the same frames with the same weights,
rearranged for a CPU. The pipeline, the trainer, ``s3d-nerf eval`` and ``s3d-nerf bench`` all render through
these; none spells the path out itself.
"""

from .base import STAGES, FrameBatch, RenderEngine, StageTimer, untimed
from .fast import FastCache, FastEngine
from .identity import Identity, encode_identity
from .reference import ReferenceEngine

__all__ = [
    "STAGES",
    "FastCache",
    "FastEngine",
    "FrameBatch",
    "Identity",
    "ReferenceEngine",
    "RenderEngine",
    "StageTimer",
    "encode_identity",
    "untimed",
]
