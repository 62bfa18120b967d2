"""The app's threads per request: one by default, because concurrent requests already fill the cores.

Measured when detection still ran in OpenCV: with two threads per operation (PyTorch's, ONNX Runtime's and
OpenCV's default here), a one-face request's handler took 49 ms of CPU for 33 ms of wall time; with one, 40 ms of
CPU for 40 ms (640x480 photo, 2 cores). Under load the CPU is what runs out: an interleaved A/B of
``python -m bench.load`` gave 72-77 ms of app CPU per request with one thread, 78-79 with two (results/README.md,
Speed). A lone request waits a few ms longer. ``FERMM_THREADS`` overrides it (e.g. one user at a time).
"""
from __future__ import annotations

import os

APP_DEFAULT = 1  # bench.latency, bench.precision and bench.breakdown time a model call with it too


def app_threads(default: int = APP_DEFAULT) -> int:
    """``FERMM_THREADS`` or ``default``: the threads each operation of a request gets."""
    raw = os.environ.get("FERMM_THREADS", str(default))
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"FERMM_THREADS={raw!r}: expected a whole number of threads, e.g. 1") from None
    if n < 1:
        raise ValueError(f"FERMM_THREADS={n}: expected at least 1")
    return n


def configure_threads(default: int = APP_DEFAULT) -> int:
    """Set PyTorch's and OpenCV's thread counts (ONNX Runtime sessions created afterwards follow PyTorch's) to
    ``FERMM_THREADS`` or ``default``; returns the count. Call it before models load."""
    import cv2  # lazy: a heavy import, paid only when this runs
    import torch  # lazy: a heavy import, paid only when this runs

    n = app_threads(default)
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return n
