"""Keep freed memory in the process for reuse (glibc's malloc), so per-frame buffers do not page-fault.

The fast engine allocates and frees the same few-MB activations for every block of every frame. With glibc's
defaults, buffers above its (adaptive) mmap threshold are mapped fresh on each allocation and unmapped on free,
and the heap's free top is handed back to the OS whenever it passes the trim threshold; either way the next frame
touches new pages and the kernel zero-fills them. Measured on the demo weights with two render workers: about
2,500 minor page faults per 256x256 frame and 36.8-40.9 ms per frame; with the settings below 8-50 faults and
33.9-34.1 ms (`docs/performance.md`).

The cost: memory the engine frees stays in the process (up to ``TRIM_THRESHOLD``) instead of going back to the OS,
so RSS stays at its high-water mark. Set ``S3D_NERF_MALLOC_TUNING=0`` to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts: blocks up to 32 MB come from the reusable heap
TRIM_THRESHOLD = 2**30  # hand the heap's free top back to the OS only beyond 1 GB
TOP_PAD = 64 * 2**20  # grow the heap (and each thread's arena) 64 MB at a time

_applied = None  # None: not tried yet; then whether the settings took effect


def retain_freed_memory() -> bool:
    """Apply the settings once per process. Returns whether they are in effect: False where the C library has no
    ``mallopt`` (not glibc) or when ``S3D_NERF_MALLOC_TUNING=0``."""
    global _applied
    if _applied is None:
        _applied = os.environ.get("S3D_NERF_MALLOC_TUNING", "1") != "0" and _mallopt_all()
    return _applied


def _mallopt_all() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
