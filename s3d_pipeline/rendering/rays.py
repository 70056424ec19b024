"""Camera rays for every pixel of a (square) render, EG3D-style."""

from __future__ import annotations

from typing import Tuple

import torch


def pixel_rays(cam2world: torch.Tensor, resolution: int, focal: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres.

    Args:
        cam2world: (B, 4, 4) OpenCV cam2world matrices (see :mod:`.cameras`).
        resolution: R, rays per side.
        focal: normalized focal length.

    Returns:
        origins (B, R*R, 3) and unit directions (B, R*R, 3), row-major over pixels (y down, x right).
    """
    device, dtype = cam2world.device, cam2world.dtype
    centres = (torch.arange(resolution, device=device, dtype=dtype) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # (R, R) each
    dirs_cam = torch.stack([(u - 0.5) / focal, (v - 0.5) / focal, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    dirs = dirs_cam @ cam2world[:, :3, :3].transpose(1, 2)  # (B, R*R, 3)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = cam2world[:, None, :3, 3].expand_as(dirs)
    return origins, dirs
