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

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters (malloc.h)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def configure_malloc(arenas: int = 2, mmap_threshold: int = 4 << 20) -> bool:
    """At most ``arenas`` heaps, and blocks of ``mmap_threshold`` bytes or more (image-sized: 4 MB is a 1-MP RGBA
    buffer; 1 MB cost the 16 x 25 load ~10 ms of CPU per request in page faults) mapped apart, so they return to
    the system when freed. Call it before threads start. ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` in the
    environment win over these. True if glibc took the settings."""
    if _LIBC is None:
        return False
    wanted = [(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX"), (M_MMAP_THRESHOLD, mmap_threshold, "MALLOC_MMAP_THRESHOLD_")]
    return all(_LIBC.mallopt(param, value) == 1 for param, value, env in wanted if env not in os.environ)


def trim() -> None:
    """Give freed heap pages back to the system (glibc's malloc_trim)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
