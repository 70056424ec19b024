"""Audio encoder: a per-frame window of speech features -> audio features a_dri (tokens and a pooled vector)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from ..audio import MEL_RATE, N_MELS, SAMPLE_RATE, LogMel, frame_windows

SSL_FRONTENDS = ("wav2vec2", "hubert")


@dataclass
class AudioEncoderOutput(BaseOutput):
    """Attributes:
    tokens: (N, T, D) a_dri as a short sequence, the keys/values of the cross-modal attention.
    pooled: (N, D) a_dri averaged over time.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor


class AudioEncoder(ModelMixin, ConfigMixin):
    """A 1D fully convolutional network over a window of speech features centred on each video frame.

    Front ends (ours, PAPER.md): ``"mel"`` (default) reads 80-bin log-mel at 100 Hz, ``window`` = 16 steps
    (0.16 s). ``"wav2vec2"`` / ``"hubert"`` run a ``transformers`` speech model (50 Hz, ``window`` steps of its
    hidden states): from ``frontend_pretrained`` (a Hub id or folder, needs the weights) or, for tests and
    training from scratch, a randomly initialised model built from ``frontend_config``.

    Args:
        frontend: "mel", "wav2vec2" or "hubert".
        window: feature steps per frame window.
        channels: width of the 1D convolutions.
        feature_dim: D, the size of a_dri.
        num_tokens: T, length of the token sequence (the window is pooled to it).
        normalize: standardise the front end's features over the whole utterance (ours): raw log-mel sits around
            -7 with a spread of about 2.6, so without it a constant offset dominates the first convolution's output
            and the frame-to-frame variation that carries the speech is a small part of a_dri. Per utterance, not
            per window, so silence stays quieter than speech; the spread is floored at 1 so silence is not amplified.
    """

    @register_to_config
    def __init__(
        self,
        frontend: str = "mel",
        window: int = 16,
        channels: int = 128,
        feature_dim: int = 128,
        num_tokens: int = 4,
        frontend_pretrained: Optional[str] = None,
        frontend_config: Optional[dict] = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if frontend == "mel":
            in_features = N_MELS
            self.mel = LogMel()
        elif frontend in SSL_FRONTENDS:
            self.ssl = self._build_ssl(frontend, frontend_pretrained, frontend_config)
            in_features = self.ssl.config.hidden_size
        else:
            raise ValueError(f"frontend must be 'mel', 'wav2vec2' or 'hubert', got {frontend!r}")
        self.conv = nn.Sequential(
            nn.Conv1d(in_features, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, feature_dim, 3, padding=1),
            nn.AdaptiveAvgPool1d(num_tokens),
        )
        self.norm = nn.LayerNorm(feature_dim)

    @staticmethod
    def _build_ssl(frontend: str, pretrained: Optional[str], config: Optional[dict]) -> nn.Module:
        import transformers

        model_cls = transformers.Wav2Vec2Model if frontend == "wav2vec2" else transformers.HubertModel
        config_cls = transformers.Wav2Vec2Config if frontend == "wav2vec2" else transformers.HubertConfig
        if pretrained is not None:
            return model_cls.from_pretrained(pretrained)
        return model_cls(config_cls(**(config or {})))

    @property
    def feature_rate(self) -> float:
        """Feature steps per second of the front end."""
        return MEL_RATE if self.config.frontend == "mel" else SAMPLE_RATE / 320.0

    def speech_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """(S,) 16 kHz waveform -> (F, T) front-end features at :attr:`feature_rate`."""
        if self.config.frontend == "mel":
            features = self.mel(waveform)
        else:
            normalised = (waveform - waveform.mean()) / (waveform.std() + 1e-7)
            features = self.ssl(normalised[None]).last_hidden_state[0].transpose(0, 1)  # (1, T, F) -> (F, T)
        if self.config.normalize:
            features = (features - features.mean()) / features.std().clamp_min(1.0)
        return features

    def frame_windows(self, waveform: torch.Tensor, num_frames: int, fps: float) -> torch.Tensor:
        """(S,) waveform -> (N, F, window) feature windows, one per video frame."""
        return frame_windows(self.speech_features(waveform), num_frames, fps, self.config.window, self.feature_rate)

    def forward(self, windows: torch.Tensor) -> AudioEncoderOutput:
        """windows: (N, F, W) -> a_dri."""
        tokens = self.norm(self.conv(windows).transpose(1, 2))  # (N, D, T) -> (N, T, D)
        return AudioEncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1))
