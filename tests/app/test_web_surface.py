"""The served app's attack surface, as an outside caller meets it over HTTP: file routes, file and URL inputs,
server-side checks of every control, the upload limit, disk use over repeated requests, and the queue."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from appserver import import_app, serve
from s3d_pipeline.app import AppConfig
from s3d_pipeline.paths import DEFAULT_AUDIO, DEFAULT_IMAGE, REPO_ROOT

CONTROLS = ["still", 1.0, 10, "face crop", 0, "fast"]  # motion, mouth, fps, framing, seed, renderer


@pytest.fixture(scope="module")
def gradio_dir(tmp_path_factory):
    """Gradio's upload and cache folder for this module's servers, so its contents can be measured."""
    folder = tmp_path_factory.mktemp("gradio")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["GRADIO_TEMP_DIR"]
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="module")
def server(tiny_pipe, gradio_dir):
    with serve(tiny_pipe, AppConfig(max_kept_videos=2, max_audio_seconds=5.0)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def call(url: str, api: str, data: list) -> tuple:
    """One call through Gradio's plain HTTP API (what curl users do, no client-side checks): (event, payload)."""
    event_id = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{event_id}", timeout=60) as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.split(":", 1)[1])
    return event, None


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def uploaded(url: str, path: Path) -> str:
    with open(path, "rb") as handle:
        return httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, handle)}, timeout=30).json()[0]


# ------------------------------------------------------------------------------------------------ file routes
SECRET_PATHS = [
    "/etc/passwd",
    str(REPO_ROOT / "app.py"),
    str(next((REPO_ROOT / "checkpoints").rglob("*.safetensors"))),
]


@pytest.mark.parametrize("target", SECRET_PATHS)
def test_file_routes_serve_nothing_outside_the_allowed_set(server, gradio_dir, target):
    attempts = [
        target,
        f"{gradio_dir}/../../../../..{target}",  # traversal out of the cache folder
        quote(f"{gradio_dir}/../../../../..{target}", safe=""),  # the same, percent-encoded
        f"{gradio_dir}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{target}",
    ]
    for attempt in attempts:
        response = httpx.get(f"{server}gradio_api/file={attempt}", timeout=10)
        assert response.status_code in (403, 404), (attempt, response.status_code)
        assert b"root:" not in response.content and b"import gradio" not in response.content


def test_a_generated_video_is_served_from_the_cache(server):
    image, audio = file_data(uploaded(server, DEFAULT_IMAGE)), file_data(uploaded(server, DEFAULT_AUDIO))
    event, payload = call(server, "generate", [image, audio, "", True, 0, 0, 0, *CONTROLS])
    assert event == "complete"
    response = httpx.get(payload[0]["url"], timeout=10)
    assert response.status_code == 200 and response.content[4:8] == b"ftyp"  # the control case: an mp4 comes back


def test_api_inputs_must_be_uploads_not_server_paths(server):
    for path in ["/etc/passwd", str(REPO_ROOT / "app.py")]:
        event, payload = call(server, "generate", [file_data(path), file_data(str(DEFAULT_AUDIO)), "", True, 0, 0, 0, *CONTROLS])
        assert event == "error", payload


class _Recorder(BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(DEFAULT_IMAGE.read_bytes())

    def log_message(self, *args):
        pass


def test_url_inputs_to_private_addresses_are_refused(server):
    local = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    try:
        urls = [f"http://127.0.0.1:{local.server_port}/face.png", f"http://localhost:{local.server_port}/face.png", "http://169.254.169.254/latest/meta-data/face.png", "http://10.0.0.1/face.png"]
        for url in urls:
            image = {"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}
            event, payload = call(server, "generate", [image, file_data(uploaded(server, DEFAULT_AUDIO)), "", True, 0, 0, 0, *CONTROLS])
            assert event == "error", (url, payload)
        assert _Recorder.hits == []  # the server never fetched from the private address
    finally:
        local.shutdown()


# ------------------------------------------------------------------------------------------------ controls and consent
@pytest.mark.parametrize(
    "controls,match",
    [(dict(yaw=90), "Yaw"), (dict(pitch=-40), "Pitch"), (dict(mouth_amplitude=9), "Mouth"), (dict(fps=500), "Frames per second"), (dict(seed=-3), "less than minimum value 0"), (dict(motion="spin"), "not in the list of choices")],
)
def test_out_of_range_controls_are_refused_for_api_callers(client, controls, match):
    with pytest.raises(AppError, match=match):
        client.predict(image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(DEFAULT_AUDIO)), consent=True, api_name="/generate", **controls)


@pytest.mark.parametrize("consent", [False, None, "true", 1])
def test_consent_must_be_exactly_true_over_plain_http(server, consent):
    image, audio = file_data(uploaded(server, DEFAULT_IMAGE)), file_data(uploaded(server, DEFAULT_AUDIO))
    event, payload = call(server, "generate", [image, audio, "", consent, 0, 0, 0, *CONTROLS])
    assert event == "error"


# ------------------------------------------------------------------------------------------------ uploads and disk
def test_uploads_over_the_limit_are_refused_with_the_limit_in_the_message(server, tmp_path):
    big = tmp_path / "big.wav"
    with open(big, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)  # 16 MB of zeros (sparse): over the 15 MB limit
    with open(big, "rb") as handle:
        response = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.wav", handle)}, timeout=60)
    assert response.status_code == 413
    assert "maximum allowed size" in response.text and str(15 * 1024 * 1024) in response.text


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_repeated_requests_do_not_grow_disk_use(client, gradio_dir):
    app = import_app()

    def generate():
        client.predict(image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(DEFAULT_AUDIO)), consent=True, fps=10, api_name="/generate")

    for _ in range(2):
        generate()
    before = _folder_bytes(gradio_dir)
    for _ in range(3):
        generate()
    videos = list((gradio_dir / app.VIDEO_FOLDER).glob("*.mp4"))
    assert len(videos) == 2  # max_kept_videos
    assert _folder_bytes(gradio_dir) <= before
    assert not [p for p in (gradio_dir / app.VIDEO_FOLDER).iterdir() if p.name.startswith(".")]  # no temporaries left


# ------------------------------------------------------------------------------------------------ the queue
class GatedPipe:
    """The tiny pipeline, but each video waits until the test opens the gate: a request that is "still rendering"."""

    def __init__(self, pipe):
        self._pipe = pipe
        self.gate = threading.Event()
        self.started = threading.Event()

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def _wait(self):
        self.started.set()
        assert self.gate.wait(120), "the test never opened the gate"

    def __call__(self, *args, crop=None, **kwargs):
        self._wait()
        return self._pipe(*args, crop=crop, **kwargs)

    def export(self, *args, **kwargs):  # the app writes its videos through pipe.export
        self._wait()
        return self._pipe.export(*args, **kwargs)


def test_a_full_queue_turns_callers_away_with_a_busy_message(tiny_pipe, gradio_dir):
    gated = GatedPipe(tiny_pipe)
    with serve(gated, AppConfig(concurrency_limit=1, max_queue_size=1)) as url:
        client = Client(url, verbose=False)
        kwargs = dict(image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(DEFAULT_AUDIO)), consent=True, fps=10, api_name="/generate")
        running = client.submit(**kwargs)
        assert gated.started.wait(60)
        waiting = client.submit(**kwargs)
        while waiting.status().code.name not in ("IN_QUEUE", "QUEUE_FULL"):  # until the server has queued it
            time.sleep(0.05)
        with pytest.raises(Exception, match="Queue is full"):
            client.predict(**kwargs)
        gated.gate.set()
        assert running.result(timeout=120)[0].endswith(".mp4") and waiting.result(timeout=120)[0].endswith(".mp4")
