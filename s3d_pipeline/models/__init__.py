"""The networks of S3D-NeRF, one per file, each a diffusers ModelMixin + ConfigMixin."""

from .appearance_encoder import HierarchicalAppearanceEncoder
from .audio_encoder import AudioEncoder
from .deformation_field import CrossModalDeformationField
from .lip_sync import LipSyncDiscriminator
from .renderer import TriPlaneRenderer
from .super_resolution import SuperResolution

__all__ = [
    "HierarchicalAppearanceEncoder",
    "AudioEncoder",
    "CrossModalDeformationField",
    "TriPlaneRenderer",
    "SuperResolution",
    "LipSyncDiscriminator",
]
