"""Label sets, the mappings between them, prompt templates and label description words.

FER-7 is the FER2013 order (Goodfellow et al. 2013). FER+ adds "contempt" (Barsoum et al. 2016) and
names its columns differently. DAIR-AI emotion is the 6-class text set (Saravia et al. 2018).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FER7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS8: tuple[str, ...] = FER7 + ("contempt",)
TEXT6: tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")

# FER+ vote-file columns (fer2013new.csv order) -> FER+ 8 label names.
FERPLUS_COLUMNS: dict[str, str] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
}
FERPLUS_NONFACE_COLUMNS: tuple[str, ...] = ("unknown", "NF")

# Text (DAIR-AI) -> FER-7. "love" has no facial class; it is closest to "happy" (a positive, smiling
# face). FER's "disgust" and "neutral" have no text class: text can never vote for them directly.
TEXT6_TO_FER7: dict[str, str] = {
    "sadness": "sad",
    "joy": "happy",
    "love": "happy",
    "anger": "angry",
    "fear": "fear",
    "surprise": "surprise",
}
# FER-7 -> the DAIR-AI labels whose sentences express it (used to pair faces with sentences).
FER7_TO_TEXT6: dict[str, tuple[str, ...]] = {
    "angry": ("anger",),
    "disgust": (),
    "fear": ("fear",),
    "happy": ("joy", "love"),
    "sad": ("sadness",),
    "surprise": ("surprise",),
    "neutral": (),
}

# Words that describe each label, for word-vector label embeddings and CLIP prompt synonyms.
# The first word is the label's main word; a label's vector is the mean of the words a table has.
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "furious", "mad"),
    "disgust": ("disgust", "disgusted", "revulsion"),
    "fear": ("fear", "afraid", "scared", "frightened"),
    "happy": ("happy", "happiness", "joy", "glad"),
    "sad": ("sad", "sadness", "unhappy", "sorrow"),
    "surprise": ("surprise", "surprised", "astonished", "shocked"),
    "neutral": ("neutral", "calm", "expressionless"),
    "contempt": ("contempt", "scorn", "disdain"),
    # text labels
    "sadness": ("sadness", "sad"),
    "joy": ("joy", "happy"),
    "love": ("love", "affection"),
    "anger": ("anger", "angry"),
}

# CLIP zero-shot prompt templates (kept as data, as open_clip does).
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {} face.",
    "a face showing {}.",
    "a photo of a person looking {}.",
    "a close-up photo of a {} facial expression.",
    "a grayscale photo of a {} face.",
)
# Sentence prompts for CLIP's zero-shot reading of a sentence's emotion (the text head starts from them).
TEXT_PROMPT_TEMPLATES: tuple[str, ...] = (
    "a sentence expressing {}.",
    "someone writing with {}.",
    "a tweet full of {}.",
)

# Adjective forms read better in the templates above.
PROMPT_NAMES: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "furious"),
    "disgust": ("disgusted",),
    "fear": ("fearful", "scared"),
    "happy": ("happy", "smiling"),
    "sad": ("sad", "unhappy"),
    "surprise": ("surprised", "astonished"),
    "neutral": ("neutral", "expressionless"),
    "contempt": ("contemptuous",),
}


def index_of(labels: tuple[str, ...] | list[str], name: str) -> int:
    """Position of ``name`` in ``labels`` with an error that lists the valid names."""
    try:
        return list(labels).index(name)
    except ValueError:
        raise ValueError(f"unknown label {name!r}; expected one of {', '.join(labels)}") from None


def text6_to_fer7_matrix(mapping: dict[str, str | None] | None = None) -> list[list[float]]:
    """(6, 7) matrix M with M[t, f] = 1 where text label t maps to FER label f (default
    :data:`TEXT6_TO_FER7`; a label mapped to None gets a zero row, i.e. its mass is dropped).

    ``p_fer = p_text @ M`` moves a text distribution onto FER-7 (rows sum to 1, so mass is kept).
    """
    mapping = TEXT6_TO_FER7 if mapping is None else mapping
    return [[1.0 if mapping.get(t) == f else 0.0 for f in FER7] for t in TEXT6]


def to_fer7(probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(N, K) probabilities over ``labels`` -> (N, 7) over FER-7 (labels outside FER-7, such as
    contempt, are dropped and the rest renormalised)."""
    out = np.zeros((len(probs), len(FER7)), dtype=np.float64)
    for j, name in enumerate(labels):
        if name in FER7:
            out[:, FER7.index(name)] += probs[:, j]
    total = out.sum(1, keepdims=True)
    return np.divide(out, total, out=np.full_like(out, 1 / len(FER7)), where=total > 0)
