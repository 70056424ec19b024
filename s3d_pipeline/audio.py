"""Speech in: decoding any common format to 16 kHz mono, and the log-mel features the networks read.

Features (ours, PAPER.md): 80-bin log-mel at 100 Hz (25 ms window, 10 ms hop) from 16 kHz mono. Video frame
``i`` at ``fps`` is centred at time ``(i + 0.5) / fps``.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .errors import InvalidAudioError
from .video import extract_audio

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # 100 mel frames per second
WIN_LENGTH = 400
N_FFT = 512
N_MELS = 80
MEL_RATE = SAMPLE_RATE / HOP_LENGTH
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000  # outside this a 'sample rate' is a mistake, and resampling from it explodes

AudioInput = Union[str, os.PathLike, Tuple[np.ndarray, int]]


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a mono float waveform."""
    if sample_rate == target_rate:
        return waveform.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(waveform.astype(np.float32), orig_sr=sample_rate, target_sr=target_rate).astype(np.float32)


def _as_float_waveform(waveform) -> np.ndarray:
    """Samples of any numeric dtype -> float32 in [-1, 1] scale: integer PCM is divided by its full scale
    (unsigned PCM, e.g. 8-bit WAV, is centred first); floats are kept as they are."""
    waveform = np.asarray(waveform)
    if waveform.dtype.kind == "u":
        info = np.iinfo(waveform.dtype)
        return ((waveform.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)).astype(np.float32)
    if waveform.dtype.kind == "i":
        return (waveform.astype(np.float64) / (np.iinfo(waveform.dtype).max + 1)).astype(np.float32)
    if waveform.dtype.kind in "fb":
        return waveform.astype(np.float32)
    raise InvalidAudioError(f"waveform samples must be integers or floats, got dtype {waveform.dtype}")


def audio_duration(path: Union[str, os.PathLike]) -> Optional[float]:
    """Seconds of audio a file declares in its header, without decoding it; None when the header does not say
    (compressed formats libsndfile cannot read, or a damaged file)."""
    import soundfile as sf

    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


def _too_long(seconds: float, max_seconds: float) -> InvalidAudioError:
    return InvalidAudioError(
        f"the audio lasts {seconds:.1f} s; up to {max_seconds:g} s is accepted here. Trim it or split it into shorter clips."
    )


def load_audio(audio: AudioInput, max_seconds: Optional[float] = None) -> np.ndarray:
    """Any supported speech input -> (S,) float32 mono at 16 kHz.

    Args:
        audio: a file path (wav, flac, ogg, mp3 through libsndfile; m4a, webm, the sound track of a video and the
            rest through ffmpeg), or a ``(waveform, sample_rate)`` tuple with waveform (S,), (S, C) or (C, S) of
            floats in [-1, 1] or integer PCM (int16 and the like, scaled by their full range).
        max_seconds: refuse longer audio; for a file whose header gives its length (WAV, FLAC, OGG, ...) this
            happens before anything is decoded, so an hour-long upload costs nothing.

    Raises:
        InvalidAudioError: missing or undecodable file, no sound track, empty, NaN or infinite samples, or longer
            than ``max_seconds``. The message says what to do.
    """
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        if not os.path.isfile(path):
            raise InvalidAudioError(f"audio file {path!r} does not exist")
        declared = audio_duration(path)
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds)
        import soundfile as sf

        try:
            waveform, sample_rate = sf.read(path, dtype="float32", always_2d=True)
            waveform = waveform.mean(axis=1)
        except (sf.LibsndfileError, RuntimeError, TypeError):
            waveform, sample_rate = extract_audio(path, SAMPLE_RATE), SAMPLE_RATE
    elif isinstance(audio, tuple) and len(audio) == 2:
        try:
            sample_rate = int(audio[1])
        except (TypeError, ValueError) as exc:
            raise InvalidAudioError(f"the sample rate must be a whole number of Hz, got {audio[1]!r}") from exc
        waveform = _as_float_waveform(audio[0])
        if waveform.ndim == 2:  # channels on the short axis
            waveform = waveform.mean(axis=0 if waveform.shape[0] < waveform.shape[1] else 1)
        if waveform.ndim != 1:
            raise InvalidAudioError(f"waveform must be (samples,) or (samples, channels), got shape {waveform.shape}")
    else:
        raise InvalidAudioError(f"audio must be a file path or a (waveform, sample_rate) tuple, got {type(audio).__name__}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"the sample rate is {sample_rate} Hz; speech must be sampled at {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz "
            "(16000 or 44100 are usual): re-export the audio"
        )
    if waveform.size == 0:
        raise InvalidAudioError("the audio is empty: record or upload at least a second of speech")
    if max_seconds is not None and waveform.size / sample_rate > max_seconds:
        raise _too_long(waveform.size / sample_rate, max_seconds)
    if not np.all(np.isfinite(waveform)):
        raise InvalidAudioError(
            "the audio contains NaN or infinite samples, so it is damaged: re-export it from the recording program "
            "as WAV or MP3"
        )
    return resample(waveform, sample_rate)


def num_video_frames(num_samples: int, fps: float) -> int:
    """Frames a clip of ``num_samples`` at 16 kHz gets at ``fps``: round(duration x fps), at least 1."""
    return max(1, int(round(num_samples / SAMPLE_RATE * fps)))


class LogMel(nn.Module):
    """Waveform (..., S) at 16 kHz -> log-mel (..., 80, T) at 100 Hz, in torch so it runs inside training too."""

    def __init__(self) -> None:
        super().__init__()
        import librosa

        filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=55.0, fmax=7600.0)
        self.register_buffer("filters", torch.from_numpy(filters).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            waveform, N_FFT, HOP_LENGTH, WIN_LENGTH, self.window, center=True, return_complex=True
        ).abs()  # (..., N_FFT/2+1, T)
        mel = self.filters @ spec
        return torch.log(mel.clamp_min(1e-5))


def frame_windows(features: torch.Tensor, num_frames: int, fps: float, window: int, feature_rate: float = MEL_RATE) -> torch.Tensor:
    """Slice a ``window``-step feature window centred on every video frame, edge-padded.

    Args:
        features: (F, T) features at ``feature_rate`` Hz.

    Returns:
        (num_frames, F, window).
    """
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps * feature_rate  # in feature steps
    starts = torch.round(centres - window / 2).long()  # (N,)
    index = (starts[:, None] + torch.arange(window)[None, :]).clamp(0, features.shape[-1] - 1)  # (N, W)
    return features[:, index].permute(1, 0, 2)  # (F, N, W) -> (N, F, W)
