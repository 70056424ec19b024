"""Shared fixtures: tiny seeded pipelines and small media made in memory. Everything runs offline."""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipe():
    from s3d_pipeline.configs import build_pipeline

    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def face_crop():
    """A 64x64 RGB image standing in for an aligned face crop."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    base = np.stack([xx, yy, 1 - xx], axis=-1) * 200 + rng.integers(0, 40, size=(64, 64, 3))
    return base.astype(np.uint8)
