"""The controls the app offers stay inside what the pipeline accepts and reject what it does not."""

import pytest

from s3d_pipeline.app.config import FPS, MOTION_LABELS, MOUTH, POSE_SLIDERS, InvalidControlError
from s3d_pipeline.errors import S3DNeRFError
from s3d_pipeline.motion import MOTION_PRESETS
from s3d_pipeline.pipeline_s3d_nerf import POSE_LIMITS


def test_pose_sliders_stay_inside_the_pipeline_limits():
    for spec in POSE_SLIDERS:
        assert -POSE_LIMITS[spec.name] <= spec.minimum < spec.default < spec.maximum <= POSE_LIMITS[spec.name]


def test_every_motion_preset_has_a_label():
    assert tuple(MOTION_LABELS) == MOTION_PRESETS


def test_fps_and_mouth_ranges_are_accepted_by_the_pipeline():
    assert 1 <= FPS.minimum and FPS.maximum <= 60
    assert 0 <= MOUTH.minimum and MOUTH.maximum <= 3


@pytest.mark.parametrize("value", [26, -30, float("nan"), "abc", None])
def test_out_of_range_or_non_numeric_values_name_the_control(value):
    yaw = POSE_SLIDERS[0]
    with pytest.raises(InvalidControlError, match="Yaw") as info:
        yaw.check(value)
    assert isinstance(info.value, S3DNeRFError)


def test_values_in_range_come_back_as_floats():
    assert POSE_SLIDERS[0].check("12") == 12.0
