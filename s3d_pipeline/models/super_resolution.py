"""Super-resolution: coarse feature render -> final frame, with detail, outer face and background taken from the
source image (ours: source features at every scale, and a predicted mask compositing onto the source).

The source's mouth is hidden from the super-resolution (ours, as Wav2Lip masks the lower half of its reference):
given the source's own mouth, the network learns to copy it through its mask, which is the lowest-loss answer
while the render is still blurry, and then no gradient reaches the deformation field and the speech is ignored
(seen in training: the audio features collapsed to a constant). With the mouth hidden, the mouth can only come
from the render, whose only way to match the target's mouth is the speech-driven displacement.

Training composites onto the hidden source too, so the mask cannot learn to let the source's mouth through. At
inference the pipeline composites onto the whole source (the features still come from the hidden one): where the
mask stays below 1 inside the hidden region, mostly the chin below the rendered face, the source's own pixels
show instead of grey. On 4 held-out clips this raised SSIM 0.881 -> 0.891 and mouth-opening correlation 0.30 ->
0.50, with shuffled speech still uncorrelated (0.06): the mouth is not copied from the source.

With ``warp_channels`` > 0 (ours, where the paper regenerates every pixel), the frame also draws on the source's
own pixels moved by the render's 3D correspondence (:mod:`s3d_pipeline.rendering.warp`): a light head at the output
resolution reads the trunk's last features beside the warped source and the source's visibility, and predicts a
residual and a per-pixel blend between the warped source and the generated content. The blend is multiplied by the
visibility, so where the source does not see a point (a turned head's far cheek) the frame falls back to generated
content. The warp samples the source with its mouth hidden, like everything else the network reads of the source:
the source's mouth cannot be carried into an open mouth, so the mouth still comes only from the speech-driven
render (the rule that kept the speech in play above). The head's output layer starts at zero and the blend's
bias at ``warp_blend_bias`` (sigmoid(-8) = 3e-4), so a network given this head renders today's frames (within a
uint8 level) until it learns to use it. The blend logit is scaled by ``warp_blend_gain``: Adam moves a weight by
about its learning rate per step, so at 1e-4 an unscaled logit needed thousands of steps to climb the 8 units of
its bias (measured: the blend still ~0 after 500 steps of a continuation); scaled by 40 it can in a few hundred.
The head also runs at twice the trunk's resolution (512² from 64² rays), where the warped source brings the
photo's detail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .layers import ConvBlock, per_frame


@dataclass
class SuperResolutionOutput(BaseOutput):
    """Attributes:
    image: (B, 3, H, W) final frame in [-1, 1].
    mask: (B, 1, H, W) where the frame shows the rendered head (1) rather than the source (0).
    """

    image: torch.Tensor
    mask: torch.Tensor


class SuperResolution(ModelMixin, ConfigMixin):
    """x4 (two x2 stages) upsampler conditioned on the source image.

    Args:
        feature_dim: F of the coarse render (first three channels RGB).
        channels: widths at the coarse, x2 and x4 resolutions.
        source_channels: widths of the source-image encoder at x4, x2 and coarse resolution.
        hidden_source_box: (x0, y0, x1, y1) in [0, 1] of the aligned frame: the source is hidden (set to mid-grey)
            inside the ellipse inscribed in this box before the super-resolution sees it, around the mouth over the
            poses it is trained on (see the module docstring); None shows the whole source.
        warp_channels: width of the warp head (0: no head, frames from the render alone).
        warp_blend_bias: the blend logit's offset, so that the blend starts near 0 (the render alone).
        warp_blend_gain: the head's blend output is multiplied by this before the offset (see the module docstring).
    """

    @register_to_config
    def __init__(
        self,
        feature_dim: int = 32,
        channels: Tuple[int, int, int] = (96, 48, 24),
        source_channels: Tuple[int, int, int] = (16, 32, 48),
        hidden_source_box: Optional[Tuple[float, float, float, float]] = None,
        warp_channels: int = 0,
        warp_blend_bias: float = -8.0,
        warp_blend_gain: float = 40.0,
    ) -> None:
        super().__init__()
        s0, s1, s2 = source_channels
        c0, c1, c2 = channels
        self.source_encoder = nn.ModuleList([ConvBlock(3, s0), ConvBlock(s0, s1, stride=2), ConvBlock(s1, s2, stride=2)])
        self.coarse = nn.Sequential(ConvBlock(feature_dim + 1 + s2, c0), ConvBlock(c0, c0))
        self.up1 = ConvBlock(c0 + s1, c1)
        self.up2 = ConvBlock(c1 + s0, c2)
        self.out = nn.Conv2d(c2, 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if warp_channels:
            # Reads [trunk features (c2) | warped source (3) | visibility (1)] -> [residual (3) | blend logit (1)]: a
            # 1x1 mixing then a 3x3 for spatial context (a 3x3 first layer cost 4x as much: 12 ms a 256² frame here).
            self.warp_head = nn.Sequential(nn.Conv2d(c2 + 4, warp_channels, 1), nn.SiLU(), nn.Conv2d(warp_channels, 4, 3, padding=1))
            nn.init.zeros_(self.warp_head[2].weight)
            nn.init.zeros_(self.warp_head[2].bias)

    @property
    def warps(self) -> bool:
        """Whether frames draw on the warped source (see the module docstring)."""
        return self.config.warp_channels > 0

    @property
    def conditioned_blocks(self) -> Tuple[Tuple[ConvBlock, int], ...]:
        """The blocks that read the source's features beside the per-frame input (coarse, x2, x4 stages), each with
        the number of per-frame input channels that come first: their convolution is linear in the two parts, so a
        per-identity share can be computed once (the fast engine's split convolutions)."""
        c0, c1, _ = self.config.channels
        return (self.coarse[0], self.config.feature_dim + 1), (self.up1, c0), (self.up2, c1)

    @property
    def coarse_refine(self) -> ConvBlock:
        """The coarse stage's second block, which reads only the first one's output."""
        return self.coarse[1]

    def hide_mouth(self, source: torch.Tensor) -> torch.Tensor:
        """The aligned source (B, 3, H, W) in [-1, 1] as the super-resolution sees it: the ellipse inscribed in
        ``hidden_source_box`` set to 0 (an ellipse, so little of the background and neck beside the mouth is hidden).
        Apply it to the whole frame, before any crop."""
        return source * self.shown(*source.shape[-2:], device=source.device)

    def shown(self, height: int, width: int, device=None) -> torch.Tensor:
        """(1, 1, H, W): 1 where the super-resolution sees the source, 0 inside the hidden ellipse (see
        :meth:`hide_mouth`)."""
        box = self.config.hidden_source_box
        if box is None:
            return torch.ones(1, 1, height, width, device=device)
        x0, y0, x1, y1 = box
        y = (torch.arange(height, device=device) + 0.5) / height  # pixel centres in [0, 1]
        x = (torch.arange(width, device=device) + 0.5) / width
        inside = ((x[None, :] - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((y[:, None] - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 <= 1  # (H, W)
        return (~inside).float()[None, None]

    def encode_source(self, source: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """source (B, 3, H, W) in [-1, 1], as :meth:`hide_mouth` gives it -> its features at x4, x2 and coarse
        resolution (computed once per identity)."""
        feats = []
        x = source
        for block in self.source_encoder:
            x = block(x)
            feats.append(x)
        return tuple(feats)

    def forward(
        self,
        features: torch.Tensor,
        opacity: torch.Tensor,
        source: torch.Tensor,
        source_features: Optional[Tuple[torch.Tensor, ...]] = None,
        warped: Optional[torch.Tensor] = None,
        visibility: Optional[torch.Tensor] = None,
    ) -> SuperResolutionOutput:
        """features (N, F, r, r), opacity (N, 1, r, r), source (1 or N, 3, S, S) -> the frame (N, 3, S, S), S = 4r
        (or 8r with the warp head). ``source_features`` are the (hidden) source's at 4r (computed from ``source`` if None);
        ``warped`` (N, 3, S, S) and ``visibility`` (N, 1, S, S) feed the warp head (needed when it exists)."""
        n = features.shape[0]
        src0, src1, src2 = source_features if source_features is not None else self.encode_source(source)
        x = self.coarse(torch.cat([features, opacity, per_frame(src2, n)], dim=1))
        x = self.up1(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), per_frame(src1, n)], dim=1))
        x = self.up2(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), per_frame(src0, n)], dim=1))
        return self.finish(x, features, opacity, source, warped, visibility)

    def finish(
        self,
        x: torch.Tensor,
        features: torch.Tensor,
        opacity: torch.Tensor,
        source: torch.Tensor,
        warped: Optional[torch.Tensor] = None,
        visibility: Optional[torch.Tensor] = None,
    ) -> SuperResolutionOutput:
        """The trunk's last features x (N, c2, 4r, 4r) -> the frame over the source (1 or N, 3, S, S): the output
        convolution, the warp head when there is one, and the compositing. Both render engines end here."""
        out = self.out(x)
        head = None
        if self.warps:
            if warped is None or visibility is None:
                raise ValueError("this super-resolution blends in the warped source: pass warped and visibility")
            size = warped.shape[-2:]
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            head = self.warp_head(torch.cat([x, warped.to(x.dtype), visibility.to(x.dtype)], dim=1))
        return self.compose(out, features, opacity, source, head, warped, visibility, self.config.warp_blend_bias, self.config.warp_blend_gain)

    @staticmethod
    def compose(
        out: torch.Tensor,
        features: torch.Tensor,
        opacity: torch.Tensor,
        source: torch.Tensor,
        head: Optional[torch.Tensor] = None,
        warped: Optional[torch.Tensor] = None,
        visibility: Optional[torch.Tensor] = None,
        blend_bias: float = 0.0,
        blend_gain: float = 1.0,
    ) -> SuperResolutionOutput:
        """The output convolution's (N, 4, 4r, 4r) residual and mask logit + the coarse render -> the frame over the
        source (1 or N, 3, S, S); with the warp head's (N, 4, S, S) residual and blend logit, the generated face is
        blended with the warped source (N, 3, S, S) by ``visibility * sigmoid(blend_gain * logit + blend_bias)`` first.

        Always in float32, also under bf16 autocast: in bf16 the opacity's clamp to 1 - 1e-4 rounds to 1, whose
        logit is infinite (training saw NaN gradients from it)."""
        with torch.autocast(device_type=out.device.type, enabled=False):
            out, features, opacity, source = out.float(), features.float(), opacity.float(), source.float()
            size = source.shape[-2:]
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            residual, mask_logit = out.split([3, 1], dim=1)
            # RGB and opacity upsampled as one 4-channel image (one contiguous pass instead of two strided ones).
            coarse = torch.cat([features[:, :3] * 2 - 1, opacity], dim=1)  # (N, 4, r, r)
            coarse_rgb, coarse_alpha = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).split([3, 1], dim=1)
            # The mask starts as the render's opacity and learns to cover the source head wherever the pose moved it.
            mask = torch.sigmoid(torch.logit(coarse_alpha.clamp(1e-4, 1 - 1e-4)) + mask_logit)
            face = coarse_rgb + residual
            if head is not None:
                head_residual, blend_logit = head.float().split([3, 1], dim=1)
                blend = visibility.float() * torch.sigmoid(blend_gain * blend_logit + blend_bias)
                face = face + head_residual
                face = torch.addcmul(face, blend, warped.float() - face)
            # mask * face + (1 - mask) * source, in one fused multiply-add.
            source = per_frame(source, out.shape[0])
            image = torch.addcmul(source, mask, face - source)
        return SuperResolutionOutput(image=image, mask=mask)
