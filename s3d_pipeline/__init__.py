"""s3d-nerf: single-shot speech-driven 3D talking heads (S3D-NeRF) as a diffusers-style pipeline.

Public names are imported on first use, so light entry points (the CLI's ``--help``, data tools) do not pay
for importing diffusers and the networks.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "S3DNeRFPipeline": "pipeline_s3d_nerf",
    "S3DNeRFPipelineOutput": "pipeline_output",
    "export_to_video": "video",
    "HierarchicalAppearanceEncoder": "models",
    "AudioEncoder": "models",
    "CrossModalDeformationField": "models",
    "TriPlaneRenderer": "models",
    "SuperResolution": "models",
    "LipSyncDiscriminator": "models",
    "S3DNeRFError": "errors",
    "InvalidImageError": "errors",
    "InvalidAudioError": "errors",
    "InvalidPoseError": "errors",
    "InvalidVideoError": "errors",
    "FaceNotFoundError": "errors",
    "FaceTooSmallError": "errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
