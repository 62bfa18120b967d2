"""Image + text late fusion into one FER-7 distribution, and the synthetic paired evaluation.

The product's text models read FER-7 (GoEmotions); earlier ones read DAIR-AI's 6 labels, moved onto FER-7
by :data:`fermm.labels.TEXT6_TO_FER7` (love -> happy). The text counts as *evidence of an emotion*: its
neutral mass says nothing about the face, so it is taken out, and the rest votes with a weight scaled by how
much emotion the text expresses:

    e = 1 - p_text(neutral);  q = p_text without neutral, renormalised
    fused = (1 - w e) p_image + w e q

A neutral text (e ~ 0) leaves the face's answer as it is; an uncertain text (q flat) adds nearly even mass and
cannot overturn a confident face; a clear emotional sentence (e ~ 1, q peaked) moves an uncertain face. ``w`` is
fitted on validation pairs. No text -> the image result exactly; no face -> the text result alone.

No dataset pairs faces with sentences, so the evaluation pairs FER faces with sentences of the same label
(congruent), neutral sentences, and sentences of another emotion (conflict). That pairing is synthetic: it
measures how the two signals combine, not how people caption photos.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm.labels import FER7, text6_to_fer7_matrix

DEFAULT_TEXT_WEIGHT = 0.5
NEUTRAL = FER7.index("neutral")
FUSION_FILE = "fusion.json"  # in results/: the fitted weight, written by eval/fusion.py


def text_to_fer7(p_text: np.ndarray, mapping: dict[str, str | None] | None = None) -> np.ndarray:
    """(N, 6) DAIR-AI probabilities -> (N, 7) FER-7 probabilities (``mapping``: see
    :func:`fermm.labels.text6_to_fer7_matrix`). The mass of a label mapped to None is spread evenly over
    FER-7: that label then says nothing about the face, rather than sharpening the others."""
    p = np.asarray(p_text, dtype=np.float64) @ np.asarray(text6_to_fer7_matrix(mapping))
    return p + (1 - p.sum(1, keepdims=True)) / len(FER7)


def as_fer7(p_text: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(N, C) text probabilities over ``labels`` (FER-7 or DAIR-AI's 6) -> (N, 7) over FER-7."""
    p = np.asarray(p_text, dtype=np.float64)
    return p if tuple(labels) == FER7 else text_to_fer7(p)


def text_evidence(p_text_fer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 7) text distribution -> (the emotions it votes for: neutral removed, renormalised (..., 7);
    its strength 1 - p(neutral) (...,))."""
    p = np.asarray(p_text_fer, dtype=np.float64)
    q = p.copy()
    q[..., NEUTRAL] = 0.0
    total = q.sum(-1, keepdims=True)
    q = np.divide(q, total, out=np.full_like(q, 1 / len(FER7)), where=total > 0)
    return q, 1.0 - p[..., NEUTRAL]


def fuse(p_image: np.ndarray, p_text_fer: np.ndarray | None, weight: float) -> np.ndarray:
    """(N, 7) image probabilities fused with one (7,) or (N, 7) text distribution; None -> unchanged."""
    if p_text_fer is None:
        return p_image
    q, strength = text_evidence(p_text_fer)
    w = weight * np.asarray(strength)[..., None]
    return (1 - w) * np.asarray(p_image, dtype=np.float64) + w * q


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


PAIR_KINDS = ("congruent", "neutral", "conflict")


def pair_sentences(face_labels: np.ndarray, text_labels: np.ndarray, kind: str, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For each face, a random sentence (FER-7 label ids for both): of the face's label (``congruent``), a
    neutral one (``neutral``), or of another emotion (``conflict``, never neutral). Faces with no such sentence
    are left out. Returns (face idx, sentence idx)."""
    if kind not in PAIR_KINDS:
        raise ValueError(f"kind must be one of {PAIR_KINDS}, not {kind!r}")
    rng = np.random.default_rng(seed)
    text_labels = np.asarray(text_labels)
    faces, sentences = [], []
    for i, y in enumerate(face_labels):
        if kind == "congruent":
            pool = np.flatnonzero(text_labels == y)
        elif kind == "neutral":
            pool = np.flatnonzero(text_labels == NEUTRAL)
        else:
            pool = np.flatnonzero((text_labels != y) & (text_labels != NEUTRAL))
        if len(pool):
            faces.append(i)
            sentences.append(int(rng.choice(pool)))
    return np.array(faces, dtype=np.int64), np.array(sentences, dtype=np.int64)


def load_weight(results_dir: str | Path) -> float:
    """The fitted text weight from ``results/fusion.json``, or the default when not fitted yet."""
    path = Path(results_dir) / FUSION_FILE
    try:
        return float(json.loads(path.read_text())["text_weight"])
    except (OSError, KeyError, ValueError):
        return DEFAULT_TEXT_WEIGHT
