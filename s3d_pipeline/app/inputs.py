"""Checking and loading what a demo user sends: the portrait, and speech as a file, a recording or typed text.

Messages name the uploaded file by its base name, never by the server's temporary path, and say what to do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..audio import load_audio
from ..errors import InvalidAudioError, InvalidImageError
from ..face import load_image
from .config import AppConfig

ESPEAK = "espeak-ng"
ESPEAK_VOICE = "en-us"
ESPEAK_WORDS_PER_MINUTE = 150
SILENCE_PEAK = 1e-3  # below this peak amplitude there is nothing to lip-sync to


def _without_server_path(message: str, path: str) -> str:
    return message.replace(repr(path), repr(os.path.basename(path))).replace(path, os.path.basename(path))


def load_portrait(path: Optional[str]) -> Tuple[np.ndarray, str]:
    """The portrait as (H, W, 3) uint8 RGB and a content hash (the identity cache's key).

    Raises:
        InvalidImageError: nothing was given, or the file is not a readable image.
    """
    if not path:
        raise InvalidImageError("Add a portrait: upload a photo, take one with the webcam, or pick an example.")
    try:
        rgb = load_image(path)
    except InvalidImageError as exc:
        raise InvalidImageError(_without_server_path(str(exc), os.fspath(path))) from exc
    digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()
    return rgb, digest


def espeak_available() -> bool:
    """Whether typed text can be spoken (the espeak-ng program is installed)."""
    return shutil.which(ESPEAK) is not None


def speak(text: str, config: AppConfig, out_dir: Optional[str] = None) -> Path:
    """Speak ``text`` with espeak-ng into a new wav file and return its path.

    Raises:
        InvalidAudioError: empty or too long text, or espeak-ng missing or failing.
    """
    text = (text or "").strip()
    if not text:
        raise InvalidAudioError("Type some text to speak.")
    if len(text) > config.max_text_characters:
        raise InvalidAudioError(f"The text has {len(text)} characters; this demo speaks at most {config.max_text_characters}.")
    if not espeak_available():
        raise InvalidAudioError("Typed text needs espeak-ng, which is not installed here: upload or record speech instead.")
    fd, path = tempfile.mkstemp(prefix="speech-", suffix=".wav", dir=out_dir)
    os.close(fd)
    cmd = [ESPEAK, "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", path, "--stdin"]
    result = subprocess.run(cmd, input=text.encode(), capture_output=True)
    if result.returncode != 0:
        Path(path).unlink(missing_ok=True)
        raise InvalidAudioError(f"espeak-ng could not speak the text: {result.stderr.decode(errors='replace').strip()}")
    return Path(path)


def load_speech_file(path: str, config: AppConfig) -> np.ndarray:
    """An uploaded or recorded speech file as (S,) float32 mono at 16 kHz, refused before decoding when its header
    says it is longer than ``config.max_audio_seconds``.

    Raises:
        InvalidAudioError: undecodable, empty, damaged or too long; the message names the file by its base name.
    """
    try:
        return load_audio(path, max_seconds=config.max_audio_seconds)
    except InvalidAudioError as exc:
        raise InvalidAudioError(_without_server_path(str(exc), os.fspath(path))) from exc


def load_speech(audio_path: Optional[str], text: Optional[str], config: AppConfig, out_dir: Optional[str] = None) -> np.ndarray:
    """The speech to animate, (S,) float32 mono at 16 kHz: the uploaded or recorded file if there is one,
    else ``text`` spoken by espeak-ng.

    Raises:
        InvalidAudioError: no speech given, undecodable, silent, or longer than ``config.max_audio_seconds``.
    """
    if audio_path:
        waveform = load_speech_file(audio_path, config)
    elif text and text.strip():
        spoken = speak(text, config, out_dir)
        try:
            waveform = load_speech_file(str(spoken), config)
        finally:
            spoken.unlink(missing_ok=True)
    else:
        raise InvalidAudioError("Add speech: upload an audio file, record with the microphone, or type text to speak.")
    if float(np.abs(waveform).max()) < SILENCE_PEAK:
        raise InvalidAudioError("The speech is silent: check the microphone or the file and try again.")
    return waveform
