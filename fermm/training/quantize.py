"""Post-training int8 quantisation of a saved CNN (``train/quantize.py``): calibrate on train, gate on validation,
store the graph beside the weights (fermm.models.quantize) and say so in the model card."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fermm.data import load_fer, to_arrays
from fermm.evaluation import cards
from fermm.evaluation.metrics import RunInfo
from fermm.labels import to_fer7
from fermm.models import quantize
from fermm.models.cnn import CNNClassifier
from fermm.models.families import model_class
from fermm.models.runtime import OnnxForward


def quantize_folder(folder: str | Path, dataset: str, n_calibration: int, seed: int, max_drop: float,
                    threads: int, run: RunInfo) -> dict:
    """Calibrate, check on validation and store the int8 graph of the CNN saved in ``folder`` (see
    train/quantize.py); returns the record saved. Raises ValueError, writing nothing, when validation drops
    by more than ``max_drop`` points (measured on each face alone, without the app's mirror view)."""
    import onnxruntime  # lazy: a heavy import, paid only when this runs

    torch.set_num_threads(threads)
    model = _load_cnn(Path(folder))
    ds = load_fer(dataset)
    train_x, _ = to_arrays(ds["train"])
    pick = np.sort(np.random.default_rng(seed).choice(len(train_x), min(n_calibration, len(train_x)), replace=False))
    graph = quantize.int8_graph(model, train_x[pick])
    validation = _compare_on(model, graph, *to_arrays(ds["validation"]))
    drop = 100 * (validation["accuracy_fp32"] - validation["accuracy_int8"])
    if drop > max_drop:
        raise ValueError(f"int8 loses {drop:.2f} validation points (more than --max_drop {max_drop:g}); "
                         f"nothing written, {folder} serves PyTorch fp32")
    record = {"calibration": {"split": "train", "n": int(len(pick)), "seed": seed, "dataset": str(dataset)},
              "validation": validation, "onnxruntime": onnxruntime.__version__, **run.as_dict()}
    quantize.save_int8(model, folder, graph, record)
    cards.write_int8_section(folder, record)
    return record


def _load_cnn(folder: Path) -> CNNClassifier:
    """The CNN saved in ``folder``, in PyTorch fp32 (the reference), whatever graph the folder holds."""
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not a saved model folder (no config.json)")
    model = model_class(folder).from_pretrained(str(folder), strict=True).for_inference()
    if not isinstance(model, CNNClassifier):
        raise ValueError(f"{folder} holds a {type(model).__name__}; int8 graphs are made for the CNNs "
                         f"(e.g. glove_cnn, fast_cnn)")
    model.fast_forward = None
    return model


def _compare_on(model: CNNClassifier, graph: bytes, faces: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy of ``model`` in PyTorch fp32 and as ``graph`` on the faces, and how often their top labels agree."""
    fp32 = _top_labels(model, faces)
    model.fast_forward = OnnxForward(model, quantize.probe(model.channels, model.input_size)[:1], graph, "int8")
    try:
        int8 = _top_labels(model, faces)
    finally:
        model.fast_forward = None
    return {"n": int(len(labels)), "accuracy_fp32": round(float((fp32 == labels).mean()), 4),
            "accuracy_int8": round(float((int8 == labels).mean()), 4),
            "agreement": round(float((fp32 == int8).mean()), 4)}


def _top_labels(model, faces: np.ndarray) -> np.ndarray:
    """(N,) the model's top FER-7 label index for each face (FER2013's label order)."""
    return to_fer7(model.predict_proba(list(faces), batch_size=256).numpy(), model.labels).argmax(1)
