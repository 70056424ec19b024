import math

import torch

from s3d_pipeline.rendering.cameras import (
    CAMERA_RADIUS,
    cam2world_to_pose,
    frontal_cam2world,
    pose_to_cam2world,
    project,
    relative_cam2world,
)


def test_origin_projects_to_image_centre_in_front_of_camera():
    uvz = project(torch.zeros(1, 3), frontal_cam2world())
    assert torch.allclose(uvz[0, :2], torch.tensor([0.5, 0.5]), atol=1e-6)
    assert math.isclose(float(uvz[0, 2]), CAMERA_RADIUS, rel_tol=1e-6)


def test_image_axes_follow_the_world_axes():
    # +x (viewer's right) goes right in the image, +y (up) goes up (smaller v).
    uvz = project(torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]), frontal_cam2world())
    assert uvz[0, 0] > 0.5 and abs(float(uvz[0, 1]) - 0.5) < 1e-6
    assert uvz[1, 1] < 0.5 and abs(float(uvz[1, 0]) - 0.5) < 1e-6


def test_posed_camera_sees_head_points_inside_the_image():
    points = torch.tensor([[0.0, 0.0, 0.2], [0.15, 0.1, 0.0], [-0.1, -0.15, 0.05]])
    for yaw, pitch, roll in [(0, 0, 0), (30, 0, 0), (-30, 20, 10), (15, -20, -10)]:
        uvz = project(points, pose_to_cam2world(yaw, pitch, roll))
        assert torch.all((uvz[:, :2] > 0) & (uvz[:, :2] < 1)), (yaw, pitch, roll)
        assert torch.all(uvz[:, 2] > 0)


def test_yaw_turns_the_nose_towards_the_viewers_right():
    nose = torch.tensor([[0.0, 0.0, 0.25]])
    u_frontal = project(nose, pose_to_cam2world(0.0))[0, 0]
    u_turned = project(nose, pose_to_cam2world(20.0))[0, 0]
    assert u_turned > u_frontal + 0.01


def test_pose_round_trip_and_camera_on_the_sphere():
    poses = torch.tensor([[10.0, -5.0, 3.0], [-25.0, 15.0, -8.0], [0.0, 0.0, 0.0]])
    cams = pose_to_cam2world(poses[:, 0], poses[:, 1], poses[:, 2])
    assert torch.allclose(cam2world_to_pose(cams), poses, atol=1e-4)
    assert torch.allclose(cams[:, :3, 3].norm(dim=-1), torch.full((3,), CAMERA_RADIUS), atol=1e-5)


def test_relative_camera_of_the_source_itself_is_frontal():
    source = pose_to_cam2world(12.0, -7.0, 4.0)
    assert torch.allclose(relative_cam2world(source, source), frontal_cam2world(), atol=1e-5)
    # Composition: relative pose between two posed cameras equals the pose of the second seen from the first.
    target = pose_to_cam2world(-8.0, 3.0, 0.0)
    rel = relative_cam2world(source, target)
    assert torch.allclose(rel[:3, 3].norm(), torch.tensor(CAMERA_RADIUS), atol=1e-5)
