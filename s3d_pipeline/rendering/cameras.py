"""Camera conventions, written down once.

Every part of the project (the synthetic corpus, real-video preprocessing, training, the pipeline's pose
controls) uses these definitions; nothing else builds a camera by hand.

World / head frame
    The head sits at the origin. +x points to the viewer's right when the head faces the camera, +y points
    up, +z points out of the face towards the frontal camera (a right-handed frame).

Cameras (EG3D conventions)
    ``cam2world`` is a 4x4 OpenCV-style matrix: camera +x right, +y down, +z forward (looking direction).
    The frontal camera sits on +z at distance ``CAMERA_RADIUS`` looking at the origin.
    Intrinsics are *normalized*: pixel coordinates divided by the image size, so ``K = [[f, 0, 0.5],
    [0, f, 0.5], [0, 0, 1]]`` with ``f = FOCAL`` works for any resolution.

Head pose (yaw, pitch, roll in degrees)
    ``R_head = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` with right-handed rotations about the world axes.
    yaw > 0 turns the face towards the viewer's right, pitch > 0 tips the chin down, roll > 0 tilts the
    head counter-clockwise as the viewer sees it. A head posed by ``R_head`` in front of the frontal camera
    is the same image as the unposed head seen by the camera ``pose_to_cam2world(yaw, pitch, roll)``,
    which is how poses are stored (per-frame ``cam2world`` in the head's canonical frame).

Tri-plane frame
    The appearance encoder lifts the source image into a tri-plane aligned with the *source view*: as if
    the source camera were the frontal camera. A target camera is therefore expressed relative to the
    source camera with :func:`relative_cam2world` before rays are cast.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

CAMERA_RADIUS = 2.7
FOCAL = 4.2647
RAY_NEAR = 2.25
RAY_FAR = 3.3

Angle = Union[float, Sequence[float], torch.Tensor]


def intrinsics(focal: float = FOCAL, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalized 3x3 intrinsics (principal point at the image centre)."""
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], dtype=dtype)


def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Right-handed rotation(s) by ``angle`` radians about world axis 0 (x), 1 (y) or 2 (z): (...,) -> (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


def head_rotation(yaw: Angle, pitch: Angle = 0.0, roll: Angle = 0.0) -> torch.Tensor:
    """``R_head = Ry(yaw) Rx(pitch) Rz(roll)`` from angles in degrees; broadcasts: (...,) -> (..., 3, 3)."""
    yaw, pitch, roll = torch.broadcast_tensors(
        *(torch.as_tensor(a, dtype=torch.float32) for a in (yaw, pitch, roll))
    )
    to_rad = math.pi / 180.0
    return (
        _axis_rotation(yaw * to_rad, 1) @ _axis_rotation(pitch * to_rad, 0) @ _axis_rotation(roll * to_rad, 2)
    )


def frontal_cam2world(radius: float = CAMERA_RADIUS) -> torch.Tensor:
    """The frontal camera: at (0, 0, radius), looking down -z, image +y pointing to world -y."""
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    c2w[2, 3] = radius
    return c2w


def pose_to_cam2world(yaw: Angle, pitch: Angle = 0.0, roll: Angle = 0.0, radius: float = CAMERA_RADIUS) -> torch.Tensor:
    """Camera(s) in the head frame that see the head posed by (yaw, pitch, roll): (...,) -> (..., 4, 4).

    Rotating the head by ``R_head`` in front of a fixed camera equals keeping the head still and moving the
    camera by ``R_head^T``.
    """
    rot = head_rotation(yaw, pitch, roll)  # (..., 3, 3)
    inv = torch.zeros(*rot.shape[:-2], 4, 4)
    inv[..., :3, :3] = rot.transpose(-1, -2)
    inv[..., 3, 3] = 1.0
    return inv @ frontal_cam2world(radius)


def cam2world_to_pose(cam2world: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pose_to_cam2world` for the rotation part: (..., 4, 4) -> (..., 3) yaw, pitch, roll in degrees."""
    rot_t = cam2world[..., :3, :3] @ frontal_cam2world()[:3, :3].T  # R_head^T
    r = rot_t.transpose(-1, -2)  # R_head = Ry Rx Rz
    # For Ry(a) Rx(b) Rz(c): r[1,2] = -sin b, r[0,2] = cos b sin a, r[2,2] = cos b cos a,
    # r[1,0] = cos b sin c, r[1,1] = cos b cos c.
    pitch = torch.asin(torch.clamp(-r[..., 1, 2], -1.0, 1.0))
    yaw = torch.atan2(r[..., 0, 2], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 1, 1])
    return torch.stack([yaw, pitch, roll], dim=-1) * (180.0 / math.pi)


def relative_cam2world(source_cam2world: torch.Tensor, target_cam2world: torch.Tensor) -> torch.Tensor:
    """Express target camera(s) in the tri-plane frame of a source view: (..., 4, 4) -> (..., 4, 4).

    The tri-plane frame is the head frame rotated so that the source camera becomes the frontal camera, i.e.
    ``frontal @ inv(source) @ target``. A target equal to the source gives the frontal camera.
    """
    return frontal_cam2world() @ torch.linalg.inv(source_cam2world) @ target_cam2world


def project(points: torch.Tensor, cam2world: torch.Tensor, focal: float = FOCAL) -> torch.Tensor:
    """Project world points to normalized image coordinates in [0, 1] (x right, y down).

    Args:
        points: (..., N, 3) world points.
        cam2world: (..., 4, 4) camera(s), broadcast against ``points``' leading dimensions.

    Returns:
        (..., N, 3): u, v in normalized image coordinates and the camera-space depth z (> 0 in front).
    """
    world2cam = torch.linalg.inv(cam2world)
    cam = points @ world2cam[..., :3, :3].transpose(-1, -2) + world2cam[..., None, :3, 3]
    z = cam[..., 2:3]
    uv = focal * cam[..., :2] / z + 0.5
    return torch.cat([uv, z], dim=-1)
