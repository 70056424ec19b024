"""The reference engine: the per-frame path with every network evaluated exactly as written (differentiable).

Inference renders the whole ray grid; training renders a window of it (``ray_window``) at the inference ray
spacing, and the super-resolution turns the window into the matching x4 crop against the same crop of the
source, so the networks train at exactly the scale inference runs them at.
"""

from __future__ import annotations

import weakref
from typing import Optional, Tuple

import torch

from ..models.layers import per_frame
from ..rendering.cameras import frontal_cam2world
from .base import FrameBatch, StageTimer, untimed
from .identity import Identity
from .warping import warp_inputs


class ReferenceEngine:
    """The per-frame path over a pipeline's (or a training run's) components; it holds references, not copies."""

    def __init__(self, audio_encoder, deformation_field, renderer, super_resolution) -> None:
        self.audio_encoder = audio_encoder
        self.deformation_field = deformation_field
        self.renderer = renderer
        self.super_resolution = super_resolution
        self._source_depths: "weakref.WeakKeyDictionary[Identity, torch.Tensor]" = weakref.WeakKeyDictionary()

    def prepare(self, identity: Identity) -> Optional[torch.Tensor]:
        """The identity's source-view depth (B, 1, r, r), which tells the warp what the source hides (None when the
        super-resolution does not warp): the undeformed render at the source camera, without gradient. Kept while
        the identity lives."""
        if not self.super_resolution.warps:
            return None
        depth = self._source_depths.get(identity)
        if depth is None:
            with torch.no_grad():
                cams = frontal_cam2world().to(identity.source).expand(identity.source.shape[0], 4, 4)
                depth = self._source_depths[identity] = self.renderer(identity.triplanes, cams).depth
        return depth

    def render(
        self,
        identity: Identity,
        audio_windows: torch.Tensor,
        cam2world: torch.Tensor,
        mouth_amplitude: float = 1.0,
        *,
        generator: Optional[torch.Generator] = None,
        ray_window: Optional[Tuple[int, int, int]] = None,
        timer: StageTimer = untimed,
    ) -> FrameBatch:
        """See :class:`~s3d_pipeline.engines.base.RenderEngine`. An identity batch of B serves n frames in B runs of
        n / B consecutive frames.

        Args:
            generator: jitters the ray samples within their bins (reproducible for a seed); without it, samples
                sit at bin centres.
            ray_window: ``(top, left, p)`` in rays: render only that window of the ray grid; the frames cover pixels
                [s top, s (top + p)) x [s left, s (left + p)), s = S / r frame pixels per ray, and are composited onto
                that crop of the source.
        """
        n = audio_windows.shape[0]
        df = self.deformation_field
        # The networks take one identity, or one per frame.
        frames_identity = identity if identity.source.shape[0] == 1 else identity.for_frames(n)
        with timer("audio"):
            a_dri = self.audio_encoder(audio_windows)
        with timer("deformation"):
            field = df(frames_identity.slots, frames_identity.triplanes, a_dri.tokens, a_dri.pooled)
        displacement = None
        if df.config.mode != "none":
            displacement = lambda points: mouth_amplitude * df.displacement(field, points)  # noqa: E731
        with timer("rendering"):
            coarse = self.renderer(frames_identity.triplanes, cam2world, displacement, generator=generator, ray_window=ray_window)
        with timer("super_resolution"):
            source, source_features = self._source(identity, ray_window)  # per identity: a crop's features once each
            warped = visibility = None
            if self.super_resolution.warps:
                resolution = self.renderer.config.ray_resolution
                warped, visibility = warp_inputs(identity, coarse.canonical, coarse.opacity, self.prepare(identity), resolution, ray_window)
            final = self.super_resolution(
                coarse.features, coarse.opacity, per_frame(source, n), tuple(per_frame(f, n) for f in source_features), warped, visibility
            )
        return FrameBatch(
            image=final.image,
            depth=coarse.depth[:, 0],
            attention=field.attention_map,
            coarse_rgb=coarse.features[:, :3],
            opacity=coarse.opacity,
            displacement=coarse.displacement,
        )

    def _source(self, identity: Identity, ray_window: Optional[Tuple[int, int, int]]):
        """The source the frames are composited onto and its features, cropped to the ray window's pixels (the
        features computed on the crop, as the super-resolution sees a crop at training time)."""
        if ray_window is None:
            return identity.source, identity.source_features

        def crop(image: torch.Tensor) -> torch.Tensor:
            scale = image.shape[-1] // self.renderer.config.ray_resolution  # image pixels per ray
            top, left, size = (scale * v for v in ray_window)
            return image[:, :, top : top + size, left : left + size]

        return crop(identity.source), self.super_resolution.encode_source(crop(identity.hidden_source))
