"""The disclosure survives encoding: a decoded H.264 mp4 from the app and from the CLI still shows the visible
"AI-generated" label and carries the tags."""

import numpy as np
import pytest
import soundfile as sf

from media_helpers import probe_media, speech_like
from s3d_pipeline.app import AppConfig, GenerationRequest, TalkingHeadService
from s3d_pipeline.app.watermark import VIDEO_METADATA, mark_frames
from s3d_pipeline.cli import main as cli_main
from s3d_pipeline.paths import DEFAULT_IMAGE
from s3d_pipeline.video import read_video


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, speech_like(0.8), 16000)
    return path


def assert_marked(video_path):
    """Every decoded frame has light letters on a dark box where the label is drawn, and the tags."""
    frames, _ = read_video(video_path)
    template = mark_frames(np.full((1,) + frames.shape[1:], 128, np.uint8))[0].mean(axis=-1)  # (H, W): the label on grey
    letters, box = template > 170, template < 100  # the label's strokes and the darkened box around them
    assert letters.sum() >= 5 and box.sum() > 20
    for frame in frames.astype(np.float32).mean(axis=-1):
        assert frame[letters].mean() - frame[box].mean() > 50  # still light on dark after H.264
    log = probe_media(video_path).log
    assert probe_media(video_path).video[0][0] == "h264"
    for value in VIDEO_METADATA.values():
        assert value in log


@pytest.mark.parametrize("framing", ["face crop", "full frame"])
def test_the_apps_video_keeps_its_mark_and_tags(tiny_pipe, tmp_path, speech, framing):
    service = TalkingHeadService(tiny_pipe, AppConfig(), output_dir=tmp_path)
    assert_marked(service.generate(GenerationRequest(str(DEFAULT_IMAGE), str(speech), consent=True, fps=10, framing=framing)).video)


def test_the_clis_video_keeps_its_mark_and_tags(tiny_pipe, tmp_path, speech, capsys):
    tiny_pipe.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "talking.mp4"
    assert cli_main(["generate", "--checkpoint", str(tmp_path / "ckpt"), "--audio", str(speech), "--out", str(out), "--fps", "10"]) == 0
    assert_marked(out)
