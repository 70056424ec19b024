"""What every render engine takes and gives: the protocol, one rendered batch (:class:`FrameBatch`) and stage timing.

An engine turns an encoded portrait (:class:`~s3d_pipeline.engines.identity.Identity`) plus, per frame, a speech
window, a camera and a mouth amplitude into frames, through the per-frame path of PAPER.md: a_dri -> Δx field ->
volume rendering -> super-resolution. :class:`~s3d_pipeline.engines.reference.ReferenceEngine` evaluates every
network as written (differentiable; training uses it); :class:`~s3d_pipeline.engines.fast.FastEngine` computes
the same frames rearranged for a CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Protocol

import torch

from .identity import Identity

# Called with a stage's name around that stage's work: "audio", "deformation", "rendering", "super_resolution".
StageTimer = Callable[[str], ContextManager[Any]]
STAGES = ("audio", "deformation", "rendering", "super_resolution")


def untimed(stage: str) -> ContextManager[None]:
    """The :data:`StageTimer` that measures nothing."""
    return contextlib.nullcontext()


@dataclass
class FrameBatch:
    """A rendered batch of n frames.

    Attributes:
        image: (n, 3, R, R) the super-resolution's frames in [-1, 1], unclamped (the training losses read them).
        depth: (n, r, r) expected ray depth of the coarse render.
        attention: (n, g, g) the cross-modal attention over the face, or None for variants without it.
        coarse_rgb, opacity: (n, 3, r, r), (n, 1, r, r) the coarse render (reference engine only: training's
            raw-render losses read them).
        displacement: (n, M, 3) Δx at the samples, for the deformation regulariser (reference engine only).
    """

    image: torch.Tensor
    depth: torch.Tensor
    attention: Optional[torch.Tensor]
    coarse_rgb: Optional[torch.Tensor] = None
    opacity: Optional[torch.Tensor] = None
    displacement: Optional[torch.Tensor] = None

    @property
    def frames(self) -> torch.Tensor:
        """(n, 3, R, R) frames in [0, 1]."""
        return self.image.clamp(-1, 1).add(1).div(2)


class RenderEngine(Protocol):
    """Prepare an identity once, then render batches of frames of it."""

    def prepare(self, identity: Identity) -> Any:
        """The engine's per-identity cache, built on the first call for an identity and kept while it lives."""

    def render(
        self, identity: Identity, audio_windows: torch.Tensor, cam2world: torch.Tensor, mouth_amplitude: float = 1.0, *, timer: StageTimer = untimed
    ) -> FrameBatch:
        """Frames of ``identity`` for speech windows (n, F, W) and cameras (n, 4, 4) in the tri-plane frame;
        ``mouth_amplitude`` scales Δx (1 = as trained); ``timer`` is entered around each of :data:`STAGES`."""
