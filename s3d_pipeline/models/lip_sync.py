"""Lip-sync discriminator: T consecutive lower-face crops vs the matching mel window (SyncNet / Wav2Lip style).

Used three ways: frozen, as the generator's L_sync; as the pipeline's and the app's lip-sync score; and as
the evaluation's Sync metric (confidence = median minus minimum audio-visual distance over +-15 frame
offsets, offset = the argmin). Embeddings are L2-normalised, so distances lie in [0, 2] and confidences are on
a smaller scale than the official SyncNet's: compare them with the ground-truth video's, never with published
LSE-C numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from ..audio import MEL_RATE, LogMel
from ..rendering.framing import LOWER_FACE_BOX
from .layers import ConvBlock


@dataclass
class SyncScore(BaseOutput):
    """Attributes:
    confidence: median minus minimum of the mean distance over offsets (higher = more clearly in sync).
    offset: frames by which the audio should move to best match the video (0 = in sync).
    distances: (2 * max_offset + 1,) mean distance per offset, offsets from -max_offset to +max_offset.
    per_window: (W,) distance at offset 0 for each window start (sync over time).
    """

    confidence: float
    offset: int
    distances: torch.Tensor
    per_window: torch.Tensor


def _encoder(in_channels: int, widths, strides, embed_dim: int, flat_size: int) -> nn.Sequential:
    """Five conv blocks at ``strides``, flattened into a linear embedding."""
    layers, c = [], in_channels
    for w, s in zip(widths, strides):
        layers.append(ConvBlock(c, w, stride=s))
        c = w
    layers += [nn.Flatten(), nn.Linear(c * flat_size, embed_dim)]
    return nn.Sequential(*layers)


class LipSyncDiscriminator(ModelMixin, ConfigMixin):
    """Args:
    num_frames: T lower-face crops per window (5, as SyncNet).
    crop_size: (h, w) of a lower-face crop.
    mel_steps: mel steps per window (20 = 0.2 s at 100 Hz).
    embed_dim: size of both embeddings.
    channels: widths of the five conv blocks of each encoder.
    lower_face_box: normalized (x0, y0, x1, y1) of the crop in an aligned frame.
    """

    @register_to_config
    def __init__(
        self,
        num_frames: int = 5,
        crop_size: Tuple[int, int] = (64, 96),
        mel_steps: int = 20,
        n_mels: int = 80,
        embed_dim: int = 128,
        lower_face_box: Tuple[float, float, float, float] = LOWER_FACE_BOX,
        channels: Tuple[int, ...] = (32, 64, 96, 128, 128),
    ) -> None:
        super().__init__()
        h, w = crop_size
        self.visual = _encoder(3 * num_frames, channels, [1, 2, 2, 2, 2], embed_dim, (h // 16) * (w // 16))
        self.audio = _encoder(1, channels, [1, 2, 2, (2, 1), 2], embed_dim, (-(-n_mels // 16)) * (-(-mel_steps // 8)))
        self.mel = LogMel()

    def crop_lower_face(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> (N, 3, h, w) lower-face crops."""
        x0, y0, x1, y1 = self.config.lower_face_box
        hgt, wid = frames.shape[-2:]
        crop = frames[..., int(y0 * hgt) : int(y1 * hgt), int(x0 * wid) : int(x1 * wid)]
        return F.interpolate(crop, size=tuple(self.config.crop_size), mode="bilinear", align_corners=False, antialias=True)

    def embed_video(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, h, w) crops in [0, 1] -> (B, D) unit embeddings."""
        x = crops.flatten(1, 2) * 2 - 1  # (B, T*3, h, w)
        return F.normalize(self.visual(x), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, mel_steps) log-mel -> (B, D) unit embeddings."""
        x = (mel[:, None] + 5.0) / 5.0  # rough standardisation of log-mel
        return F.normalize(self.audio(x), dim=-1)

    def forward(self, crops: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of crops (B, T, 3, h, w) and mel windows (B, n_mels, mel_steps) -> (B,), or each
        window's C candidate audio windows (B, C, n_mels, mel_steps) -> (B, C) (the video embedded once)."""
        video = self.embed_video(crops)  # (B, D)
        audio = self.embed_audio(mel.flatten(0, -3)).reshape(*mel.shape[:-2], -1)  # (B[, C], D)
        if audio.dim() == 3:
            video = video[:, None]  # (B, 1, D) against (B, C, D)
        return (video * audio).sum(-1)

    def mel_windows(self, mel: torch.Tensor, starts: torch.Tensor, fps: float) -> torch.Tensor:
        """Mel windows (W, n_mels, mel_steps) starting at video frames ``starts`` (W,); zero-padded outside."""
        first = torch.round(starts.double() / fps * MEL_RATE).long()
        index = first[:, None] + torch.arange(self.config.mel_steps)  # (W, steps)
        valid = (index >= 0) & (index < mel.shape[-1])
        windows = mel[:, index.clamp(0, mel.shape[-1] - 1)].permute(1, 0, 2)  # (F, W, steps) -> (W, F, steps)
        return torch.where(valid[:, None, :], windows, torch.full_like(windows, mel.min()))

    def frame_windows(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N - T + 1, T, 3, h, w) sliding windows of T crops."""
        t = self.config.num_frames
        return crops.unfold(0, t, 1).permute(0, 4, 1, 2, 3)

    @torch.no_grad()
    def score(self, frames: torch.Tensor, waveform: torch.Tensor, fps: float, max_offset: int = 15, batch_size: int = 64) -> Optional[SyncScore]:
        """SyncNet-style confidence and AV offset of a video.

        Args:
            frames: (N, 3, H, W) aligned frames in [0, 1].
            waveform: (S,) 16 kHz speech of the same clip.
        Returns:
            None when the clip has fewer than ``num_frames`` frames.
        """
        t = self.config.num_frames
        if frames.shape[0] < t:
            return None
        crops = self.crop_lower_face(frames.float())
        windows = self.frame_windows(crops)  # (W, T, 3, h, w)
        video = torch.cat([self.embed_video(w) for w in windows.split(batch_size)])  # (W, D)
        return self.score_embeddings(video, waveform, fps, max_offset, batch_size)

    def score_embeddings(self, video: torch.Tensor, waveform: torch.Tensor, fps: float, max_offset: int = 15, batch_size: int = 64) -> SyncScore:
        """:meth:`score` from the video windows' embeddings (W, D), however they were gathered (a streamed video
        embeds its windows chunk by chunk): the speech's windows at every offset within ±``max_offset`` frames, the
        mean distance per offset, and its median minus its minimum as the confidence. Tensors come back on the CPU."""
        num_windows = video.shape[0]
        mel = self.mel(waveform.float().to(video.device))
        starts = torch.arange(-max_offset, num_windows + max_offset)
        audio_windows = self.mel_windows(mel, starts, fps)
        audio = torch.cat([self.embed_audio(a) for a in audio_windows.split(batch_size)])  # (W + 2*max_offset, D)
        distances = torch.stack(
            [(video - audio[o : o + num_windows]).norm(dim=-1) for o in range(2 * max_offset + 1)]
        )  # (offsets, W)
        mean = distances.mean(dim=1)
        best = int(mean.argmin())
        return SyncScore(
            confidence=float(mean.median() - mean.min()),
            offset=best - max_offset,
            distances=mean.cpu(),
            per_window=distances[max_offset].cpu(),
        )
