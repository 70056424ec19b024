"""Synthetic multi-identity talking-head corpus (``s3d-nerf synth``).

Procedural 3D heads (:mod:`.identity`, :mod:`.head`) speak espeak-ng sentences (:mod:`.speech`,
:mod:`.sentences`) with phoneme-driven mouths (:mod:`.visemes`), move and blink (:mod:`.motion`), and are
rasterized with real shading (:mod:`.raster`) into the shared clip format (:mod:`.corpus`). See
``docs/synthetic_corpus.md``.
"""

from .corpus import CorpusConfig, CorpusSummary, clip_path, render_corpus, synthesize_clip
from .head import FaceState, HeadModel
from .person import Person, sample_person
from .visemes import VISEME_NAMES

__all__ = [
    "CorpusConfig",
    "CorpusSummary",
    "FaceState",
    "HeadModel",
    "Person",
    "VISEME_NAMES",
    "clip_path",
    "render_corpus",
    "sample_person",
    "synthesize_clip",
]
