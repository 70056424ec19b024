"""Speech augmentation, so that the audio encoder hears more than one clean espeak-ng voice.

Two kinds of change, both drawn from a random stream the caller derives from the clip's seed (same seed, same
audio):

- **Voice** (:func:`augment_voice`): accent and voice variant from espeak-ng's list, and rate, pitch and pitch
  range from wider ranges than the plain corpus. Rate goes through espeak-ng itself, so the phoneme events it
  reports (the viseme ground truth) describe the audio actually produced; nothing is time-stretched afterwards.
- **Signal** (:func:`augment_audio`): a synthetic room (the dry speech plus its convolution with exponentially
  decaying Gaussian noise, the usual statistical model of a late reverberation tail, reaching -60 dB at RT60),
  then coloured noise (white, pink or brown) at a drawn signal-to-noise ratio. Both are causal and add no delay:
  the direct sound stays where the phoneme timings say it is.

SNR here is ``10 log10(mean(speech^2) / mean(noise^2))`` over the whole clip (pauses included), measured on the
speech as it reaches the microphone (after reverberation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy.signal import fftconvolve

from ..clip import AUDIO_SAMPLE_RATE
from .speech import ACCENTS, VARIANTS, Voice

NOISE_COLOURS = ("white", "pink", "brown")
_DECAY_60DB = np.log(1000.0)  # amplitude factor 1/1000 = -60 dB


@dataclass(frozen=True)
class SpeechAugmentation:
    """Ranges of the speech augmentation (uniform draws; a probability of 0 switches a part off).

    Attributes:
        accents, variants: espeak-ng voices drawn from (``accent+variant``).
        rate_wpm: espeak-ng speaking rate in words per minute (the plain corpus draws 130-195).
        pitch, pitch_range: espeak-ng base pitch and intonation range, 0-100.
        reverb_probability: share of clips spoken in a synthetic room.
        rt60_s: reverberation time (decay to -60 dB) of the room.
        wet_db: energy of the reverberant tail relative to the direct sound.
        noise_probability: share of clips with additive noise.
        snr_db: signal-to-noise ratio of that noise.
    """

    accents: Tuple[str, ...] = ACCENTS
    variants: Tuple[str, ...] = VARIANTS
    rate_wpm: Tuple[int, int] = (100, 240)
    pitch: Tuple[int, int] = (10, 90)
    pitch_range: Tuple[int, int] = (10, 100)
    reverb_probability: float = 0.5
    rt60_s: Tuple[float, float] = (0.2, 0.9)
    wet_db: Tuple[float, float] = (-12.0, -3.0)
    noise_probability: float = 0.7
    snr_db: Tuple[float, float] = (5.0, 30.0)


def augment_voice(rng: np.random.Generator, config: SpeechAugmentation = SpeechAugmentation()) -> Voice:
    """A voice drawn from the augmentation's ranges."""
    return Voice(
        accent=config.accents[rng.integers(len(config.accents))],
        variant=config.variants[rng.integers(len(config.variants))],
        rate=int(rng.integers(config.rate_wpm[0], config.rate_wpm[1] + 1)),
        pitch=int(rng.integers(config.pitch[0], config.pitch[1] + 1)),
        pitch_range=int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
    )


def room_impulse_response(rt60: float, wet_db: float, rng: np.random.Generator, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Impulse response (L,): a unit direct path at t = 0, then Gaussian noise decaying by 60 dB over ``rt60``
    seconds, scaled so the tail carries ``wet_db`` of the direct path's energy. L covers the whole decay."""
    t = np.arange(1, int(rt60 * sample_rate) + 1) / sample_rate  # (L - 1,) the tail starts one sample late
    tail = rng.standard_normal(t.size) * np.exp(-_DECAY_60DB * t / rt60)
    tail *= 10.0 ** (wet_db / 20.0) / np.sqrt(np.sum(tail**2))
    return np.concatenate([[1.0], tail])


def reverberate(audio: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """Causal convolution, cut to the input's length: (S,) -> (S,)."""
    return fftconvolve(audio, impulse_response)[: audio.size].astype(np.float32)


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise (S,) with a 1/f^0 (white), 1/f (pink) or 1/f^2 (brown) power spectrum."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    spectrum /= np.maximum(freqs, freqs[1] if num_samples > 1 else 1.0) ** (exponent / 2.0)  # amplitude ~ f^(-e/2)
    noise = np.fft.irfft(spectrum, num_samples)
    noise -= noise.mean()
    return (noise / max(np.sqrt(np.mean(noise**2)), 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus noise whose power sits ``snr_db`` below the audio's mean power (whole clip): (S,) -> (S,)."""
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    noise = coloured_noise(audio.size, colour, rng) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (audio + noise).astype(np.float32)


def augment_audio(audio: np.ndarray, rng: np.random.Generator, config: SpeechAugmentation = SpeechAugmentation()) -> Tuple[np.ndarray, Dict]:
    """Reverberation, then noise, each with its configured probability: (S,) -> (S,), and what was applied.

    Every draw happens whether or not a part is applied, so the stream stays aligned across configurations.
    The result is scaled down only if it would clip in 16-bit PCM.
    """
    use_reverb = rng.random() < config.reverb_probability
    rt60, wet_db = rng.uniform(*config.rt60_s), rng.uniform(*config.wet_db)
    room_seed = int(rng.integers(2**31))
    use_noise = rng.random() < config.noise_probability
    snr_db = rng.uniform(*config.snr_db)
    colour = NOISE_COLOURS[rng.integers(len(NOISE_COLOURS))]
    noise_seed = int(rng.integers(2**31))

    applied: Dict = {}
    out = np.asarray(audio, dtype=np.float32)
    if use_reverb:
        out = reverberate(out, room_impulse_response(rt60, wet_db, np.random.default_rng(room_seed)))
        applied["reverb"] = {"rt60_s": round(rt60, 3), "wet_db": round(wet_db, 2)}
    if use_noise:
        out = add_noise(out, snr_db, colour, np.random.default_rng(noise_seed))
        applied["noise"] = {"snr_db": round(snr_db, 2), "colour": colour}
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.99:
        out = out * (0.99 / peak)
        applied["gain"] = round(0.99 / peak, 4)
    return out, applied
