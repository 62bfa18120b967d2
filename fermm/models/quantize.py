"""int8 graphs stored beside a CNN's weights: built once from calibration faces, validated every time they load.

``python train/quantize.py --model checkpoints/glove_cnn`` writes two files into the model's folder:

- ``model.int8.onnx``: the model's forward with int8 weights and activations (ONNX Runtime's static QDQ
  quantisation, per-channel weights, activations calibrated on FER2013 *train* faces);
- ``model.int8.json``: what it was made from and how to check it (CLIP-LoRA's rule: save what you need with its
  metadata, validate on load): the fingerprint of the folder's config and weights, the calibration, and the
  graph's outputs on a seeded probe batch, plus the accuracy it was measured at.

:func:`stored_int8` loads it only if the weights are the ones it was made from and the
graph still gives the recorded outputs; otherwise the model runs in PyTorch, as before.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fermm.models.registry import fingerprint
from fermm.models.runtime import OnnxForward, choice, export

log = logging.getLogger(__name__)

GRAPH, META = "model.int8.onnx", "model.int8.json"
FORMAT = "fermm-int8-qdq/1"
PROBE_SEED, PROBE_BATCH = 0, 4
PROBE_ATOL = 0.02  # on probabilities: int8 kernels differ a little between CPUs; a wrong graph differs by far more


def probe(channels: int, size: int) -> torch.Tensor:
    """A seeded (4, C, H, W) batch in the models' normalised input range, the same on every machine: smooth
    random shading (6x6 noise upsampled), on which the CNNs give confident, input-dependent answers (white
    noise gets nearly the same answer for every image, so it would tell graphs apart poorly)."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    coarse = torch.randn(PROBE_BATCH, channels, 6, 6, generator=g)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(-2, 2)


def int8_graph(model, calibration: np.ndarray) -> bytes:
    """``model``'s ONNX graph with int8 weights and activations, calibrated on ``calibration`` (N, H, W) faces."""
    from onnxruntime.quantization import (  # lazy: a heavy import, paid only when this runs
        CalibrationDataReader, QuantFormat, QuantType, quantize_static)

    batches = [model.preprocess(list(calibration[i:i + 64])).numpy() for i in range(0, len(calibration), 64)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {"x": np.ascontiguousarray(batch, dtype=np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(export(model, torch.zeros(1, model.channels, model.input_size, model.input_size)))
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return int8.read_bytes()


def probe_probs(forward, model) -> list[list[float]]:
    """The probabilities ``forward`` (a module or an OnnxForward) gives on :func:`probe`, rounded for JSON."""
    with torch.inference_mode():
        p = forward(probe(model.channels, model.input_size)).float().softmax(-1)
    return [[round(float(v), 5) for v in row] for row in p]


def save_int8(model, folder: str | Path, graph: bytes, record: dict) -> Path:
    """Write ``graph`` and its metadata (``record`` plus fingerprint and probe outputs) into ``folder``.

    The metadata is written last, so an interrupted save leaves no metadata for a new graph (it then is not used).
    """
    folder = Path(folder)
    session = OnnxForward(model, probe(model.channels, model.input_size)[:1], graph)
    meta = {"format": FORMAT, "source_fingerprint": fingerprint(folder),
            "probe": {"seed": PROBE_SEED, "batch": PROBE_BATCH, "probs": probe_probs(session, model)}, **record}
    (folder / META).unlink(missing_ok=True)
    (folder / GRAPH).write_bytes(graph)
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return folder / GRAPH


def read_meta(folder: str | Path) -> dict | None:
    """The folder's int8 metadata, or None when it has no int8 graph."""
    folder = Path(folder)
    if not ((folder / GRAPH).exists() and (folder / META).exists()):
        return None
    return json.loads((folder / META).read_text())


def stored_int8(module: nn.Module, folder: str | Path) -> OnnxForward | None:
    """The int8 graph saved in ``folder`` for ``module``, validated; None (PyTorch then runs) when there is none,
    ``FERMM_RUNTIME`` is not ``auto``, or it fails a check (one log line says which)."""
    if choice() != "auto" or (meta := read_meta(folder)) is None:
        return None
    name = Path(folder).name
    try:
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("source_fingerprint") != fingerprint(folder):
            raise ValueError("it was made from other weights or config than the folder holds")
        graph = (Path(folder) / GRAPH).read_bytes()
        fast = OnnxForward(module, probe(module.channels, module.input_size)[:1], graph, "int8")
        got, want = np.array(probe_probs(fast, module)), np.array(meta["probe"]["probs"])
        if got.shape != want.shape or np.abs(got - want).max() > PROBE_ATOL:
            raise ValueError("its outputs on the probe batch differ from the recorded ones")
    except Exception as e:  # a stale, damaged or foreign graph: slower, never wrong
        log.warning("int8 graph of %s not used (%s: %s); running in PyTorch", name, type(e).__name__, e)
        return None
    return fast
