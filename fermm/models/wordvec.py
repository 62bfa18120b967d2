"""Word vectors (GloVe / word2vec text format, or npz) and label vectors built from them."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fermm.labels import LABEL_WORDS
from fermm.paths import ASSETS

ASSET_VECTORS = ASSETS / "label_words_w2v300.npz"


class WordVectors:
    """A word -> vector table. ``WordVectors.load(path)`` reads .txt (GloVe, or word2vec with a
    "count dim" header) or .npz (arrays ``words`` and ``vectors``)."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, source: str = ""):
        if len(words) != len(vectors):
            raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
        self.index = {w: i for i, w in enumerate(words)}
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.source = source

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.index[word]]

    @classmethod
    def load(cls, path: str | Path) -> "WordVectors":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"word vectors not found: {path}")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return cls([str(w) for w in z["words"]], z["vectors"], str(path))
        return cls(*_read_text(path), str(path))

    def subset(self, words: Sequence[str]) -> "WordVectors":
        keep = [w for w in words if w in self]
        return WordVectors(keep, np.stack([self[w] for w in keep]), self.source)

    def save_npz(self, path: str | Path) -> None:
        words = sorted(self.index, key=self.index.get)
        np.savez_compressed(path, words=np.array(words), vectors=self.vectors)


def _read_text(path: Path) -> tuple[list[str], np.ndarray]:
    words, rows = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header "count dim"
            if len(parts) < 2:
                continue
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))
            except ValueError:
                raise ValueError(f"{path}: line {n}: not a 'word v1 v2 ...' line") from None
            if len(rows[-1]) != len(rows[0]):
                raise ValueError(f"{path}: line {n}: {len(rows[-1])} values, expected {len(rows[0])}")
            words.append(parts[0])
    if not rows:
        raise ValueError(f"{path}: no vectors found")
    return words, np.stack(rows)


def label_vectors(labels: Sequence[str], table: WordVectors,
                  words: Mapping[str, Sequence[str]] = LABEL_WORDS) -> np.ndarray:
    """(len(labels), dim) label vectors: the mean of each label's description words in ``table``.

    Raises a ValueError naming every label none of whose words the table has.
    """
    out, missing = [], []
    for label in labels:
        present = [w for w in words.get(label, (label,)) if w in table]
        if not present:
            missing.append(f"{label} (tried {', '.join(words.get(label, (label,)))})")
            continue
        out.append(np.mean([table[w] for w in present], axis=0))
    if missing:
        raise ValueError(f"{table.source or 'word vectors'} has no vector for: {'; '.join(missing)}")
    return np.stack(out).astype(np.float32)


def default_vectors() -> WordVectors:
    """The label-word vectors the package ships (word2vec Google News 300-d, a subset)."""
    return WordVectors.load(ASSET_VECTORS)
