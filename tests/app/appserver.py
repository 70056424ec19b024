"""Serving the demo in tests: bound to 127.0.0.1 on a free port, stopped after the tests or after a time limit,
whichever comes first. Shared by the API and browser tests (a helper module, not a conftest, so it cannot
shadow the suite's root ``conftest``)."""

import contextlib
import socket
import sys
import threading
from typing import Iterator

from s3d_pipeline.paths import REPO_ROOT

SERVER_TIME_LIMIT = 300.0  # seconds a test server may live, even if a test hangs


def import_app():
    """``app.py`` imported from the repository root (it is a script, not part of the package)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import app

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(pipe, config=None) -> Iterator[str]:
    """Build and serve the demo around ``pipe`` (with the app's default limits, or ``config``: an ``AppConfig``);
    yields its URL and closes the server on exit."""
    app = import_app()
    config = config or app.AppConfig()
    demo = app.build_demo(pipe, config)
    port = _free_port()
    app.launch(demo, config, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    watchdog = threading.Timer(SERVER_TIME_LIMIT, demo.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        watchdog.cancel()
        demo.close()
