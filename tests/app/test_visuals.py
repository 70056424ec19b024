"""Attention heatmap and depth preview pictures."""

import numpy as np

from s3d_pipeline.app.visuals import attention_overlay, depth_preview, for_display


def test_attention_heatmap_is_hot_where_attention_is_high():
    face = np.full((64, 64, 3), 128, dtype=np.uint8)
    attention = np.zeros((3, 16, 16), dtype=np.float32)
    attention[:, 10:14, 6:10] = 1.0  # a "mouth" region
    overlay = attention_overlay(face, attention)
    assert overlay.shape == (64, 64, 3) and overlay.dtype == np.uint8
    hot, cold = overlay[44:52, 28:36].astype(int), overlay[4:12, 4:12].astype(int)
    redness = lambda patch: (patch[..., 0] - patch[..., 2]).mean()  # noqa: E731
    assert redness(hot) > 50 and redness(cold) < 0  # red where attended, blue elsewhere


def test_a_flat_attention_map_does_not_break_the_picture():
    overlay = attention_overlay(np.zeros((32, 32, 3), np.uint8), np.full((2, 8, 8), 0.7, np.float32))
    assert np.isfinite(overlay).all() and overlay.shape == (32, 32, 3)


def test_depth_preview_shows_near_surfaces_bright():
    depth = np.full((5, 16, 16), 3.0, dtype=np.float32)
    depth[:, 4:12, 4:12] = 2.5  # a nearer face in the middle
    picture = depth_preview(depth, 64).astype(int)
    assert picture.shape == (64, 64, 3)
    assert picture[28:36, 28:36].sum(-1).mean() > picture[:8, :8].sum(-1).mean() + 100


def test_small_pictures_are_enlarged_pixel_for_pixel():
    picture = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    big = for_display(picture)
    assert big.shape == (256, 256, 3) and np.array_equal(big[::4, ::4], picture)
    assert for_display(np.zeros((300, 400, 3), np.uint8)).shape == (300, 400, 3)
