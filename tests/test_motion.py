"""Head-motion presets: shapes, start at the base pose, the motion each preset promises, limits."""

import numpy as np
import pytest

from s3d_pipeline.motion import MOTION_PRESETS, NOD_PERIOD, head_motion
from s3d_pipeline.pipeline_s3d_nerf import POSE_LIMITS, S3DNeRFPipeline


@pytest.mark.parametrize("preset", MOTION_PRESETS)
def test_every_preset_starts_at_the_base_pose_with_one_value_per_frame(preset):
    motion = head_motion(preset, num_frames=40, fps=20, base=(5.0, -3.0, 2.0))
    assert len(motion) == 40
    for values in motion.as_kwargs().values():
        assert values.shape == (40,) and values.dtype == np.float32
    np.testing.assert_allclose([motion.yaw[0], motion.pitch[0], motion.roll[0]], [5.0, -3.0, 2.0], atol=1e-5)


def test_still_keeps_the_base_pose():
    motion = head_motion("still", num_frames=10, fps=25, base=(7.0, 1.0, -4.0))
    assert np.all(motion.yaw == 7.0) and np.all(motion.pitch == 1.0) and np.all(motion.roll == -4.0)


def test_nod_moves_pitch_only_at_a_fixed_rhythm():
    fps = 20
    motion = head_motion("nod", num_frames=int(3 * NOD_PERIOD * fps), fps=fps)
    assert np.all(motion.yaw == 0) and np.all(motion.roll == 0)
    assert motion.pitch.max() > 4 and motion.pitch.min() < -4
    period = int(NOD_PERIOD * fps)
    np.testing.assert_allclose(motion.pitch[:period], motion.pitch[period : 2 * period], atol=1e-4)


def test_turn_reaches_its_extreme_mid_clip_and_comes_back():
    motion = head_motion("turn", num_frames=51, fps=25)
    assert int(np.argmax(motion.yaw)) == 25
    assert motion.yaw[-1] == pytest.approx(0.0, abs=1e-4)
    assert np.all(motion.pitch == 0)


def test_orbit_circles_in_yaw_and_pitch():
    motion = head_motion("orbit", num_frames=101, fps=25)
    assert motion.yaw.max() > 10 and motion.yaw.min() < -10  # both sides
    assert motion.pitch.min() >= 0 and motion.pitch.max() > 10
    assert motion.yaw[-1] == pytest.approx(0.0, abs=1e-4) and motion.pitch[-1] == pytest.approx(0.0, abs=1e-4)


def test_base_plus_motion_is_clipped_to_the_pipeline_limits_and_accepted_by_it():
    motion = head_motion("turn", num_frames=30, fps=25, base=(POSE_LIMITS["yaw"] - 1, 0.0, 0.0))
    assert motion.yaw.max() == pytest.approx(POSE_LIMITS["yaw"])
    poses = S3DNeRFPipeline.head_poses(motion.yaw, motion.pitch, motion.roll, num_frames=30)
    assert poses.shape == (30, 3)


def test_a_single_frame_is_the_base_pose():
    motion = head_motion("orbit", num_frames=1, fps=25, base=(3.0, 2.0, 1.0))
    np.testing.assert_allclose(motion.as_kwargs()["yaw"], [3.0])


@pytest.mark.parametrize("kwargs", [dict(preset="spin"), dict(num_frames=0), dict(fps=0)])
def test_bad_arguments_raise_clear_errors(kwargs):
    arguments = dict(preset="nod", num_frames=10, fps=25) | kwargs
    with pytest.raises(ValueError, match="preset|num_frames|fps"):
        head_motion(**arguments)
