"""s3d-nerf: single-shot speech-driven 3D talking heads (S3D-NeRF) as a diffusers-style pipeline."""

from .errors import (
    FaceNotFoundError,
    FaceTooSmallError,
    InvalidAudioError,
    InvalidImageError,
    InvalidPoseError,
    S3DNeRFError,
)
from .models import (
    AudioEncoder,
    CrossModalDeformationField,
    HierarchicalAppearanceEncoder,
    LipSyncDiscriminator,
    SuperResolution,
    TriPlaneRenderer,
)
from .pipeline_output import S3DNeRFPipelineOutput
from .pipeline_s3d_nerf import S3DNeRFPipeline
from .video import export_to_video

__version__ = "0.1.0"

__all__ = [
    "S3DNeRFPipeline",
    "S3DNeRFPipelineOutput",
    "export_to_video",
    "HierarchicalAppearanceEncoder",
    "AudioEncoder",
    "CrossModalDeformationField",
    "TriPlaneRenderer",
    "SuperResolution",
    "LipSyncDiscriminator",
    "S3DNeRFError",
    "InvalidImageError",
    "InvalidAudioError",
    "InvalidPoseError",
    "FaceNotFoundError",
    "FaceTooSmallError",
]
