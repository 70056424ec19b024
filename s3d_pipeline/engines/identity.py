"""The encoded portrait: what every render engine reads of a source face, computed once (the single-shot "fit")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

import torch

from ..frames import resize
from ..models.deformation_field import IdentitySlots
from ..models.layers import per_frame

if TYPE_CHECKING:
    from ..face import PreparedPortrait


@dataclass(eq=False)  # hashed by object: render engines key their per-identity caches on it
class Identity:
    """Everything derived from the source portrait, once per identity; batch B of identities (1 at inference).

    Attributes:
        source: (B, 3, S, S) aligned source in [-1, 1] at the output resolution S, which frames are composited onto
            (the whole source at inference; training composites onto the source with its mouth hidden, see
            :class:`~s3d_pipeline.models.super_resolution.SuperResolution`).
        hidden_source: (B, 3, T, T) the source as the super-resolution's trunk sees it (T = 4 x the ray grid), its
            mouth hidden.
        triplanes: multi-scale tri-plane, per scale (B, 3, C, H, W).
        slots: F_agg and its assignment over the face (None for deformation modes without slots).
        source_features: the super-resolution's features of ``hidden_source``.
        warp_source: (B, 4, S, S) what the render's correspondence warps (:mod:`s3d_pipeline.rendering.warp`): the
            source with its mouth hidden at the output resolution, and a channel that is 1 where the source is shown
            and 0 in the hidden mouth; None when the super-resolution does not warp.
        portrait: the prepared photo and how to paste results back into it (None for a training batch).
    """

    source: torch.Tensor
    hidden_source: torch.Tensor
    triplanes: Tuple[torch.Tensor, ...]
    slots: Optional[IdentitySlots]
    source_features: Tuple[torch.Tensor, ...]
    warp_source: Optional[torch.Tensor] = None
    portrait: Optional["PreparedPortrait"] = None

    @property
    def resolution(self) -> int:
        """S, the output frames' size."""
        return self.source.shape[-1]

    def for_frames(self, n: int) -> "Identity":
        """The identity's tensors as a batch of n frames (:func:`per_frame`), for the networks that take one
        identity per frame."""
        slots = self.slots
        if slots is not None:
            slots = IdentitySlots(slots=per_frame(slots.slots, n), assignment=per_frame(slots.assignment, n), visual_map=per_frame(slots.visual_map, n))
        return Identity(
            source=per_frame(self.source, n),
            hidden_source=per_frame(self.hidden_source, n),
            triplanes=tuple(per_frame(p, n) for p in self.triplanes),
            slots=slots,
            source_features=tuple(per_frame(f, n) for f in self.source_features),
            warp_source=None if self.warp_source is None else per_frame(self.warp_source, n),
            portrait=self.portrait,
        )


def encode_identity(
    appearance_encoder,
    deformation_field,
    super_resolution,
    source: torch.Tensor,
    trunk_resolution: int,
    composite_onto_hidden: bool = False,
    portrait: Optional["PreparedPortrait"] = None,
) -> Identity:
    """Aligned sources (B, 3, S, S) in [-1, 1] -> their :class:`Identity` (differentiable: training calls it).

    The networks read the source at ``trunk_resolution`` (4 x the ray grid; resampled when S differs); frames are
    composited onto it at S. ``composite_onto_hidden``: frames are composited onto the source with its mouth hidden,
    as in training, so that the mask cannot learn to let the source's mouth through; inference composites onto the
    whole source.
    """
    trunk = resize(source, trunk_resolution)
    encoded = appearance_encoder(trunk)
    hidden = super_resolution.hide_mouth(trunk)
    hidden_full = super_resolution.hide_mouth(source)
    warp_source = None
    if super_resolution.warps:
        shown = super_resolution.shown(*source.shape[-2:], device=source.device).to(source.dtype)
        warp_source = torch.cat([hidden_full, shown.expand(source.shape[0], -1, -1, -1)], dim=1)  # (B, 4, S, S)
    return Identity(
        source=hidden_full if composite_onto_hidden else source,
        hidden_source=hidden,
        triplanes=encoded.triplanes,
        slots=deformation_field.encode_identity(encoded.visual_tokens),
        source_features=super_resolution.encode_source(hidden),
        warp_source=warp_source,
        portrait=portrait,
    )
