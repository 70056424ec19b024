"""A tiny talking-head corpus in the clip format, made in memory: per identity, a coloured face whose mouth opens
with the loudness of a synthetic voice (a buzzing tone under a random syllable envelope), seen by cameras that
pan and tilt slightly. Lip-sync is learnable from it: the mouth opening and the mel energy share the envelope."""

import numpy as np

from s3d_pipeline.data.clip import ClipMeta, write_clip
from s3d_pipeline.rendering.framing import MOUTH_CENTER
from s3d_pipeline.rendering.cameras import intrinsics, pose_to_cam2world

FPS = 25.0
SAMPLE_RATE = 16000


def syllable_envelope(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) mouth opening / loudness in [0, 1]: random syllables of 2-6 frames separated by 1-4 quiet frames."""
    envelope = np.zeros(num_frames)
    i = int(rng.integers(0, 3))
    while i < num_frames:
        length = int(rng.integers(2, 7))
        syllable = rng.uniform(0.5, 1.0) * np.sin(np.linspace(0, np.pi, length + 2)[1:-1])
        envelope[i : i + length] = syllable[: num_frames - i]
        i += length + int(rng.integers(1, 5))
    return envelope


def make_clip(out_dir, identity: int, clip_seed: int, num_frames: int = 40, resolution: int = 64, masks: bool = False):
    """One clip; with ``masks`` it carries the face ellipse as its head mask, as synthetic clips do."""
    rng = np.random.default_rng(clip_seed)
    envelope = syllable_envelope(num_frames, rng)
    hue = np.random.default_rng(identity).uniform(60, 220, size=3)
    # Speech: a 140-220 Hz buzz with harmonics under the envelope, interpolated to audio rate.
    samples = int(round(num_frames / FPS * SAMPLE_RATE))
    t = np.arange(samples) / SAMPLE_RATE
    loudness = np.interp(t, (np.arange(num_frames) + 0.5) / FPS, envelope)
    pitch = 140 + 80 * np.random.default_rng(identity + 100).random()
    voice = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    audio = (0.3 * loudness * voice + 0.003 * rng.standard_normal(samples)).astype(np.float32)
    # Frames: background gradient, face ellipse, eyes, and a mouth whose height follows the envelope.
    yaw = 8 * np.sin(np.linspace(0, 2 * np.pi, num_frames) + clip_seed)
    pitch_deg = 4 * np.cos(np.linspace(0, 2 * np.pi, num_frames) + clip_seed)
    yy, xx = (np.mgrid[0:resolution, 0:resolution] + 0.5) / resolution
    frames = np.empty((num_frames, resolution, resolution, 3), np.uint8)
    mask = np.zeros((num_frames, resolution, resolution), np.uint8)
    for i in range(num_frames):
        cx, cy = 0.5 - yaw[i] / 100, 0.5 + pitch_deg[i] / 100
        image = np.stack([40 + 60 * yy, 50 + 40 * xx, 90 + 0 * xx], -1)
        face = ((xx - cx) / 0.3) ** 2 + ((yy - cy) / 0.4) ** 2 < 1
        image[face] = hue
        mask[i][face] = 255
        for ex in (-0.12, 0.12):
            image[((xx - cx - ex) / 0.05) ** 2 + ((yy - cy + 0.08) / 0.03) ** 2 < 1] = 20
        mx, my = cx + MOUTH_CENTER[0] - 0.5, cy + MOUTH_CENTER[1] - 0.5
        opening = 0.015 + 0.09 * envelope[i]
        image[((xx - mx) / 0.13) ** 2 + ((yy - my) / opening) ** 2 < 1] = (120, 10, 30)
        frames[i] = image.clip(0, 255).astype(np.uint8)
    meta = ClipMeta(
        fps=FPS,
        num_frames=num_frames,
        resolution=[resolution, resolution],
        intrinsics=intrinsics().tolist(),
        cam2world=pose_to_cam2world(yaw, pitch_deg, 0.0).tolist(),
        landmarks=np.zeros((num_frames, 68, 2)).tolist(),
        identity=f"id{identity:02d}",
    )
    return write_clip(out_dir, meta, frames, audio, mask=mask if masks else None)


def make_corpus(root, identities: int, clips_per_identity: int, num_frames: int = 40, seed: int = 0, masks: bool = False):
    for identity in range(identities):
        for c in range(clips_per_identity):
            make_clip(root / f"id{identity:02d}_clip{c}", identity, seed * 1000 + identity * 10 + c, num_frames, masks=masks)
    return root
