"""GoEmotions with Ekman's labels (Demszky et al., ACL 2020): English Reddit comments labelled by people
with the seven FER labels (anger, disgust, fear, joy, neutral, sadness, surprise = FER-7's names).

Rows may carry several labels (multi-label, kept as a list); :func:`single_label` is the view with one
label per row, for accuracy. DAIR-AI emotion (:func:`fermm.data.load_text`) maps onto the same labels
with :func:`dair_as_fer7`; it has no neutral or disgust, so those stay unknown for its rows (a mask), never
"absent".

    >>> from fermm import data
    >>> go = data.load_goemotions("../shared/data/goemotions_ekman")   # train / validation / test
    >>> go["train"][0]    # {'text': ..., 'labels': [6], 'id': 'eebbqej'}  (6 = neutral in FER-7)
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fermm.data.errors import DataError
from fermm.data.sources import parquet_files
from fermm.labels import FER7, TEXT6, TEXT6_TO_FER7

GO_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
# GoEmotions' Ekman names (its labels.txt order) -> FER-7 names
GO_TO_FER7 = {"anger": "angry", "disgust": "disgust", "fear": "fear", "joy": "happy", "neutral": "neutral",
              "sadness": "sad", "surprise": "surprise"}
DAIR_UNKNOWN = ("disgust", "neutral")  # DAIR-AI has no such class: its rows say nothing about them


def features():
    from datasets import ClassLabel, Features, Sequence, Value  # lazy: a heavy import, paid only when this runs

    return Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=list(FER7))), "id": Value("string")})


def load_goemotions(source: str | Path):
    """GoEmotions (Ekman) as a ``DatasetDict``: ``text``, ``labels`` (list over FER-7), ``id``; from the
    original TSV folder (``train.tsv``, ``dev.tsv``, ``test.tsv``, ``labels.txt``), a parquet folder or a Hub id."""
    from datasets import DatasetDict, load_dataset  # lazy: a heavy import, paid only when this runs

    p = Path(source)
    if p.is_dir() and (p / "train.parquet").exists():
        return load_dataset("parquet", data_files={s: str(f) for s, f in parquet_files(p).items()})
    if p.is_dir():
        names = _label_names(p)
        return DatasetDict({s: _read_tsv(p / f, names) for s, f in GO_FILES.items()})
    if p.exists():
        raise DataError(f"{p}: expected the GoEmotions folder (train.tsv, dev.tsv, test.tsv, labels.txt)")
    return load_dataset(str(source))


def _label_names(root: Path) -> list[str]:
    path = root / "labels.txt"
    if not path.exists():
        raise DataError(f"{root}: missing labels.txt (the Ekman label names, one per line)")
    names = [n.strip() for n in path.read_text(encoding="utf-8").split("\n") if n.strip()]
    unknown = [n for n in names if n not in GO_TO_FER7]
    if unknown:
        raise DataError(f"{path}: labels {unknown} are not Ekman's; expected {', '.join(GO_TO_FER7)}")
    return names


def _read_tsv(path: Path, names: list[str]):
    from datasets import Dataset  # lazy: a heavy import, paid only when this runs

    if not path.exists():
        raise DataError(f"{path.parent}: missing {path.name}")
    rows = {"text": [], "labels": [], "id": []}
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            try:
                ids = [FER7.index(GO_TO_FER7[names[int(i)]]) for i in row[1].split(",")]
            except (IndexError, ValueError):
                raise DataError(f"{path}: line {n}: expected 'text<TAB>label ids<TAB>id' with ids 0-{len(names) - 1}") from None
            rows["text"].append(row[0])
            rows["labels"].append(sorted(set(ids)))
            rows["id"].append(row[2] if len(row) > 2 else "")
    return Dataset.from_dict(rows, features=features())


def single_label(split):
    """The rows with exactly one label, with a ``label`` column (FER-7 index)."""
    from datasets import ClassLabel  # lazy: a heavy import, paid only when this runs

    one = split.filter(lambda r: len(r["labels"]) == 1)
    return one.map(lambda r: {"label": r["labels"][0]}).cast_column("label", ClassLabel(names=list(FER7)))


def multi_hot(labels: list[list[int]], n: int = len(FER7)) -> np.ndarray:
    """Label lists -> (N, n) float32 multi-hot targets."""
    out = np.zeros((len(labels), n), dtype=np.float32)
    for i, ids in enumerate(labels):
        out[i, ids] = 1.0
    return out


def dair_as_fer7(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DAIR-AI label ids (over TEXT6) -> (N, 7) multi-hot FER-7 targets and (N, 7) mask (0 = unknown: the
    FER labels DAIR-AI cannot express, see :data:`DAIR_UNKNOWN`)."""
    fer = np.array([FER7.index(TEXT6_TO_FER7[TEXT6[int(t)]]) for t in labels], dtype=np.int64)
    targets = multi_hot([[int(f)] for f in fer])
    mask = np.ones_like(targets)
    mask[:, [FER7.index(u) for u in DAIR_UNKNOWN]] = 0.0
    return targets, mask
