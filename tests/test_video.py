"""mp4 writing and reading through imageio-ffmpeg's ffmpeg."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from media_helpers import probe_media
from s3d_pipeline.errors import InvalidAudioError, InvalidVideoError
from s3d_pipeline.video import VideoWriter, export_to_video, extract_audio, iter_video, read_video

FPS = 25
SR = 16000


def _clip(n=30, h=64, w=80, seconds=None):
    """A moving gradient (so frames differ) and a 440 Hz tone lasting exactly n / FPS seconds."""
    yy, xx = np.mgrid[0:h, 0:w]  # (h, w)
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (xx + 3 * i) % w * 255 // w  # a ramp sliding right
        frames[i, ..., 1] = yy * 255 // h
    t = np.arange(int(SR * (seconds or n / FPS))) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return SimpleNamespace(frames=frames, fps=FPS, audio=audio, sample_rate=SR)


def test_export_writes_h264_and_aac_with_audio_length_and_tags(tmp_path):
    out = _clip()
    path = export_to_video(out, tmp_path / "talk.mp4", metadata={"comment": "AI-generated"})
    info = probe_media(path)
    assert [v[0] for v in info.video] == ["h264"]
    assert info.audio == ["aac"]
    assert abs(info.duration - len(out.audio) / SR) <= 1.0 / FPS
    assert re.search(r"comment\s*:\s*AI-generated", info.log)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]  # no temporary leftovers


def test_round_trip_frames_size_and_content(tmp_path):
    out = _clip(n=20)
    frames, fps = read_video(export_to_video(out, tmp_path / "a.mp4"))
    assert fps == pytest.approx(FPS)
    assert abs(len(frames) - 20) <= 1 and frames.shape[1:] == (64, 80, 3) and frames.dtype == np.uint8
    # crf 18 is near lossless on a smooth gradient.
    assert np.abs(frames[:19].astype(int) - out.frames[:19].astype(int)).mean() < 4


def test_round_trip_audio(tmp_path):
    out = _clip(n=25)
    audio = extract_audio(export_to_video(out, tmp_path / "a.mp4"), sample_rate=SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(out.audio)) <= SR // FPS
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SR / len(audio) == pytest.approx(440, abs=5)


def test_odd_size_and_pil_frames(tmp_path):
    import PIL.Image

    out = _clip(n=5, h=33, w=47)
    out.frames = [PIL.Image.fromarray(f) for f in out.frames]
    frames, _ = read_video(export_to_video(out, tmp_path / "odd.mp4"))
    assert frames.shape[1:3] == (34, 48)  # padded to even by one replicated edge pixel


def test_streaming_writer_and_resampled_reading(tmp_path):
    clip = _clip(n=50)
    with VideoWriter(tmp_path / "s.mp4", fps=FPS, audio=clip.audio, sample_rate=SR) as writer:
        for start in range(0, 50, 8):
            writer.write(clip.frames[start : start + 8])
    info, frames = iter_video(tmp_path / "s.mp4", fps=10)
    assert info.fps == 10 and info.size == (64, 80)
    assert abs(sum(1 for _ in frames) - 20) <= 1  # 2 s at 10 fps


def test_audio_is_fitted_to_the_video_duration(tmp_path):
    clip = _clip(n=25, seconds=3.0)  # 1 s of video, 3 s of audio
    info = probe_media(export_to_video(clip, tmp_path / "fit.mp4"))
    assert abs(info.duration - 1.0) <= 1.0 / FPS


def test_failure_inside_writer_leaves_nothing(tmp_path):
    clip = _clip(n=10)
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / "x.mp4", fps=FPS, audio=clip.audio) as writer:
            writer.write(clip.frames[:5])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_leave_nothing_and_keep_an_existing_file(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="must be"):
        export_to_video(SimpleNamespace(frames=np.zeros((3, 8, 8)), fps=FPS, audio=None), target)
    with pytest.raises(ValueError, match="all frames"):
        with VideoWriter(target, fps=FPS) as writer:
            writer.write(np.zeros((2, 8, 8, 3), np.uint8))
            writer.write(np.zeros((2, 8, 10, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"] and target.read_bytes() == b"old"


def test_reading_errors_are_typed(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(InvalidVideoError):
        read_video(junk)
    with pytest.raises(InvalidVideoError):
        read_video(tmp_path / "missing.mp4")
    silent = export_to_video(SimpleNamespace(frames=_clip(n=5).frames, fps=FPS, audio=None), tmp_path / "silent.mp4")
    with pytest.raises(InvalidAudioError, match="sound track"):
        extract_audio(silent)
