"""The visible "AI-generated" mark: drawn in the bottom-right corner, nowhere else, at any frame size."""

import numpy as np
import pytest

from s3d_pipeline.app.watermark import VIDEO_METADATA, mark_frames


@pytest.mark.parametrize("size", [256, 720])
def test_the_mark_changes_the_bottom_right_corner_only(size):
    frames = np.full((3, size, size, 3), 200, dtype=np.uint8)
    marked = mark_frames(frames)
    assert marked.shape == frames.shape and marked.dtype == np.uint8
    changed = np.any(marked != frames, axis=(0, 3))  # (H, W)
    rows, cols = np.nonzero(changed)
    assert rows.min() > size // 2 and cols.min() > size // 3  # in the bottom-right region
    assert changed.sum() > 0.005 * size * size  # big enough to see
    assert np.all(frames == 200)  # the input is not modified


def test_small_frames_get_a_mark_across_their_bottom():
    frames = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    changed = np.nonzero(np.any(mark_frames(frames) != frames, axis=(0, 3)))[0]
    assert changed.size > 0 and changed.min() > 40


def test_every_frame_gets_the_same_mark_and_text_is_light_on_dark():
    frames = np.random.default_rng(0).integers(0, 255, size=(4, 128, 160, 3), dtype=np.uint8)
    frames[:] = frames[0]
    marked = mark_frames(frames)
    assert all(np.array_equal(marked[0], m) for m in marked[1:])
    gray = np.full((1, 128, 160, 3), 128, dtype=np.uint8)
    corner = mark_frames(gray)[0, 100:, 80:]
    assert corner.max() > 200 and corner.min() < 80  # white letters on a darkened box


def test_the_mp4_tag_says_ai_generated():
    assert "AI-generated" in VIDEO_METADATA["comment"]
