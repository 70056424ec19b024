"""Synthetic multi-identity talking-head corpus (``s3d-nerf synth``).

Procedural 3D heads (:mod:`.identity`, :mod:`.head`) speak espeak-ng sentences (:mod:`.speech`,
:mod:`.sentences`) with phoneme-driven mouths (:mod:`.visemes`), move and blink (:mod:`.motion`), and are
rasterized with real shading (:mod:`.raster`) into the shared clip format (:mod:`.corpus`). Real portraits
lifted onto a face mesh speak the same way (:mod:`.from_photo`); speech can be augmented (:mod:`.augment`).
See ``docs/synthetic_corpus.md``.
"""

from .augment import SpeechAugmentation
from .corpus import CorpusConfig, CorpusSummary, clip_path, render_corpus, synthesize_clip
from .from_photo import PhotoCorpusConfig, fit_photo, render_photo_corpus, synthesize_photo_clip
from .head import FaceState, HeadModel
from .person import Person, sample_person
from .visemes import VISEME_NAMES

__all__ = [
    "CorpusConfig",
    "CorpusSummary",
    "FaceState",
    "HeadModel",
    "Person",
    "PhotoCorpusConfig",
    "SpeechAugmentation",
    "VISEME_NAMES",
    "clip_path",
    "fit_photo",
    "render_corpus",
    "render_photo_corpus",
    "sample_person",
    "synthesize_clip",
    "synthesize_photo_clip",
]
