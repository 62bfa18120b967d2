"""Image + text late fusion into one FER-7 distribution, and the synthetic paired evaluation.

The text models speak DAIR-AI's 6 labels; :data:`fermm.labels.TEXT6_TO_FER7` moves their mass onto
FER-7 (love -> happy; nothing maps to disgust or neutral). Fusion is a weighted mean of the two
distributions, ``(1 - w) * p_image + w * p_text``, with ``w`` fitted on validation pairs. No text ->
the image result exactly; no face -> the text result alone.

No dataset pairs faces with sentences, so the evaluation pairs FER faces with DAIR sentences whose
label maps to the face's label (congruent), or to another label (conflict). That pairing is synthetic:
it measures how the two signals combine, not how people caption photos.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm.labels import FER7, TEXT6, TEXT6_TO_FER7, text6_to_fer7_matrix

DEFAULT_TEXT_WEIGHT = 0.5
FUSION_FILE = "fusion.json"  # in results/: the fitted weight, written by eval/fusion.py


def text_to_fer7(p_text: np.ndarray, mapping: dict[str, str | None] | None = None) -> np.ndarray:
    """(N, 6) DAIR-AI probabilities -> (N, 7) FER-7 probabilities (``mapping``: see
    :func:`fermm.labels.text6_to_fer7_matrix`). The mass of a label mapped to None is spread evenly over
    FER-7: that label then says nothing about the face, rather than sharpening the others."""
    p = np.asarray(p_text, dtype=np.float64) @ np.asarray(text6_to_fer7_matrix(mapping))
    return p + (1 - p.sum(1, keepdims=True)) / len(FER7)


def fuse(p_image: np.ndarray, p_text_fer: np.ndarray | None, weight: float) -> np.ndarray:
    """(N, 7) image probabilities fused with one (7,) or (N, 7) text distribution; None -> unchanged."""
    if p_text_fer is None:
        return p_image
    return (1 - weight) * np.asarray(p_image, dtype=np.float64) + weight * np.asarray(p_text_fer, dtype=np.float64)


def fit_weight(p_image: np.ndarray, p_text_fer: np.ndarray, y: np.ndarray,
               grid: Sequence[float] = tuple(np.linspace(0, 1, 21))) -> tuple[float, dict[float, float]]:
    """The text weight with the best accuracy on validation pairs (ties: lower log-loss)."""
    scores = {}
    for w in grid:
        p = fuse(p_image, p_text_fer, w)
        acc = float((p.argmax(1) == y).mean())
        nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-9, 1)).mean())
        scores[round(float(w), 4)] = (acc, -nll)
    best = max(scores, key=lambda w: scores[w])
    return best, {w: s[0] for w, s in scores.items()}


class LearnedFusion:
    """The "small learned fusion head": multinomial logistic regression on [log p_image, log p_text]
    (14 features -> FER-7), fitted on validation pairs. Compared with the weighted mean in eval/fusion.py."""

    def __init__(self, c: float = 1.0, seed: int = 0):
        from sklearn.linear_model import LogisticRegression  # lazy: a heavy import, paid only when this runs

        self.clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)

    @staticmethod
    def features(p_image: np.ndarray, p_text_fer: np.ndarray) -> np.ndarray:
        return np.log(np.clip(np.concatenate([p_image, p_text_fer], 1), 1e-6, 1))  # (N, 14)

    def fit(self, p_image: np.ndarray, p_text_fer: np.ndarray, y: np.ndarray) -> "LearnedFusion":
        self.clf.fit(self.features(p_image, p_text_fer), y)
        return self

    def predict_proba(self, p_image: np.ndarray, p_text_fer: np.ndarray) -> np.ndarray:
        """(N, 7) over FER-7 (classes never seen in fitting get probability 0)."""
        out = np.zeros((len(p_image), len(FER7)))
        out[:, self.clf.classes_] = self.clf.predict_proba(self.features(p_image, p_text_fer))
        return out


def pair_sentences(face_labels: np.ndarray, text_labels: np.ndarray, conflict: bool, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For each face whose FER label some text label maps to, a random sentence index of that label
    (``conflict=False``) or of a label mapping elsewhere (``conflict=True``). Returns (face idx, sentence idx)."""
    rng = np.random.default_rng(seed)
    text_fer = np.array([FER7.index(TEXT6_TO_FER7[TEXT6[t]]) for t in text_labels])
    faces, sentences = [], []
    for i, y in enumerate(face_labels):
        if y not in text_fer:  # disgust and neutral have no sentences
            continue
        pool = np.flatnonzero(text_fer != y) if conflict else np.flatnonzero(text_fer == y)
        faces.append(i)
        sentences.append(int(rng.choice(pool)))
    return np.array(faces), np.array(sentences)


def load_weight(results_dir: str | Path) -> float:
    """The fitted text weight from ``results/fusion.json``, or the default when not fitted yet."""
    path = Path(results_dir) / FUSION_FILE
    try:
        return float(json.loads(path.read_text())["text_weight"])
    except (OSError, KeyError, ValueError):
        return DEFAULT_TEXT_WEIGHT
