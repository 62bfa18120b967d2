"""Calibration fitted on validation: a softmax temperature for one answer per input, per-label sigmoid
thresholds for multi-label output, and the multi-label macro-F1 of the GoEmotions paper (Demszky et al. 2020).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of ``softmax(logits / T)`` on (N, C) logits and
    (N,) labels (Guo et al. 2017); searched over log T, so it cannot leave (0.05, 20)."""
    logits, y = np.asarray(logits, np.float64), np.asarray(y)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20)), method="bounded").x))


def multilabel_macro_f1(y: np.ndarray, logits: np.ndarray, thresholds: float | np.ndarray | list = 0.5) -> float:
    """Macro-F1 over labels of ``sigmoid(logits) >= thresholds`` against (N, C) multi-hot ``y``."""
    from sklearn.metrics import f1_score  # lazy: a heavy import, paid only when this runs

    pred = expit(np.asarray(logits, np.float64)) >= np.asarray(thresholds, np.float64)
    return float(f1_score(np.asarray(y) > 0, pred, average="macro", zero_division=0))


def fit_thresholds(y: np.ndarray, logits: np.ndarray, grid: np.ndarray | None = None) -> list[float]:
    """Per label, the sigmoid threshold with the best F1 on validation (ties: the one nearest 0.5)."""
    from sklearn.metrics import f1_score  # lazy: a heavy import, paid only when this runs

    grid = np.round(np.arange(0.05, 0.951, 0.01), 2) if grid is None else grid
    probs, y = expit(np.asarray(logits, np.float64)), np.asarray(y) > 0
    best = []
    for c in range(y.shape[1]):
        scores = [f1_score(y[:, c], probs[:, c] >= t, zero_division=0) for t in grid]
        top = max(scores)
        best.append(float(min((t for t, s in zip(grid, scores) if s == top), key=lambda t: abs(t - 0.5))))
    return best
