"""Named architecture configs: ``demo`` (ships, CPU), ``paper`` (GPU users) and ``tiny`` (tests).

A config is the keyword arguments of each component; ``build_pipeline`` instantiates them with seeded random
weights. Once saved, every component's ``config.json`` is the whole architecture.
"""

from __future__ import annotations

import copy
from typing import Dict

import torch

from .models import (
    AudioEncoder,
    CrossModalDeformationField,
    HierarchicalAppearanceEncoder,
    LipSyncDiscriminator,
    SuperResolution,
    TriPlaneRenderer,
)
from .pipeline_s3d_nerf import S3DNeRFPipeline

COMPONENTS = {
    "appearance_encoder": HierarchicalAppearanceEncoder,
    "audio_encoder": AudioEncoder,
    "deformation_field": CrossModalDeformationField,
    "renderer": TriPlaneRenderer,
    "super_resolution": SuperResolution,
    "lip_sync": LipSyncDiscriminator,
}

# Where the super-resolution does not see the source (the ellipse inside x0, y0, x1, y1 of the aligned frame): the
# mouth over the synthetic corpus's poses and openings (its mouth landmarks span x 0.33-0.65, y 0.59-0.78 in 98 % of
# frames). A box reaching the chin hid background and neck that the render does not cover: grey showed there.
HIDDEN_MOUTH_BOX = (0.29, 0.56, 0.69, 0.82)

ARCHITECTURES: Dict[str, Dict[str, dict]] = {
    # 256x256 frames from 64x64 rays (x4 super-resolution), 24 coarse + 24 importance samples.
    "demo": {
        "appearance_encoder": dict(block_channels=(32, 64, 96, 128), plane_channels=32, token_grid=16),
        "audio_encoder": dict(frontend="mel", window=16, channels=128, feature_dim=128, num_tokens=4, normalize=True),
        "deformation_field": dict(mode="cross_attention", visual_dim=96, plane_channels=32, audio_dim=128, slot_dim=96, num_slots=6, unet_resolution=32, triplane_extent=0.35),
        "renderer": dict(plane_channels=32, feature_dim=32, ray_resolution=64, num_coarse=24, num_importance=24, triplane_extent=0.35),
        "super_resolution": dict(feature_dim=32, hidden_source_box=HIDDEN_MOUTH_BOX),
        "lip_sync": dict(),
    },
    # 512x512 frames from 128x128 rays, wider planes, EG3D-like 48 + 48 samples.
    "paper": {
        "appearance_encoder": dict(block_channels=(64, 128, 192, 256), plane_channels=48, token_grid=16),
        "audio_encoder": dict(frontend="mel", window=16, channels=256, feature_dim=256, num_tokens=4, normalize=True),
        "deformation_field": dict(mode="cross_attention", visual_dim=144, plane_channels=48, audio_dim=256, slot_dim=128, num_slots=8, unet_resolution=64, unet_channels=(64, 128, 192), deform_channels=32, hidden_dim=128, triplane_extent=0.35),
        "renderer": dict(plane_channels=48, feature_dim=32, hidden_dim=128, ray_resolution=128, num_coarse=48, num_importance=48, triplane_extent=0.35),
        "super_resolution": dict(feature_dim=32, channels=(128, 64, 32), source_channels=(16, 32, 64), hidden_source_box=HIDDEN_MOUTH_BOX),
        "lip_sync": dict(),
    },
    # 64x64 frames from 16x16 rays: for tests.
    "tiny": {
        "appearance_encoder": dict(block_channels=(8, 8, 16, 16), plane_channels=8, token_grid=4),
        "audio_encoder": dict(frontend="mel", window=16, channels=16, feature_dim=16, num_tokens=2, normalize=True),
        "deformation_field": dict(mode="cross_attention", visual_dim=24, plane_channels=8, audio_dim=16, slot_dim=16, num_slots=3, num_heads=2, unet_resolution=8, unet_channels=(8, 8, 8), deform_channels=4, hidden_dim=16, position_frequencies=2, triplane_extent=0.35),
        "renderer": dict(plane_channels=8, feature_dim=8, hidden_dim=16, ray_resolution=16, num_coarse=8, num_importance=8, triplane_extent=0.35),
        "super_resolution": dict(feature_dim=8, channels=(16, 8, 8), source_channels=(4, 8, 8), hidden_source_box=HIDDEN_MOUTH_BOX),
        "lip_sync": dict(crop_size=(16, 32), channels=(8, 16, 16, 32, 32), embed_dim=32),
    },
}


def architecture(name: str, **overrides: dict) -> Dict[str, dict]:
    """A deep copy of a named config, with per-component keyword overrides merged in."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown config {name!r}: choose one of {sorted(ARCHITECTURES)}")
    config = copy.deepcopy(ARCHITECTURES[name])
    for component, kwargs in overrides.items():
        config[component].update(kwargs)
    return config


def build_components(config: Dict[str, dict], seed: int = 0) -> Dict[str, torch.nn.Module]:
    """Instantiate every component of a config with seeded random weights."""
    torch.manual_seed(seed)
    return {name: cls(**config[name]) for name, cls in COMPONENTS.items()}


def build_pipeline(name: str = "demo", seed: int = 0, **overrides: dict) -> S3DNeRFPipeline:
    """A pipeline of the named architecture with seeded random weights."""
    return S3DNeRFPipeline(**build_components(architecture(name, **overrides), seed))
