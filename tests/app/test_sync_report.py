"""The lip-sync score in words, and sync over time."""

import numpy as np

from s3d_pipeline.app.sync_report import read_sync, sync_over_time


def test_levels_against_a_ground_truth_reference():
    assert read_sync(0.25, 0, 25, reference=0.3).level == "good"
    assert read_sync(0.12, 2, 25, reference=0.3).level == "fair"
    assert read_sync(0.25, 6, 25, reference=0.3).level == "poor"  # confident but shifted
    assert read_sync(0.02, 0, 25, reference=0.3).level == "poor"  # in place but unconvincing
    text = read_sync(0.25, 0, 25, reference=0.3).text
    assert "0.300" in text and "83%" in text  # says what ground truth scores and how close this is


def test_without_a_reference_the_offset_decides_and_the_text_says_so():
    reading = read_sync(0.05, -2, 25)
    assert reading.level == "fair"
    assert "no ground-truth score" in reading.text and "80 ms" in reading.text and "earlier" in reading.text


def test_unscored_clips_read_unavailable():
    assert read_sync(None, None, 25).level == "unavailable"


def test_sync_over_time_is_the_margin_below_the_median_distance_and_averages_to_the_confidence():
    per_window = np.array([0.5, 0.7, 0.6, 0.4])
    distances = np.array([1.0, 0.9, 0.55, 0.95, 1.1])  # offset 0 (index 2) is the minimum
    table = sync_over_time(per_window, distances, fps=25, window_frames=5)
    assert list(table.columns) == ["time (s)", "sync"]
    np.testing.assert_allclose(table["sync"], 0.95 - per_window, atol=1e-6)
    np.testing.assert_allclose(table["time (s)"], (np.arange(4) + 2.5) / 25)
    assert table["sync"].mean() > 0 and np.isclose(0.95 - per_window.mean(), 0.95 - 0.55)
