"""The demo app's logic between the Gradio UI (``app.py``) and the pipeline: consent, input checks, motion
presets, watermarking, the lip-sync reading, pictures and the single-frame preview.

Everything except :mod:`~s3d_pipeline.app.widgets` is free of Gradio, so it can be tested without a server.
"""

from .config import AppConfig, InvalidControlError, SliderSpec
from .consent import CONSENT_STATEMENT, ConsentRequiredError, require_consent
from .service import GenerationRequest, GenerationResult, TalkingHeadService

__all__ = [
    "AppConfig",
    "CONSENT_STATEMENT",
    "ConsentRequiredError",
    "GenerationRequest",
    "GenerationResult",
    "InvalidControlError",
    "SliderSpec",
    "TalkingHeadService",
    "require_consent",
]
