"""The fast engine's malloc settings: freed buffers stay in the process for reuse instead of going back to the OS
(where the next frame would fault them in again, zero-filled)."""

import json
import os
import subprocess
import sys

import pytest

# Four 16 MB buffers (a block's activations at 256x256 are of that size) filled, then freed: how much of the
# process's resident memory goes back to the OS on the free.
PROBE = """
import json, os, torch
from s3d_pipeline.engines.fast.allocator import retain_freed_memory
applied = retain_freed_memory()
rss_mb = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
buffers = [torch.ones(4 * 2**20) for _ in range(4)]
held = rss_mb()
del buffers
print(json.dumps({"applied": applied, "returned_mb": held - rss_mb()}))
"""


def _probe(tuning: str) -> dict:
    env = dict(os.environ, S3D_NERF_MALLOC_TUNING=tuning, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc")
def test_freed_buffers_stay_for_reuse():
    tuned, default = _probe("1"), _probe("0")
    assert tuned["applied"] and not default["applied"]
    assert default["returned_mb"] > 48  # glibc's defaults unmap them: the next frame faults 16k pages back in
    assert tuned["returned_mb"] < 16  # kept on the heap, handed out again without a page fault


def test_fast_engine_applies_the_settings(monkeypatch):
    """Building the fast engine applies them."""
    from s3d_pipeline.configs import build_pipeline
    from s3d_pipeline.engines.fast import engine

    calls = []
    monkeypatch.setattr(engine, "retain_freed_memory", lambda: calls.append(1) or True)
    build_pipeline("tiny").fast_engine
    assert calls == [1]
