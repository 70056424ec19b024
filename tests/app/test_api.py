"""The served demo through its named API endpoints, as a gradio_client user calls it."""

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from appserver import serve
from media_helpers import probe_media
from s3d_pipeline.paths import DEFAULT_AUDIO, DEFAULT_IMAGE


@pytest.fixture(scope="module")
def client(tiny_pipe):
    with serve(tiny_pipe) as url:
        yield Client(url, verbose=False)


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/preview"} <= set(endpoints)
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["image", "audio", "text", "consent", "yaw", "pitch", "roll", "motion", "mouth_amplitude", "fps", "framing", "seed", "renderer"]


def test_generate_returns_an_mp4_with_speech_and_a_numeric_score(client):
    video, confidence, offset, reading, plot, attention, depth, download = client.predict(
        image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(DEFAULT_AUDIO)), consent=True, fps=10, api_name="/generate"
    )
    media = probe_media(video)
    assert media.video[0][0] == "h264" and media.audio == ["aac"]
    assert "AI-generated" in media.log
    assert isinstance(confidence, float) and isinstance(offset, int)
    assert reading.startswith("**Lip sync:")
    assert plot["columns"] == ["time (s)", "sync"] and len(plot["data"]) > 0
    assert attention and depth and download.endswith(".mp4")


def test_generate_without_consent_fails_with_a_clear_message(client):
    with pytest.raises(AppError, match="responsible-use statement"):
        client.predict(image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(DEFAULT_AUDIO)), api_name="/generate")


def test_files_of_the_wrong_kind_are_named_in_the_message(client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(AppError, match="notes.txt is not an image"):
        client.predict(image=handle_file(str(notes)), audio=handle_file(str(DEFAULT_AUDIO)), consent=True, api_name="/generate")
    with pytest.raises(AppError, match=r"'notes\.txt'") as error:
        client.predict(image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(notes)), consent=True, api_name="/generate")
    assert "/tmp/" not in str(error.value)  # the server's upload path stays private


def test_preview_needs_consent_and_then_renders_one_frame(client):
    image = handle_file(str(DEFAULT_IMAGE))
    frame, status = client.predict(image=image, audio=None, consent=False, api_name="/preview")
    assert frame is None and "consent" in status
    frame, status = client.predict(image=image, audio=None, consent=True, yaw=10, api_name="/preview")
    assert frame.endswith((".webp", ".png")) and status.startswith("Preview")
