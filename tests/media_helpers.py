"""Small media made in memory, and a probe of written mp4 files, shared by the tests."""

import re
import subprocess
from types import SimpleNamespace

import imageio_ffmpeg
import numpy as np


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
