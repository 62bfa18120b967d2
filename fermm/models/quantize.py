"""int8 graphs stored beside a CNN's weights: built once from calibration faces, validated every time they load.

``python train/quantize.py --model checkpoints/glove_cnn`` writes two files into the model's folder:

- ``model.int8.onnx``: the model's forward with int8 weights and activations (ONNX Runtime's static QDQ
  quantisation, per-channel weights, activations calibrated on FER2013 *train* faces);
- ``model.int8.json``: what it was made from and how to check it (CLIP-LoRA's rule: save what you need with its
  metadata, validate on load): the fingerprint of the folder's config and weights, the graph's hash, the
  calibration, how far its answers on a seeded probe batch were from PyTorch's, and the accuracy it was measured at.

:func:`stored_int8` loads it only if the weights are the ones it was made from and the
graph still answers the probe batch as close to the model as it did; otherwise the model runs in PyTorch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
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
FORMAT = "fermm-int8-qdq/2"
PROBE_SEED, PROBE_BATCH = 0, 4
# On load the graph's probabilities on the probe batch may differ from the module's own fp32 ones by the gap recorded
# when it was made (0.021-0.025 for the bundled CNNs) plus this slack, which leaves room for other CPUs' int8
# kernels; another model's graph differs by far more (glove_cnn against fast_cnn: 0.54).
PROBE_SLACK = 0.05

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


def probe_gap(forward, module: nn.Module) -> float:
    """Largest difference between the probabilities of ``forward`` (e.g. an int8 graph) and of ``module`` itself in
    PyTorch on :func:`probe`."""
    x = probe(module.channels, module.input_size)
    with torch.inference_mode():
        return float((forward(x).float().softmax(-1) - module(x).float().softmax(-1)).abs().max())


def save_int8(model, folder: str | Path, graph: bytes, record: dict) -> Path:
    """Write ``graph`` and its metadata (``record`` plus the folder's fingerprint, the graph's hash and its gap to
    PyTorch on the probe batch) into ``folder``. Each file is written beside and renamed into place, the metadata
    last: an interrupted save leaves either the old pair or a graph without metadata, which is never used."""
    folder = Path(folder)
    for stale in folder.glob("*.tmp"):  # left by an interrupted save
        stale.unlink()
    gap = probe_gap(OnnxForward(model, probe(model.channels, model.input_size)[:1], graph), model)
    meta = {"format": FORMAT, "source_fingerprint": fingerprint(folder),
            "graph_sha256": hashlib.sha256(graph).hexdigest(),
            "probe": {"seed": PROBE_SEED, "batch": PROBE_BATCH, "max_gap_fp32": round(gap, 5)}, **record}
    (folder / META).unlink(missing_ok=True)
    _write_atomically(folder / GRAPH, graph)
    _write_atomically(folder / META, (json.dumps(meta, indent=2) + "\n").encode())
    return folder / GRAPH


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_meta(folder: str | Path) -> dict | None:
    """The folder's int8 metadata, or None when it has no int8 graph (ValueError if the metadata is damaged)."""
    folder = Path(folder)
    if not ((folder / GRAPH).exists() and (folder / META).exists()):
        return None
    return json.loads((folder / META).read_text())


def stored_int8(module: nn.Module, folder: str | Path) -> OnnxForward | None:
    """The int8 graph saved in ``folder`` for ``module``, validated; None (PyTorch then runs) when there is none,
    ``FERMM_RUNTIME`` is not ``auto``, or it fails a check (one log line says which)."""
    if choice() != "auto":
        return None
    try:
        meta = read_meta(folder)
        if meta is None:
            return None
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}: run train/quantize.py again")
        if meta.get("source_fingerprint") != fingerprint(folder):
            raise ValueError("it was made from other weights or config than the folder holds")
        graph = (Path(folder) / GRAPH).read_bytes()
        if hashlib.sha256(graph).hexdigest() != meta.get("graph_sha256"):
            raise ValueError("the graph file is not the one its metadata describes")
        fast = OnnxForward(module, probe(module.channels, module.input_size)[:1], graph, "int8")
        gap, recorded = probe_gap(fast, module), float(meta["probe"]["max_gap_fp32"])
        if gap > recorded + PROBE_SLACK:
            raise ValueError(f"on the probe batch it differs from the model by {gap:.3f} (recorded: {recorded:.3f})")
    except Exception as e:  # a stale, damaged or foreign graph: slower, never wrong
        log.warning("int8 graph of %s not used (%s: %s); running in PyTorch", Path(folder).name, type(e).__name__, e)
        return None
    return fast
