"""Speech with phoneme timings from espeak-ng's C library (``libespeak-ng.so.1``) through ctypes.

espeak-ng runs in synchronous mode: ``espeak_Synth`` calls our callback with blocks of 16-bit samples and a
list of events. Initialised with ``espeakINITIALIZE_PHONEME_EVENTS`` it reports one ``espeakEVENT_PHONEME``
per phoneme, carrying the phoneme mnemonic and its start as a sample index, which is the ground truth the
visemes are built from. Audio is resampled to the clip format's 16 kHz mono.

The library keeps global state, so there is one :class:`Espeak` per process (see :func:`get_espeak`), and
clips are spoken in forked child processes (see :func:`speak_sequence`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
from dataclasses import dataclass, field
from math import gcd
from typing import Callable, List, Optional, Tuple

import numpy as np
from scipy.signal import resample_poly

from ..clip import AUDIO_SAMPLE_RATE

# espeak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4

# Accents and voice variants (files in espeak-ng-data/voices/!v) that sound like plain speech.
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Andy", "Annie", "david", "john", "linda", "steph", "max", "paul", "robert", "zac",
)  # fmt: skip


class SpeechUnavailable(RuntimeError):
    """espeak-ng's shared library is not installed."""


class _Event(ctypes.Structure):
    """``espeak_EVENT``: the ``id`` union is read as its 8-byte ``string`` member (phoneme mnemonic)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice setting: accent, variant, speed (words per minute), pitch and pitch range (0-100)."""

    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


def sample_voice(rng: np.random.Generator) -> Voice:
    return Voice(
        accent=ACCENTS[rng.integers(len(ACCENTS))],
        variant=VARIANTS[rng.integers(len(VARIANTS))],
        rate=int(rng.integers(130, 195)),
        pitch=int(rng.integers(25, 75)),
        pitch_range=int(rng.integers(30, 90)),
    )


@dataclass
class Utterance:
    """Synthesised speech: 16 kHz mono audio and phonemes as (start s, end s, mnemonic)."""

    audio: np.ndarray  # (S,) float32
    phonemes: List[Tuple[float, float, str]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / AUDIO_SAMPLE_RATE


class Espeak:
    """The process-wide espeak-ng engine in synchronous mode with phoneme events."""

    def __init__(self, library: Optional[str] = None):
        path = library or ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as exc:
            raise SpeechUnavailable(f"espeak-ng library not found ({path}): install libespeak-ng1") from exc
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise SpeechUnavailable("espeak_Initialize failed (is espeak-ng-data installed?)")
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self._chunks: List[np.ndarray] = []
        self._events: List[Tuple[int, str]] = []
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: the library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.decode("utf-8", "replace")))
            i += 1
        return 0  # continue synthesis

    def speak(self, text: str, voice: Voice) -> Utterance:
        """Synthesise ``text``; phoneme intervals run from one phoneme event to the next."""
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch), (_PARAM_RANGE, voice.pitch_range)):
            self._lib.espeak_SetParameter(param, value, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        raw = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        ratio = gcd(AUDIO_SAMPLE_RATE, self.sample_rate)
        audio = resample_poly(raw.astype(np.float32) / 32768.0, AUDIO_SAMPLE_RATE // ratio, self.sample_rate // ratio)
        end = len(raw) / self.sample_rate
        starts = [s / self.sample_rate for s, _ in self._events]
        phonemes = [(t0, t1, name) for (t0, (_, name), t1) in zip(starts, self._events, starts[1:] + [end]) if t1 > t0]
        return Utterance(audio=audio.astype(np.float32), phonemes=phonemes)


_ENGINE: Optional[Espeak] = None


def get_espeak() -> Espeak:
    """The process's espeak-ng engine, initialised on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE


def _fill(texts: List[str], voice: Voice, duration: float, lead: float, gaps: np.ndarray) -> Tuple[Utterance, List[str]]:
    engine = get_espeak()
    total = int(round(duration * AUDIO_SAMPLE_RATE))
    audio = np.zeros(total, np.float32)
    phonemes: List[Tuple[float, float, str]] = []
    spoken: List[str] = []
    t = lead
    for text, gap in zip(texts, gaps):
        if duration - t < 0.6:
            break
        utt = engine.speak(text, voice)
        start = int(round(t * AUDIO_SAMPLE_RATE))
        n = min(len(utt.audio), total - start)
        audio[start : start + n] = utt.audio[:n]
        phonemes += [(t + a, min(t + b, duration), name) for a, b, name in utt.phonemes if t + a < duration]
        spoken.append(text)
        t += utt.duration + gap
    return Utterance(audio=audio, phonemes=phonemes), spoken


def _in_fresh_process(fn: Callable, *args):
    """Run ``fn(*args)`` in a forked child and return its (pickled) result, re-raising its exception."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 1
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps((True, fn(*args)))
            except BaseException as exc:  # hand any failure to the parent
                payload = pickle.dumps((False, exc))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError("speech synthesis process died without a result")
    ok, value = pickle.loads(payload)
    if not ok:
        raise value
    return value


def speak_sequence(texts: List[str], voice: Voice, duration: float, rng: np.random.Generator) -> Tuple[Utterance, List[str]]:
    """Fill ``duration`` seconds with sentences separated by short pauses, starting after a short silence.

    Sentences are taken in order until the clip is full; the last one may be cut at the clip's end.
    Returns the utterance (exactly ``duration`` long) and the sentences actually spoken.

    espeak-ng carries state from one utterance to the next (the same sentence comes out slightly different
    depending on what was said before), so each clip is spoken by a freshly forked process whose engine has
    never spoken: the audio then depends only on the clip's own inputs, and corpora are reproducible.
    """
    lead = rng.uniform(0.1, 0.4)
    gaps = rng.uniform(0.1, 0.35, size=len(texts))
    return _in_fresh_process(_fill, texts, voice, duration, lead, gaps)


def check_available() -> None:
    """Raise :class:`SpeechUnavailable` if espeak-ng cannot speak (checked in a child, keeping this process fresh)."""
    _in_fresh_process(lambda: get_espeak().sample_rate)
