"""The terms of the training objective (PAPER.md):

    L = L_pix + 0.01 L_per + L_adv + 0.5 L_sync + 0.001 L_deform

L_pix is the L2 pixel loss, L_per the perceptual loss (:mod:`.perceptual`), L_adv StyleGAN2's non-saturating
loss against the image discriminator (:mod:`.discriminator`, regularised with R1), L_sync the frozen lip-sync
discriminator's verdict on T rendered mouths against their speech, and L_deform the mean squared displacement Δx.

Where clips carry head masks (the synthetic corpus does), two terms of ours supervise the coarse render itself,
as EG3D supervises its raw neural rendering beside the super-resolved image: L_raw, the L2 between the render's
RGB and the target's head (premultiplied by its mask) at ray resolution, and L_sil, the L2 between the render's
opacity and the mask. Without them the super-resolution, which composites onto the source, can copy the source
and leave the 3D head unlearned (a pose-blind fog; seen on the synthetic corpus within 300 steps).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..models.lip_sync import LipSyncDiscriminator

# Cosine similarities in [-1, 1] become logits of "in sync" through this fixed scale (ours): 5 makes a cosine of
# 1 vs -1 a confident 0.993 vs 0.007 without saturating the gradient the generator gets.
SYNC_LOGIT_SCALE = 5.0


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_pix: mean squared error over pixels (images in [-1, 1])."""
    return F.mse_loss(prediction, target)


def raw_render_losses(coarse_rgb: torch.Tensor, opacity: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """(L_raw, L_sil) of the coarse render at ray resolution (ours, see the module docstring).

    Args:
        coarse_rgb: (N, 3, r, r) the render's RGB channels in [0, 1], premultiplied by its opacity.
        opacity: (N, 1, r, r) accumulated alpha.
        target: (N, 3, R, R) frames in [-1, 1]; mask: (N, 1, R, R) head masks in [0, 1]; R a multiple of r.
    """
    factor = target.shape[-1] // coarse_rgb.shape[-1]
    mask_small = F.avg_pool2d(mask, factor)  # (N, 1, r, r): area coverage of each ray's pixel footprint
    head_small = F.avg_pool2d((target + 1) / 2 * mask, factor)  # (N, 3, r, r) premultiplied, like the render
    return F.mse_loss(coarse_rgb, head_small), F.mse_loss(opacity, mask_small)


def deformation_regulariser(displacement: Optional[torch.Tensor]) -> torch.Tensor:
    """L_deform (ours, PAPER.md): mean squared Δx at the rendered samples; zero without a deformation field."""
    if displacement is None:
        return torch.zeros(())
    return displacement.float().pow(2).mean()


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv for the generator, non-saturating: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The image discriminator's logistic loss: softplus(D(fake)) + softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): E[|∇_x D(x)|²] on real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def sync_audio_windows(lip_sync: LipSyncDiscriminator, waveforms: Sequence[torch.Tensor], starts: Sequence[int], fps: Sequence[float]) -> torch.Tensor:
    """The lip-sync discriminator's mel window starting at video frame ``starts[i]`` of each speech: (B, n_mels, steps)."""
    windows = [lip_sync.mel_windows(lip_sync.mel(w.float()), torch.tensor([s]), f)[0] for w, s, f in zip(waveforms, starts, fps)]
    return torch.stack(windows)


def sync_logits(lip_sync: LipSyncDiscriminator, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Logits of "in sync" for windows of frames (B, T, 3, H, W) in [0, 1] and mel windows (B, n_mels, steps)."""
    b, t = frames.shape[:2]
    crops = lip_sync.crop_lower_face(frames.flatten(0, 1))  # (B*T, 3, h, w)
    crops = crops.reshape(b, t, *crops.shape[1:])  # (B, T, 3, h, w)
    return SYNC_LOGIT_SCALE * lip_sync(crops, mel)


def syncnet_loss(logits: torch.Tensor) -> torch.Tensor:
    """Pretraining loss of the lip-sync discriminator: multi-way matching (Chung et al., "Perfect match", 2019).

    Each video window picks its aligned audio (candidate 0) out of C candidates (B, C) by softmax
    cross-entropy. Against shifted audio of the same clip this trains exactly what the offset search of
    :meth:`LipSyncDiscriminator.score` asks, with C - 1 negatives per window instead of one.
    """
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


def lip_sync_loss(logits: torch.Tensor) -> torch.Tensor:
    """L_sync for the generator: the frozen discriminator's cross-entropy of the rendered window being in sync."""
    return F.softplus(-logits).mean()
