"""DAIR-AI emotion (Saravia et al. 2018): English tweets with six emotion labels, from parquet, txt or the Hub."""
from __future__ import annotations

from pathlib import Path

from fermm.data.errors import DataError
from fermm.data.sources import SPLITS, parquet_files
from fermm.labels import TEXT6


def load_text(source: str | Path):
    """DAIR-AI emotion as a ``DatasetDict`` (``text``, ``label`` over TEXT6) from parquet, txt or the Hub."""
    from datasets import (  # lazy: a heavy import, paid only when this runs
        ClassLabel,
        DatasetDict,
        Features,
        Value,
        load_dataset,
    )

    p = Path(source)
    if p.is_dir() and (p / "train.parquet").exists():
        files = {s: str(f) for s, f in parquet_files(p).items()}
        return load_dataset("parquet", data_files=files)
    if p.is_dir():
        feats = Features({"text": Value("string"), "label": ClassLabel(names=list(TEXT6))})
        return DatasetDict({s: _text_txt(p, s, feats) for s in SPLITS})
    if p.exists():
        raise DataError(f"{p}: expected a folder of parquet files or of train/val/test .txt files")
    return load_dataset(str(source))


def _text_txt(root: Path, split: str, feats):
    from datasets import Dataset  # lazy: a heavy import, paid only when this runs

    names = [f"{split}.txt"] + (["val.txt"] if split == "validation" else [])
    path = next((root / n for n in names if (root / n).exists()), None)
    if path is None:
        raise DataError(f"{root}: missing {names[0]}")
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line or (n == 1 and line.lower().replace(" ", "") in ("text;label", "text;emotion")):
                continue
            text, sep, label = line.rpartition(";")
            if not sep or label.strip() not in TEXT6:
                raise DataError(f"{path}: line {n}: expected 'text;label' with a label in {', '.join(TEXT6)}")
            texts.append(text)
            labels.append(TEXT6.index(label.strip()))
    return Dataset.from_dict({"text": texts, "label": labels}, features=feats)
