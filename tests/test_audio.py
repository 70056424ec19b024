import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch

from media_helpers import speech_like
from s3d_pipeline.audio import SAMPLE_RATE, LogMel, frame_windows, load_audio, num_video_frames
from s3d_pipeline.errors import InvalidAudioError


def _encode(src, dst, *args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), *args, str(dst)], check=True)


def test_stereo_44k_wav_becomes_16k_mono(tmp_path):
    mono = speech_like(1.0, 44100)
    sf.write(tmp_path / "s.wav", np.stack([mono, mono], axis=1), 44100)
    wave = load_audio(tmp_path / "s.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - SAMPLE_RATE) <= 2


@pytest.mark.parametrize("suffix,args", [("flac", []), ("ogg", ["-c:a", "libvorbis"]), ("mp3", []), ("m4a", ["-c:a", "aac"])])
def test_compressed_formats_decode_to_the_same_length(tmp_path, suffix, args):
    sf.write(tmp_path / "s.wav", speech_like(1.5, 22050), 22050)
    _encode(tmp_path / "s.wav", tmp_path / f"s.{suffix}", *args)
    wave = load_audio(tmp_path / f"s.{suffix}")
    assert abs(wave.size / SAMPLE_RATE - 1.5) < 0.06  # codecs pad by a frame at most
    assert wave.std() > 0.05


def test_tuple_input_channels_first_and_resampled():
    wave = speech_like(0.5, 8000)
    out = load_audio((np.stack([wave, wave]), 8000))
    assert abs(out.size - SAMPLE_RATE // 2) <= 2


@pytest.mark.parametrize("bad", [(np.zeros(0, np.float32), 16000), (np.full(100, np.nan, np.float32), 16000), 42])
def test_bad_audio_raises_typed_errors(bad):
    with pytest.raises(InvalidAudioError):
        load_audio(bad)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(InvalidAudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(InvalidAudioError):
        load_audio(tmp_path / "junk.wav")


@pytest.mark.parametrize("seconds,fps,expected", [(1.0, 25, 25), (2.02, 25, 50), (2.03, 25, 51), (0.01, 25, 1), (3.3, 30, 99)])
def test_frame_count_is_rounded_duration_times_fps(seconds, fps, expected):
    assert num_video_frames(int(round(seconds * SAMPLE_RATE)), fps) == expected


def test_mel_windows_are_centred_on_frames():
    # A click at 0.5 s must sit in the middle of frame 12's window at 25 fps (frame 12 spans 0.48-0.52 s).
    wave = np.zeros(SAMPLE_RATE, np.float32)
    wave[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + 80] = 1.0
    mel = LogMel()(torch.from_numpy(wave))
    assert mel.shape == (80, 101)
    windows = frame_windows(mel, 25, 25, window=16)
    assert windows.shape == (25, 80, 16)
    energy = windows[12].exp().sum(0)
    assert abs(int(energy.argmax()) - 8) <= 1
    assert windows[0].exp().sum() < windows[12].exp().sum()
