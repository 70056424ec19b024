"""Cross-modal Facial Deformation Field: where and how far speech moves each point of the face.

Slot Attention pools the identity's visual tokens into a few slots (F_agg). Multi-head cross-attention with
the slots as queries and the audio tokens as keys/values gives the cross-modal correlation
F_cm = MHCA(F_agg, a_dri). Mapped back onto the face through the slot assignment, F_cm becomes a spatial
condition; a U-Net in plane space (ours, for speed: once per frame, not per point) turns tri-plane features,
F_cm and a_dri into deformation feature planes, and a small MLP of the features sampled at a point and its
position gives the displacement Δx = Deform(x, a_dri, F_cm).

The paper's ablations are values of ``mode``:
  - ``"cross_attention"`` (default, full model);
  - ``"concat"``: no cross-attention, the U-Net sees visual features concatenated with a_dri;
  - ``"naive"``: Δx from position and audio only (no visual features);
  - ``"none"``: Δx = 0.
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

from ..rendering.triplane import plane_coordinates, sample_planes
from .layers import ConvBlock, mlp, per_frame, positional_encoding

MODES = ("cross_attention", "concat", "naive", "none")


@dataclass
class IdentitySlots(BaseOutput):
    """Attributes:
    slots: (B, K, D) F_agg.
    assignment: (B, K, L) how much each of the L visual tokens belongs to each slot (sums to 1 over K).
    visual_map: (B, Dv, g, g) the visual tokens as a map (used by the ``concat`` ablation).
    """

    slots: torch.Tensor
    assignment: torch.Tensor
    visual_map: torch.Tensor


@dataclass
class DeformationFieldOutput(BaseOutput):
    """Attributes:
    planes: (N, 3, Cd, R, R) deformation feature planes (None for ``naive`` and ``none``).
    audio: (N, A) pooled a_dri, read per point by the ``naive`` variant.
    attention_map: (N, g, g) in [0, 1]: cross-modal attention mapped onto the face (None without MHCA).
    cross_attention: (N, K, T) attention of each slot over the audio tokens (None without MHCA).
    """

    planes: Optional[torch.Tensor]
    audio: torch.Tensor
    attention_map: Optional[torch.Tensor] = None
    cross_attention: Optional[torch.Tensor] = None


class SlotAttention(nn.Module):
    """Slot Attention (Locatello et al., 2020) with learned, deterministic initial slots."""

    def __init__(self, input_dim: int, slot_dim: int, num_slots: int, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.initial_slots = nn.Parameter(torch.randn(1, num_slots, slot_dim) * slot_dim**-0.5)
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.to_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.mlp = mlp(slot_dim, 2 * slot_dim, slot_dim)

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L, Din) -> slots (B, K, D), assignment (B, K, L) normalised over slots."""
        batch = tokens.shape[0]
        tokens = self.norm_inputs(tokens)
        k, v = self.to_k(tokens), self.to_v(tokens)  # (B, L, D)
        slots = self.initial_slots.expand(batch, -1, -1)
        scale = k.shape[-1] ** -0.5
        for _ in range(self.iterations):
            q = self.to_q(self.norm_slots(slots))
            assignment = torch.softmax(torch.einsum("bkd,bld->bkl", q, k) * scale, dim=1)  # slots compete per token
            weights = assignment / (assignment.sum(dim=-1, keepdim=True) + 1e-8)
            updates = torch.einsum("bkl,bld->bkd", weights, v)
            slots = self.gru(updates.reshape(-1, updates.shape[-1]), slots.reshape(-1, slots.shape[-1])).reshape_as(slots)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, assignment


class PlaneUNet(nn.Module):
    """A three-level U-Net over (planes of) feature maps: (B, Cin, R, R) -> (B, Cout, R, R)."""

    def __init__(self, in_channels: int, channels: Tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.enc0 = ConvBlock(in_channels, c0)
        self.enc1 = ConvBlock(c0, c1, stride=2)
        self.mid = nn.Sequential(ConvBlock(c1, c2, stride=2), ConvBlock(c2, c2))
        self.dec1 = ConvBlock(c2 + c1, c1)
        self.dec0 = ConvBlock(c1 + c0, c0)
        self.out = nn.Conv2d(c0, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_first_conv(self.enc0.conv(x))

    def from_first_conv(self, convolved: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """The U-Net after its first convolution ``enc0.conv``: (B, c0, R, R) -> (B, Cout, R, R). The seam exists
        because that convolution is linear in its input channels: the fast engine computes it as a cached
        per-identity part plus a per-frame part (``inplace``: its activation may overwrite the norm's output)."""
        e0 = self.enc0.finish(convolved, inplace=inplace)
        e1 = self.enc1(e0)
        m = self.mid(e1)
        d1 = self.dec1(torch.cat([F.interpolate(m, size=e1.shape[-2:], mode="nearest"), e1], dim=1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="nearest"), e0], dim=1))
        return self.out(d0)


class CrossModalDeformationField(ModelMixin, ConfigMixin):
    """Args:
    mode: which deformation variant (see the module docstring).
    visual_dim: Dv of the appearance encoder's visual tokens (3 x plane_channels).
    plane_channels: C of the appearance tri-plane (the U-Net reads the summed multi-scale planes).
    audio_dim: A of a_dri.
    slot_dim, num_slots, slot_iterations: slot attention.
    num_heads: heads of the cross-modal attention.
    unet_resolution: R of the deformation planes.
    unet_channels: widths of the U-Net levels.
    deform_channels: Cd of the deformation planes.
    hidden_dim: width of the per-point displacement MLP.
    position_frequencies: NeRF positional encoding of x in the displacement MLP.
    max_displacement: |Δx| bound per axis (tanh-scaled), in tri-plane-frame units.
    triplane_extent: half-size of the cube the planes cover (same as the renderer's).
    """

    @register_to_config
    def __init__(
        self,
        mode: str = "cross_attention",
        visual_dim: int = 96,
        plane_channels: int = 32,
        audio_dim: int = 128,
        slot_dim: int = 96,
        num_slots: int = 6,
        slot_iterations: int = 3,
        num_heads: int = 4,
        unet_resolution: int = 32,
        unet_channels: Tuple[int, int, int] = (48, 64, 96),
        deform_channels: int = 16,
        hidden_dim: int = 64,
        position_frequencies: int = 4,
        max_displacement: float = 0.08,
        triplane_extent: float = 0.35,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        position_dim = 3 * (1 + 2 * position_frequencies)
        if mode in ("cross_attention", "concat"):
            self.slot_attention = SlotAttention(visual_dim, slot_dim, num_slots, slot_iterations)
            self.visual_proj = nn.Conv2d(visual_dim, slot_dim, 1)
            self.cross_attention = nn.MultiheadAttention(slot_dim, num_heads, kdim=audio_dim, vdim=audio_dim, batch_first=True)
            self.plane_embedding = nn.Parameter(torch.zeros(3, 8))
            self.unet = PlaneUNet(plane_channels + slot_dim + audio_dim + 8, tuple(unet_channels), deform_channels)
            point_in = deform_channels + position_dim
        else:
            point_in = audio_dim + position_dim
        if mode != "none":
            self.displacement_mlp = mlp(point_in, hidden_dim, 3, layers=3)
            nn.init.zeros_(self.displacement_layers[-1].weight)  # start from Δx = 0
            nn.init.zeros_(self.displacement_layers[-1].bias)
        else:
            # No weights at all: an empty buffer gives the pipeline a device to read and save_pretrained a tensor to write.
            self.register_buffer("device_anchor", torch.zeros(0))

    @property
    def uses_planes(self) -> bool:
        return self.config.mode in ("cross_attention", "concat")

    @property
    def unet_input_channels(self) -> Tuple[int, int, int]:
        """Channels of the U-Net's input, in the order :meth:`forward` concatenates them: the identity's planes (C),
        the per-frame condition and a_dri (D + A), the plane embedding (8)."""
        cfg = self.config
        return cfg.plane_channels, cfg.slot_dim + cfg.audio_dim, self.plane_embedding.shape[1]

    @property
    def displacement_layers(self) -> Tuple[nn.Linear, nn.Linear, nn.Linear]:
        """The displacement MLP's linear layers (SiLU between them); the first reads
        ``cat([context, positional_encoding(x / triplane_extent)])``, the last gives tanh's input."""
        return self.displacement_mlp[0], self.displacement_mlp[2], self.displacement_mlp[4]

    def encode_identity(self, visual_tokens: torch.Tensor) -> Optional[IdentitySlots]:
        """Once per identity: F_agg from the visual tokens (B, L, Dv) on a square grid."""
        if not self.uses_planes:
            return None
        slots, assignment = self.slot_attention(visual_tokens)
        grid = int(round(visual_tokens.shape[1] ** 0.5))
        visual_map = visual_tokens.transpose(1, 2).reshape(visual_tokens.shape[0], -1, grid, grid)  # (B, Dv, g, g)
        return IdentitySlots(slots=slots, assignment=assignment, visual_map=visual_map)

    def forward(
        self,
        identity: Optional[IdentitySlots],
        triplanes: Tuple[torch.Tensor, ...],
        audio_tokens: torch.Tensor,
        audio_pooled: torch.Tensor,
    ) -> DeformationFieldOutput:
        """Per frame: deformation planes from the identity and a_dri.

        Args:
            identity: from :meth:`encode_identity` (batch 1 or N).
            triplanes: the appearance tri-plane, per scale (B, 3, C, H, W), batch 1 or N.
            audio_tokens: (N, T, A); audio_pooled: (N, A).
        """
        if not self.uses_planes:
            return DeformationFieldOutput(planes=None, audio=audio_pooled)
        n = audio_tokens.shape[0]
        res = self.config.unet_resolution
        condition, attention_map, weights = self.frame_condition(identity, audio_tokens)
        planes = self.identity_planes(triplanes).expand(n, -1, -1, -1, -1)  # (N, 3, C, R, R)
        audio_map = audio_pooled[:, :, None, None].expand(-1, -1, res, res)
        per_frame = torch.cat([condition, audio_map], dim=1)[:, None].expand(-1, 3, -1, -1, -1)  # (N, 3, D+A, R, R)
        plane_id = self.plane_embedding[None, :, :, None, None].expand(n, -1, -1, res, res)  # (N, 3, 8, R, R)
        unet_in = torch.cat([planes, per_frame, plane_id], dim=2).flatten(0, 1)  # (N*3, Cin, R, R)
        deform_planes = self.unet(unet_in).reshape(n, 3, -1, res, res)
        return DeformationFieldOutput(planes=deform_planes, audio=audio_pooled, attention_map=attention_map, cross_attention=weights)

    def identity_planes(self, triplanes: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The multi-scale tri-plane resampled to the U-Net's resolution and summed over scales: (B, 3, C, R, R)."""
        res = self.config.unet_resolution
        planes = sum(
            F.interpolate(p.flatten(0, 1), size=(res, res), mode="bilinear", align_corners=False) for p in triplanes
        )  # (B*3, C, R, R)
        return planes.reshape(-1, 3, *planes.shape[1:])

    def frame_condition(self, identity: IdentitySlots, audio_tokens: torch.Tensor):
        """Per frame: the spatial condition at the U-Net's resolution and, with MHCA, the attention pictures.

        Returns:
            condition (N, D, R, R); attention_map (N, g, g) or None; cross_attention (N, K, T) or None.
        """
        n = audio_tokens.shape[0]
        res = self.config.unet_resolution
        slots, assignment = per_frame(identity.slots, n), per_frame(identity.assignment, n)
        grid = identity.visual_map.shape[-1]
        attention_map = weights = None
        if self.config.mode == "cross_attention":
            correlation, weights = self.cross_attention(slots, audio_tokens, audio_tokens, need_weights=True)  # F_cm: (N, K, D)
            condition = torch.einsum("nkl,nkd->ndl", assignment, correlation).reshape(n, -1, grid, grid)  # (N, D, g, g)
            strength = torch.einsum("nkl,nk->nl", assignment, correlation.norm(dim=-1)).reshape(n, grid, grid)
            attention_map = strength / strength.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None]
        else:  # concat: visual features beside a_dri, no cross-modal attention
            condition = self.visual_proj(identity.visual_map).expand(n, -1, -1, -1)
        condition = F.interpolate(condition, size=(res, res), mode="bilinear", align_corners=False)
        return condition, attention_map, weights

    def displacement(self, field: DeformationFieldOutput, points: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Δx at points (N, M, 3) in the tri-plane frame -> (N, M, 3).

        ``context`` (N, M, Cd): the deformation planes already sampled at ``points`` (the fast renderer samples them
        its own way); by default they are sampled here.
        """
        if self.config.mode == "none":
            return torch.zeros_like(points)
        position = positional_encoding(points / self.config.triplane_extent, self.config.position_frequencies)
        if context is None and self.uses_planes:
            context = sample_planes(field.planes, plane_coordinates(points, self.config.triplane_extent))  # (N, M, Cd)
        elif context is None:
            context = field.audio[:, None, :].expand(-1, points.shape[1], -1)
        raw = self.displacement_mlp(torch.cat([context, position], dim=-1))
        return torch.tanh(raw) * self.config.max_displacement
