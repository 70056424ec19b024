"""Phonemes to per-frame mouth parameters (the ground-truth visemes of a synthetic clip).

Each espeak-ng phoneme mnemonic maps to a mouth target (:data:`VISEME_NAMES`). Targets are laid on a 200 Hz
timeline (diphthongs glide: first half from the first vowel, second half from the second), then smoothed
with a Gaussian to model coarticulation: neighbouring sounds blend, and the mouth anticipates and lingers.
Lip closure uses a narrower kernel so bilabials (p, b, m) still press the lips shut. Pauses and the silence
around speech target the closed rest pose. Frames take the mean over their own time window.

Louder sounds open the jaw wider (as in real speech, where intensity rises with jaw opening): each phoneme's
jaw target is scaled by its RMS level relative to the utterance's loud phonemes.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

VISEME_NAMES = ("jaw_open", "lip_spread", "lip_round", "lip_closure")
TIMELINE_HZ = 200
COARTICULATION_S = 0.03  # Gaussian sigma for jaw and lip shape
CLOSURE_S = 0.012  # narrower sigma for lip closure

# (jaw_open, lip_spread, lip_round, lip_closure) per vowel class (first letter of the mnemonic).
_VOWELS: Dict[str, Tuple[float, float, float, float]] = {
    "a": (0.75, 0.25, 0.0, 0.0),
    "A": (0.8, 0.1, 0.05, 0.0),
    "V": (0.6, 0.15, 0.0, 0.0),
    "0": (0.65, 0.0, 0.5, 0.0),
    "O": (0.6, 0.0, 0.6, 0.0),
    "o": (0.45, 0.0, 0.7, 0.0),
    "e": (0.5, 0.5, 0.0, 0.0),
    "E": (0.55, 0.45, 0.0, 0.0),
    "@": (0.4, 0.1, 0.0, 0.0),
    "3": (0.4, 0.1, 0.15, 0.0),
    "i": (0.22, 0.85, 0.0, 0.0),
    "I": (0.3, 0.6, 0.0, 0.0),
    "u": (0.22, 0.0, 0.95, 0.0),
    "U": (0.3, 0.0, 0.7, 0.0),
}
# Consonant classes by mnemonic.
_CONSONANTS: Dict[str, Tuple[float, float, float, float]] = {
    **dict.fromkeys(("p", "b", "m"), (0.06, 0.0, 0.0, 1.0)),
    **dict.fromkeys(("f", "v"), (0.1, 0.1, 0.0, 0.6)),
    **dict.fromkeys(("T", "D"), (0.14, 0.3, 0.0, 0.0)),
    **dict.fromkeys(("s", "z"), (0.08, 0.55, 0.0, 0.0)),
    **dict.fromkeys(("S", "Z", "tS", "dZ"), (0.12, 0.0, 0.6, 0.0)),
    "w": (0.08, 0.0, 0.95, 0.0),
    "r": (0.15, 0.0, 0.45, 0.0),
    "j": (0.15, 0.6, 0.0, 0.0),
    **dict.fromkeys(("l", "n", "t", "d", "t#", "d#"), (0.14, 0.2, 0.0, 0.0)),
    **dict.fromkeys(("k", "g", "N", "x", "h", "?"), (0.18, 0.1, 0.0, 0.0)),
}
_DEFAULT = (0.15, 0.1, 0.0, 0.0)
REST = (0.0, 0.0, 0.0, 0.0)


def phoneme_targets(name: str) -> List[Tuple[float, float, float, float]]:
    """Mouth target(s) of one espeak-ng mnemonic: one for a monophthong or consonant, two for a diphthong."""
    if not name or name.startswith("_") or name == "||":
        return [REST]
    if name in _CONSONANTS:
        return [_CONSONANTS[name]]
    vowels = [c for c in name if c in _VOWELS]
    if vowels:
        targets = [_VOWELS[vowels[0]]]
        if len(vowels) > 1 and vowels[1] != vowels[0] and vowels[1] != "@":
            targets.append(_VOWELS[vowels[1]])
        return targets
    return [_CONSONANTS.get(name[0], _DEFAULT)]


def _loudness_gain(phonemes: Sequence[Tuple[float, float, str]], audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per-phoneme jaw gain in [0.5, 1.1] from its RMS level relative to the loud end of the utterance."""
    rms = np.array(
        [np.sqrt(np.mean(audio[int(a * sample_rate) : max(int(b * sample_rate), int(a * sample_rate) + 1)] ** 2))
         for a, b, _ in phonemes]
    )  # fmt: skip
    reference = np.percentile(rms, 90) if len(rms) else 1.0
    return 0.5 + 0.5 * np.clip(rms / max(reference, 1e-6), 0.0, 1.2)


def viseme_track(
    phonemes: Sequence[Tuple[float, float, str]],
    duration: float,
    fps: float,
    num_frames: int,
    audio: np.ndarray,
    sample_rate: int,
    strength: float = 1.0,
) -> np.ndarray:
    """Per-frame visemes from timed phonemes: -> (num_frames, len(VISEME_NAMES)) in [0, 1].

    Args:
        phonemes: (start s, end s, mnemonic) in clip time; time not covered is silence.
        audio: (S,) the clip's speech at ``sample_rate``, for the loudness-dependent jaw opening.
        strength: speaker's articulation scale for jaw and lip shape (closure is always complete).
    """
    steps = int(np.ceil(duration * TIMELINE_HZ)) + 1
    targets = np.zeros((steps, len(VISEME_NAMES)))  # (T, P), rest pose by default
    gains = _loudness_gain(phonemes, audio, sample_rate)
    for (start, end, name), gain in zip(phonemes, gains):
        parts = [(jaw * gain, *rest) for jaw, *rest in phoneme_targets(name)]
        bounds = np.linspace(start, end, len(parts) + 1)
        for target, t0, t1 in zip(parts, bounds[:-1], bounds[1:]):
            targets[int(round(t0 * TIMELINE_HZ)) : int(round(t1 * TIMELINE_HZ))] = target
    smooth = gaussian_filter1d(targets, COARTICULATION_S * TIMELINE_HZ, axis=0, mode="nearest")
    smooth[:, 3] = gaussian_filter1d(targets[:, 3], CLOSURE_S * TIMELINE_HZ, mode="nearest")
    smooth[:, :3] *= strength
    # Frame i covers [i / fps, (i + 1) / fps).
    edges = np.round(np.arange(num_frames + 1) / fps * TIMELINE_HZ).astype(int)
    frames = np.stack([smooth[a : max(b, a + 1)].mean(0) for a, b in zip(edges[:-1], edges[1:])])
    return np.clip(frames, 0.0, 1.0)
