"""The Gradio side of the app that is more than wiring: sliders built from their specs, a portrait input that
says "not an image" in words, example discovery, and the mapping of errors to readable ``gr.Error`` messages."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import gradio as gr
import PIL.Image

from ..errors import S3DNeRFError
from .config import InvalidControlError, SliderSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a")


class SpecSlider(gr.Slider):
    """``gr.Slider`` that checks an incoming value against its :class:`SliderSpec`, so an API caller sending an
    out-of-range number is told which control and which range (the stock check names neither). Drawn by the
    stock slider in the browser."""

    is_template = True
    spec: SliderSpec  # set by :func:`slider`; the stock constructor is kept, as Gradio reads its config from it

    def preprocess(self, payload):
        try:
            self.spec.check(payload)
        except InvalidControlError as exc:
            raise gr.Error(readable(exc), title="Out of range", print_exception=False) from exc
        return super().preprocess(payload)


def slider(spec: SliderSpec, **kwargs) -> gr.Slider:
    """A slider with the spec's range, step, default, label and help text; its element id is the spec's name."""
    widget = SpecSlider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, label=spec.label, info=spec.info, elem_id=spec.name, **kwargs)
    widget.spec = spec
    return widget


class PortraitImage(gr.Image):
    """``gr.Image`` whose upload check reports a file that is not an image as a readable message (the stock
    component fails with a decoder error). Drawn by the stock image component in the browser."""

    is_template = True

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, PIL.UnidentifiedImageError) as exc:
            name = getattr(payload, "orig_name", None) or "The upload"
            raise gr.Error(f"{name} is not an image this app can read: use a PNG, JPEG or WebP photo.", title="Not an image") from exc


def example_inputs(assets_dir: Path) -> List[List[str]]:
    """[portrait, speech] pairs for ``gr.Examples``: every portrait in ``assets_dir`` with the speech clips in
    turn. Only paths: nothing is rendered until a user asks."""
    portraits = sorted(p for p in assets_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    speech = sorted(p for p in assets_dir.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not speech:
        return []
    return [[str(portrait), str(speech[i % len(speech)])] for i, portrait in enumerate(portraits)]


def readable(exc: Exception) -> str:
    """An error message as a sentence: first letter capitalised."""
    message = str(exc).strip() or type(exc).__name__
    return message[0].upper() + message[1:]


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Report the pipeline's and the app's typed errors as ``gr.Error`` with their message; anything else
    as a short apology, with the traceback going to the server log only."""
    try:
        yield
    except gr.Error:
        raise
    except S3DNeRFError as exc:
        raise gr.Error(readable(exc), title=f"Could not {action}", print_exception=False) from exc
    except Exception as exc:
        logger.exception("unexpected error while trying to %s", action)
        raise gr.Error(f"Something went wrong on the server while trying to {action}. Please try again.", title="Server error") from exc
