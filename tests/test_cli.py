"""The ``s3d-nerf`` console script: every subcommand is wired, and ``generate`` writes a video or nothing."""

import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import soundfile as sf

from media_helpers import probe_media, speech_like
from s3d_pipeline.cli import SUBCOMMANDS, main
from s3d_pipeline.paths import DEFAULT_IMAGE


def test_console_script_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "s3d_pipeline.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("generate", "synth", "preprocess", "train", "eval", "bench"):
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out  # it documents its options


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_pipe):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, speech_like(0.6, 22050), 22050)
    return path


def test_generate_pastes_the_head_back_into_a_non_square_photo(tmp_path, tiny_checkpoint, short_speech):
    photo = PIL.Image.new("RGB", (384, 480), (90, 110, 130))
    photo.paste(PIL.Image.open(DEFAULT_IMAGE), (0, 48))
    photo.save(tmp_path / "photo.jpg")
    out = tmp_path / "out.mp4"
    code = main(["generate", "--image", str(tmp_path / "photo.jpg"), "--audio", str(short_speech), "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--yaw", "5"])
    assert code == 0
    info = probe_media(out)
    assert info.video == [("h264", "384", "480")] and info.audio == ["aac"]
    assert abs(info.duration - 0.6) <= 1 / 25 + 0.03


def test_generate_crop_writes_the_aligned_face(tmp_path, tiny_checkpoint, short_speech):
    out = tmp_path / "crop.mp4"
    assert main(["generate", "--audio", str(short_speech), "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--crop"]) == 0
    assert probe_media(out).video == [("h264", "64", "64")]


def test_generate_without_a_face_fails_and_writes_nothing(tmp_path, tiny_checkpoint, short_speech, capsys):
    PIL.Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    out = tmp_path / "never.mp4"
    code = main(["generate", "--image", str(tmp_path / "wall.png"), "--audio", str(short_speech), "--out", str(out), "--checkpoint", str(tiny_checkpoint)])
    assert code != 0
    assert "no face" in capsys.readouterr().err.lower()
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "wall.png"]


def test_generate_renders_with_the_fast_engine_unless_asked_for_the_reference(tmp_path, tiny_checkpoint, short_speech, monkeypatch):
    from s3d_pipeline import S3DNeRFPipeline

    engines = []
    original = S3DNeRFPipeline.render_frames

    def spy(self, *args, fast=True, **kwargs):
        engines.append(fast)
        return original(self, *args, fast=fast, **kwargs)

    monkeypatch.setattr(S3DNeRFPipeline, "render_frames", spy)
    args = ["generate", "--audio", str(short_speech), "--checkpoint", str(tiny_checkpoint), "--crop"]
    assert main([*args, "--out", str(tmp_path / "fast.mp4")]) == 0
    assert engines and all(engines)
    engines.clear()
    assert main([*args, "--out", str(tmp_path / "reference.mp4"), "--reference", "--seed", "3"]) == 0
    assert engines and not any(engines)
