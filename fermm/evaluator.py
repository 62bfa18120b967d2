"""Evaluate models on a FER split, the same way for every model (used by ``eval/evaluate.py``)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fermm import data, evaluation

log = logging.getLogger(__name__)


def load_split(dataset: str, split: str) -> dict:
    """Images (uint8 48x48), labels and FER+ majority labels (or None) of one split."""
    ds = data.load_fer(dataset)
    if split not in ds:
        raise ValueError(f"{dataset} has no split {split!r} (it has {', '.join(ds)})")
    images, labels = data.to_arrays(ds[split])
    fp = np.asarray(ds[split]["ferplus_label"]) if "ferplus_label" in ds[split].column_names else None
    return {"images": images, "labels": labels, "ferplus": fp}


def predict_split(model, images: np.ndarray, tta: str, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """(N, K) probabilities and images per second (prediction time only, batch ``batch_size``)."""
    faces = list(images)
    t0 = time.perf_counter()
    probs = model.predict_proba(faces, tta=tta, batch_size=batch_size)
    secs = time.perf_counter() - t0
    return probs.numpy().astype(np.float64), len(faces) / secs


def evaluate_model(model, name: str, source: str, split_data: dict, dataset: str, split: str, tta: str,
                   run: evaluation.RunInfo) -> dict:
    """One result dict in the schema of :mod:`fermm.evaluation`."""
    probs, ips = predict_split(model, split_data["images"], tta)
    y = _labels_for(model, split_data["labels"])
    result = {"model": name, "source": source, "dataset": dataset, "split": split, "tta": tta,
              **evaluation.score(probs, y, model.labels, run.seed, split_data["ferplus"]),
              "images_per_second": ips, **run.as_dict(), "schema_version": evaluation.SCHEMA_VERSION}
    return result


def _labels_for(model, fer7_labels: np.ndarray) -> np.ndarray:
    """FER-7 label ids -> the model's label ids (its labels must include all of FER-7)."""
    from fermm.labels import FER7

    missing = [lab for lab in FER7 if lab not in model.labels]
    if missing:
        raise ValueError(f"model labels {model.labels} lack {missing}: it cannot be scored on FER2013")
    mapping = np.array([list(model.labels).index(lab) for lab in FER7])
    return mapping[fer7_labels]


def evaluate_all(names: Sequence[str], dataset: str, split: str, tta: str, output_dir: str | Path,
                 run: evaluation.RunInfo) -> tuple[list[Path], dict[str, str]]:
    """Evaluate every model that resolves; returns written files and {model: reason} for skipped ones."""
    from fermm.hub import resolve
    from fermm.models import MODELS, load_model

    torch.manual_seed(run.seed)
    split_data = load_split(dataset, split)
    written, skipped = [], {}
    for name_or_path in names:
        name = name_or_path if name_or_path in MODELS else Path(name_or_path.rstrip("/")).name
        source = resolve(name_or_path) if name_or_path in MODELS else name_or_path
        try:
            model = load_model(name_or_path)
        except Exception as e:  # one model's absence never stops the others
            skipped[name] = f"{type(e).__name__}: {e}"
            log.warning("skipping %s: %s", name, skipped[name])
            continue
        result = evaluate_model(model, name, source, split_data, dataset, split, tta, run)
        written.append(evaluation.write_result(result, output_dir))
        log.info("%s: accuracy %.4f (95%% CI %.4f-%.4f), macro-F1 %.4f, %.0f img/s", name, result["accuracy"],
                 *result["accuracy_ci95"], result["macro_f1"], result["images_per_second"])
    return written, skipped
