"""int8 graphs stored beside a CNN's weights: built once from calibration faces, validated every time they load.

``python train/quantize.py --model checkpoints/glove_cnn`` writes two files into the model's folder:

- ``model.int8.onnx``: the model's forward with int8 weights and activations (ONNX Runtime's static QDQ
  quantisation, per-channel weights, activations calibrated on FER2013 *train* faces);
- ``model.int8.json``: what it was made from and how to check it (CLIP-LoRA's rule: save what you need with its
  metadata, validate on load): the fingerprint of the folder's config and weights, the calibration, and the
  graph's outputs on a seeded probe batch, plus the accuracy it was measured at.

:func:`fermm.models.runtime.stored_int8` loads it only if the weights are the ones it was made from and the
graph still gives the recorded outputs; otherwise the model runs in PyTorch, as before.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from fermm.models.runtime import export

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
    from fermm.models.registry import fingerprint
    from fermm.models.runtime import OnnxForward

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


def quantize_folder(folder: str | Path, dataset: str, n_calibration: int, seed: int, max_drop: float,
                    threads: int, run) -> dict:
    """Calibrate, check on validation and store the int8 graph of the CNN saved in ``folder`` (see
    train/quantize.py); returns the record saved. Raises ValueError, writing nothing, when validation drops
    by more than ``max_drop`` points. ``run``: a :class:`fermm.evaluation.metrics.RunInfo`."""
    import onnxruntime

    from fermm.data import load_fer, to_arrays
    from fermm.models.cnn import CNNClassifier
    from fermm.models.families import model_class
    from fermm.models.runtime import OnnxForward

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not a saved model folder (no config.json)")
    torch.set_num_threads(threads)
    model = model_class(folder).from_pretrained(str(folder), strict=True).for_inference()
    if not isinstance(model, CNNClassifier):
        raise ValueError(f"{folder} holds a {type(model).__name__}; int8 graphs are made for the CNNs "
                         f"(e.g. glove_cnn, fast_cnn)")
    model.fast_forward = None  # PyTorch fp32: the reference
    ds = load_fer(dataset)
    train_x, _ = to_arrays(ds["train"])
    val_x, val_y = to_arrays(ds["validation"])
    pick = np.sort(np.random.default_rng(seed).choice(len(train_x), min(n_calibration, len(train_x)), replace=False))
    graph = int8_graph(model, train_x[pick])
    fp32 = _top_labels(model, val_x)
    model.fast_forward = OnnxForward(model, probe(model.channels, model.input_size)[:1], graph, "int8")
    int8 = _top_labels(model, val_x)
    model.fast_forward = None
    validation = {"n": int(len(val_y)), "accuracy_fp32": round(float((fp32 == val_y).mean()), 4),
                  "accuracy_int8": round(float((int8 == val_y).mean()), 4),
                  "agreement": round(float((fp32 == int8).mean()), 4)}
    drop = 100 * (validation["accuracy_fp32"] - validation["accuracy_int8"])
    if drop > max_drop:
        raise ValueError(f"int8 loses {drop:.2f} validation points (more than --max_drop {max_drop:g}); "
                         f"nothing written, {folder} serves PyTorch fp32")
    record = {"calibration": {"split": "train", "n": int(len(pick)), "seed": seed, "dataset": str(dataset)},
              "validation": validation, "onnxruntime": onnxruntime.__version__, **run.as_dict()}
    save_int8(model, folder, graph, record)
    write_card_section(folder, record)
    return record


def _top_labels(model, faces: np.ndarray) -> np.ndarray:
    """(N,) the model's top FER-7 label index for each face (FER2013's label order)."""
    from fermm.labels import to_fer7

    return to_fer7(model.predict_proba(list(faces), batch_size=256).numpy(), model.labels).argmax(1)


CARD_HEADING = "## Served precision"


def write_card_section(folder: Path, record: dict) -> None:
    """Put (or replace) the card's "Served precision" section, just before "## Intended use"."""
    card = folder / "README.md"
    if not card.exists():
        return
    v = record["validation"]
    section = (f"{CARD_HEADING}\n\nServed as an int8 graph in ONNX Runtime (`{GRAPH}`, activations calibrated on "
               f"{record['calibration']['n']} FER2013 train faces), about 3x faster per face than PyTorch here. On "
               f"FER2013 validation it scores {v['accuracy_int8']:.2%} against {v['accuracy_fp32']:.2%} in PyTorch "
               f"fp32, with the same top label on {v['agreement']:.2%} of faces (`{record['command']}`, commit "
               f"{record['commit']}, {record['date']}). If the weights change, the graph is not used: fermm checks "
               f"it against `{META}` on load. `FERMM_RUNTIME=torch` serves PyTorch.\n\n")
    text = card.read_text()
    if CARD_HEADING in text:
        start = text.index(CARD_HEADING)
        end = text.find("\n## ", start + len(CARD_HEADING))
        text = text[:start] + text[end + 1 if end >= 0 else len(text):]
    at = text.find("## Intended use")
    card.write_text(text[:at] + section + text[at:] if at >= 0 else text.rstrip() + "\n\n" + section)
