"""Scores of a FER-7 text model: GoEmotions (Ekman) with the dataset paper's multi-label protocol, and
DAIR-AI emotion on FER labels.

- ``multilabel_macro_f1``: macro-F1 over the 7 labels of ``sigmoid >= threshold``, with the per-label
  thresholds fitted on validation (stored with the model); ``multilabel_macro_f1_at_0.3`` uses the paper's
  fixed 0.3. Both over every row of the split, multi-label rows included.
- ``accuracy`` (and the schema's other single-answer metrics): the top label of the calibrated softmax on the
  rows with one label.
- ``dair_fer7``: DAIR-AI's test sentences, their label mapped to FER-7 (love -> happy), the top label over all
  7 (an answer of neutral or disgust counts as wrong); ``accuracy_emotions_only`` takes the top of the 5 labels
  DAIR-AI can express.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.special import expit

from fermm import data
from fermm.data.goemotions import dair_as_fer7, load_goemotions, multi_hot
from fermm.evaluation import metrics
from fermm.evaluation.calibration import multilabel_macro_f1
from fermm.labels import FER7

PAPER_THRESHOLD = 0.3


def goemotions_scores(model, goemotions: str, dair: str | None, split: str, seed: int) -> dict:
    """Result fields of ``model`` on GoEmotions ``split`` (and DAIR-AI's, when ``dair`` is given)."""
    ds = load_goemotions(goemotions)[split]
    texts, y = list(ds["text"]), multi_hot(ds["labels"])
    t0 = time.perf_counter()
    logits = model.logits_text(texts).numpy().astype(np.float64)
    rate = len(texts) / (time.perf_counter() - t0)
    single = y.sum(1) == 1
    probs = _softmax(logits / model.temperature)
    thresholds = model.thresholds or [0.5] * len(FER7)
    out = {"dataset": goemotions, **metrics.score(probs[single], y[single].argmax(1), FER7, seed),
           "n_multilabel_rows": int((~single).sum()), "n_all_rows": len(texts),
           "multilabel_macro_f1": multilabel_macro_f1(y, logits, thresholds),
           "multilabel_macro_f1_at_0.3": multilabel_macro_f1(y, logits, PAPER_THRESHOLD),
           "multilabel_per_class_f1": per_label_f1(y, logits, thresholds), "thresholds": list(thresholds),
           "temperature": model.temperature, "images_per_second": rate}
    if dair:
        out["dair_fer7"] = dair_scores(model, dair, split)
    return out


def per_label_f1(y: np.ndarray, logits: np.ndarray, thresholds) -> dict[str, float]:
    """F1 of each label's positive class (``sigmoid >= its threshold``)."""
    from sklearn.metrics import f1_score  # lazy: a heavy import, paid only when this runs

    pred = expit(logits) >= np.asarray(thresholds)
    return {lab: float(f1_score(y[:, c] > 0, pred[:, c], zero_division=0)) for c, lab in enumerate(FER7)}


def dair_scores(model, dair: str, split: str) -> dict:
    ds = data.load_text(dair)[split]
    targets, mask = dair_as_fer7(np.asarray(ds["label"]))
    y = targets.argmax(1)
    probs = model.predict_text(list(ds["text"])).numpy()
    known = mask[0] > 0  # the labels DAIR-AI can express
    pred_known = np.flatnonzero(known)[probs[:, known].argmax(1)]
    return {"dataset": dair, "split": split, "n": len(y), "accuracy": float((probs.argmax(1) == y).mean()),
            "accuracy_emotions_only": float((pred_known == y).mean()),
            "answered_neutral": float((probs.argmax(1) == FER7.index("neutral")).mean())}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
