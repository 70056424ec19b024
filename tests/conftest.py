"""Shared fixtures: tiny seeded pipelines and small media made in memory. Everything runs offline."""

import os
import re
import subprocess
from types import SimpleNamespace

import imageio_ffmpeg
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


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced tone with a syllable-rate (4 Hz) envelope and a little noise, float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.4 * envelope * np.sin(2 * np.pi * 160 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def probe_media(path):
    """Stream codecs, frame size, duration in seconds and tags from ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe)."""
    log = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log).groups()
    return SimpleNamespace(
        video=re.findall(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)[, ]", log),
        audio=re.findall(r"Stream #\S+.*?: Audio: (\w+)", log),
        duration=int(h) * 3600 + int(m) * 60 + float(s),
        log=log,
    )
