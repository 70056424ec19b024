"""The app's service on the tiny pipeline: a video with speech, mark and tag, the score and pictures, the
single-frame preview, identity caching, and readable errors for every bad input."""

import numpy as np
import PIL.Image
import pytest
import soundfile as sf

from media_helpers import probe_media, speech_like
from s3d_pipeline.app import AppConfig, ConsentRequiredError, GenerationRequest, InvalidControlError, TalkingHeadService
from s3d_pipeline.app.inputs import espeak_available
from s3d_pipeline.errors import FaceNotFoundError, InvalidAudioError, InvalidImageError
from s3d_pipeline.paths import DEFAULT_IMAGE


@pytest.fixture()
def service(tiny_pipe, tmp_path):
    return TalkingHeadService(tiny_pipe, AppConfig(max_audio_seconds=5.0), output_dir=tmp_path / "outputs")


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    """0.8 s of speech-like sound: enough frames for a lip-sync score, quick to render."""
    path = tmp_path_factory.mktemp("speech") / "short.wav"
    sf.write(path, speech_like(0.8), 16000)
    return str(path)


def request(audio, **controls):
    return GenerationRequest(**{"image": str(DEFAULT_IMAGE), "audio": audio, "consent": True, "fps": 10} | controls)


def test_generate_writes_a_marked_tagged_mp4_with_speech_and_a_score(service, short_speech):
    stages = []
    result = service.generate(request(short_speech, motion="nod", framing="full frame"), progress=lambda f, m: stages.append((f, m)))
    media = probe_media(result.video)
    assert media.audio == ["aac"] and media.video[0][0] == "h264"
    assert media.duration == pytest.approx(0.8, abs=0.1)
    assert "AI-generated" in media.log  # the metadata tag
    assert isinstance(result.confidence, float) and isinstance(result.offset, int)
    assert result.reading.level in ("good", "fair", "poor")
    assert len(result.sync_plot) == 8 - 5 + 1  # one row per 5-frame window
    assert result.attention.shape == result.depth.shape == (256, 256, 3)  # 64 px enlarged for display
    messages = [m for _, m in stages]
    assert messages[0] == "Encoding identity" and messages[1] == "Loading audio"
    assert "Rendering frame 8 of 8" in messages and messages[-1] == "Scoring lip sync and finishing the video"
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)


def test_framing_chooses_the_face_crop_or_the_whole_photo(service, short_speech, tiny_pipe):
    crop = service.generate(request(short_speech, framing="face crop"))
    full = service.generate(request(short_speech, framing="full frame"))
    photo = PIL.Image.open(DEFAULT_IMAGE)
    assert probe_media(crop.video).video[0][1:] == ("64", "64")
    assert probe_media(full.video).video[0][1:] == (str(photo.width), str(photo.height))


def test_preview_is_one_marked_frame_at_the_slider_pose(service, short_speech):
    front = service.preview(request(short_speech, framing="face crop"))
    turned = service.preview(request(short_speech, framing="face crop", yaw=20))
    assert front.shape == (64, 64, 3)
    assert np.abs(front.astype(int) - turned).max() > 0
    assert front[54:, :].std() > 0  # the mark sits at the bottom


def test_the_portrait_is_encoded_once_for_many_previews(service, tiny_pipe, monkeypatch):
    calls = []
    encode = tiny_pipe.encode_identity
    monkeypatch.setattr(tiny_pipe, "encode_identity", lambda image: calls.append(1) or encode(image))
    for yaw in (0, 5, 10):
        service.preview(GenerationRequest(image=str(DEFAULT_IMAGE), consent=True, yaw=yaw, framing="face crop"))
    assert len(calls) == 1


def test_nothing_is_generated_without_consent(service, short_speech, tiny_pipe, monkeypatch):
    monkeypatch.setattr(tiny_pipe, "encode_identity", lambda image: pytest.fail("rendered without consent"))
    for consent in (False, None, "yes"):
        with pytest.raises(ConsentRequiredError, match="consent"):
            service.generate(request(short_speech, consent=consent))
        with pytest.raises(ConsentRequiredError):
            service.preview(request(short_speech, consent=consent))
    assert not any(service.output_dir.iterdir())


@pytest.mark.parametrize(
    "controls,match",
    [(dict(yaw=40), "Yaw"), (dict(fps=100), "Frames per second"), (dict(motion="spin"), "Head motion"), (dict(framing="wide"), "Output"), (dict(seed=-1), "Seed"), (dict(seed=1.5), "Seed"), (dict(renderer="gpu"), "Renderer")],
)
def test_out_of_range_controls_are_refused_by_name(service, short_speech, controls, match):
    with pytest.raises(InvalidControlError, match=match):
        service.generate(request(short_speech, **controls))


def test_bad_inputs_give_readable_messages_without_server_paths(service, short_speech, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a picture, not a sound")
    with pytest.raises(InvalidImageError) as error:
        service.generate(GenerationRequest(image=str(text_file), audio=short_speech, consent=True))
    assert "notes.txt" in str(error.value) and str(tmp_path) not in str(error.value)
    with pytest.raises(InvalidAudioError) as error:
        service.generate(request(str(text_file)))
    assert "notes.txt" in str(error.value) and str(tmp_path) not in str(error.value)

    blank = tmp_path / "blank.png"
    PIL.Image.new("RGB", (320, 320), (120, 130, 140)).save(blank)
    with pytest.raises(FaceNotFoundError, match="No face was found"):
        service.generate(GenerationRequest(image=str(blank), audio=short_speech, consent=True))

    long_speech = tmp_path / "long.wav"
    sf.write(long_speech, speech_like(6.0), 16000)
    with pytest.raises(InvalidAudioError, match="6.0 s.*up to 5 s"):
        service.generate(request(str(long_speech)))

    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(InvalidAudioError, match="silent"):
        service.generate(request(str(silence)))

    with pytest.raises(InvalidImageError, match="Add a portrait"):
        service.generate(GenerationRequest(image=None, audio=short_speech, consent=True))
    with pytest.raises(InvalidAudioError, match="Add speech"):
        service.generate(request(None))


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_typed_text_is_spoken_when_no_speech_is_given(service):
    result = service.generate(GenerationRequest(image=str(DEFAULT_IMAGE), text="Hi there.", consent=True, fps=10))
    assert probe_media(result.video).audio == ["aac"]
    with pytest.raises(InvalidAudioError, match="at most"):
        service.generate(GenerationRequest(image=str(DEFAULT_IMAGE), text="x" * 1000, consent=True))


def test_renderer_chooses_the_fast_engine_or_the_seeded_reference(service, short_speech, tiny_pipe, monkeypatch):
    calls = []
    engine = tiny_pipe.fast_engine
    render = engine.render
    monkeypatch.setattr(engine, "render", lambda *args, **kwargs: calls.append(1) or render(*args, **kwargs))
    fast = [service.preview(request(short_speech, framing="face crop", seed=seed)) for seed in (0, 1)]
    assert calls and np.array_equal(fast[0], fast[1])  # the fast engine draws no random samples
    calls.clear()
    reference = [service.preview(request(short_speech, framing="face crop", renderer="reference", seed=seed)) for seed in (0, 1)]
    assert not calls and not np.array_equal(reference[0], reference[1])
