"""Load test of the demo app: N concurrent ``gradio_client`` callers send /generate requests to a local server.

Starts ``app.py`` in a child process (its own Gradio cache folder, so disk use is measured alone), or uses a
running app with ``--url``. Prints ONE JSON line: request count, callers, errors (and their messages),
latency p50/p95 in seconds, wall time, the server's peak resident memory, and its cache folder's size before
and after. Not part of the test suite (it takes minutes); run it by hand:

    python tools/loadtest.py --callers 8 --requests 50                 # the shipped checkpoint
    python tools/loadtest.py --callers 8 --requests 50 --checkpoint tiny   # random-weight tiny pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEECH_SECONDS = 1.0


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def short_speech(folder: Path) -> Path:
    """A speech-like clip (voiced tone, 4 Hz syllable envelope) of ``SPEECH_SECONDS``."""
    import soundfile as sf

    t = np.arange(int(SPEECH_SECONDS * 16000)) / 16000
    wave = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 160 * t)
    path = folder / "speech.wav"
    sf.write(path, wave.astype(np.float32), 16000)
    return path


def tiny_checkpoint(folder: Path) -> Path:
    """The tests' tiny random-weight pipeline saved as a checkpoint folder."""
    from s3d_pipeline.configs import build_pipeline

    path = folder / "tiny"
    build_pipeline("tiny", seed=0).save_pretrained(path)
    return path


def start_app(checkpoint: str, cache: Path) -> tuple:
    """``app.py`` on a free port in a child process; returns (process, url) once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, GRADIO_TEMP_DIR=str(cache), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "app.py"), "--checkpoint", checkpoint, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with code {process.returncode} before serving")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("app.py did not answer within 300 s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=8, help="concurrent gradio_client callers")
    parser.add_argument("--requests", type=int, default=50, help="total /generate requests")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder, or 'tiny' for the random-weight test pipeline (default: shipped)")
    parser.add_argument("--url", default=None, help="load a running app instead of starting one (no RSS or disk figures)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate requested")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    from s3d_pipeline.paths import DEFAULT_CHECKPOINT, DEFAULT_IMAGE

    with tempfile.TemporaryDirectory(prefix="s3d-loadtest-") as work:
        work = Path(work)
        cache = work / "gradio"
        cache.mkdir()
        speech = short_speech(work)
        checkpoint = args.checkpoint or str(DEFAULT_CHECKPOINT)
        if checkpoint == "tiny":
            checkpoint = str(tiny_checkpoint(work))
        process, url = (None, args.url) if args.url else start_app(checkpoint, cache)
        try:
            disk_before = folder_bytes(cache)
            clients = [Client(url, verbose=False) for _ in range(args.callers)]

            def one(index: int) -> tuple:
                start = time.perf_counter()
                try:
                    clients[index % args.callers].predict(
                        image=handle_file(str(DEFAULT_IMAGE)), audio=handle_file(str(speech)), consent=True,
                        fps=args.fps, renderer="fast", api_name="/generate",
                    )  # fmt: skip
                    return time.perf_counter() - start, None
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, not raised
                    return time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:200]

            wall = time.perf_counter()
            with ThreadPoolExecutor(args.callers) as pool:
                results = list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - wall
            latencies = np.array([seconds for seconds, error in results if error is None])
            errors = Counter(error for _, error in results if error is not None)
            report = {
                "callers": args.callers,
                "requests": args.requests,
                "ok": int(latencies.size),
                "errors": sum(errors.values()),
                "error_messages": dict(errors),
                "p50_s": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
                "p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies.size else None,
                "wall_s": round(wall, 1),
                "speech_s": SPEECH_SECONDS,
                "fps": args.fps,
                "checkpoint": args.checkpoint or "shipped",
                "peak_rss_mb": round(peak_rss_mb(process.pid), 1) if process else None,
                "disk_before_mb": round(disk_before / 1e6, 2),
                "disk_after_mb": round(folder_bytes(cache) / 1e6, 2) if process else None,
            }
        finally:
            if process is not None:
                process.terminate()
                process.wait(30)
    print(json.dumps(report))
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
