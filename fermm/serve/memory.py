"""The app's memory on glibc: fewer malloc arenas, big buffers given back as soon as they are freed, and
freed heap pages handed back after each request.

Gradio serves requests from many threads; glibc gives threads their own heaps (arenas, up to 8 per core) and
keeps freed memory for reuse, raising its mmap threshold after every large free so that later image-sized
buffers come from those heaps and stay resident. The app's RSS then climbs after a burst of requests and stays
up. ``python -m bench.session`` measures the effect (BENCHMARKS.md). Elsewhere (musl, macOS, Windows) these are
no-ops.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt parameters (malloc.h)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def configure_malloc(arenas: int = 2, mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """At most ``arenas`` heaps, and blocks of ``mmap_threshold`` bytes or more (a 64 MP image's buffers) mapped
    apart, so they return to the system when freed. Smaller ones stay on the heap: the models' per-call buffers
    reach ~11 MB (VGG11's im2col for a face and its mirror), and mapping those afresh on every call doubled
    ``glove_cnn``'s time (14 -> 26 ms at batch 2). A fixed mmap threshold also fixes glibc's trim threshold,
    which would hand the heap's top back after every call, so it is raised too; :func:`trim` after each request
    returns freed pages instead. Call it before threads start. ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``
    or ``MALLOC_TRIM_THRESHOLD_`` in the environment win over these. True if glibc took the settings."""
    if _LIBC is None:
        return False
    wanted = [(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX"), (M_MMAP_THRESHOLD, mmap_threshold, "MALLOC_MMAP_THRESHOLD_"),
              (M_TRIM_THRESHOLD, trim_threshold, "MALLOC_TRIM_THRESHOLD_")]
    return all(_LIBC.mallopt(param, value) == 1 for param, value, env in wanted if env not in os.environ)


def trim() -> None:
    """Give freed heap pages back to the system (glibc's malloc_trim)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
