"""Build FER2013 / FER+ / DAIR-AI emotion datasets from any of their usual sources.

Every FER source becomes the same ``datasets.DatasetDict``: ``train`` / ``validation`` / ``test`` =
FER2013 Training / PublicTest / PrivateTest, with columns ``image`` (grayscale ``Image``) and ``label``
(``ClassLabel`` over :data:`fermm.labels.FER7`), plus ``fer2013_row`` when the source knows it and
``ferplus_votes`` / ``ferplus_label`` when FER+ votes are joined.

Sources: the Kaggle ``fer2013.csv``; the folder layout ``train/<class>/*.jpg`` + ``test/<class>/*.jpg``;
a folder of ``{train,validation,test}.parquet``; a Hub dataset id.

The command line is :mod:`fermm.data.__main__`.
"""
from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fermm.data.errors import DataError
from fermm.data.ferplus import (
    FERPLUS_VOTE_COLUMNS,
    attach_ferplus,
    ferplus_majority,
    read_ferplus_csv,
)
from fermm.labels import FER7, FERPLUS8

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PIXELS = 48 * 48


@dataclass
class SkipLog:
    """What ``skip_bad`` dropped, so that rows in = rows out + skips."""

    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped 0 rows"
        parts = ", ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        return f"skipped {self.total} rows ({parts})"


def _bad(skip: SkipLog | None, reason: str, where: str) -> None:
    """Raise a clear error, or record the skip when ``--skip_bad`` is on."""
    if skip is None:
        raise DataError(f"{where}: {reason} (use --skip_bad to skip such rows and count them)")
    skip.add(reason, where)


# --------------------------------------------------------------------------- features / building


def fer_features(with_row: bool = False, with_ferplus: bool = False):
    """The ``datasets.Features`` every FER source is converted to."""
    from datasets import ClassLabel, Features, List, Value  # lazy: a heavy import, paid only when this runs
    from datasets import Image as HFImage  # lazy: a heavy import, paid only when this runs

    feats = {"image": HFImage(), "label": ClassLabel(names=list(FER7))}
    if with_row:
        feats["fer2013_row"] = Value("int32")
    if with_ferplus:
        feats["ferplus_votes"] = List(Value("int8"), length=len(FERPLUS_VOTE_COLUMNS))
        feats["ferplus_label"] = ClassLabel(names=list(FERPLUS8))
    return Features(feats)


def _png(pixels: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _dataset(columns: dict[str, list], with_row: bool, with_ferplus: bool):
    from datasets import Dataset  # lazy: a heavy import, paid only when this runs

    return Dataset.from_dict(columns, features=fer_features(with_row, with_ferplus))


# --------------------------------------------------------------------------- sources


def load_fer_csv(path: str | Path, skip: SkipLog | None = None) -> dict[str, dict[str, list]]:
    """Columns per split from the Kaggle ``fer2013.csv`` (``emotion``, ``pixels``, ``Usage``)."""
    out = {s: {"image": [], "label": [], "fer2013_row": []} for s in SPLITS}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"emotion", "pixels", "Usage"}
        if not need <= set(reader.fieldnames or []):
            raise DataError(f"{path}: expected columns {sorted(need)}, found {reader.fieldnames}")
        for i, row in enumerate(reader):
            where = f"{path}: row {i + 2}"  # 1-based line number, after the header
            parsed = _parse_csv_row(row, where, skip)
            if parsed is None:
                continue
            split, label, pixels = parsed
            cols = out[split]
            cols["image"].append(_png(pixels))
            cols["label"].append(label)
            cols["fer2013_row"].append(i)
    return out


def _parse_csv_row(row: dict, where: str, skip: SkipLog | None) -> tuple[str, int, np.ndarray] | None:
    if None in row or any(row.get(k) is None for k in ("emotion", "pixels", "Usage")):
        return _bad(skip, "malformed row (wrong number of fields)", where)
    split = USAGE_TO_SPLIT.get(row["Usage"].strip())
    if split is None:
        return _bad(skip, f"unknown Usage {row['Usage']!r} (expected {', '.join(USAGE_TO_SPLIT)})", where)
    try:
        label = int(row["emotion"])
    except ValueError:
        return _bad(skip, f"label {row['emotion']!r} is not an integer", where)
    if not 0 <= label < len(FER7):
        return _bad(skip, f"unknown label {label} (expected 0..{len(FER7) - 1})", where)
    try:
        values = np.array(row["pixels"].split(), dtype=np.int64)
    except ValueError:
        return _bad(skip, "pixels are not integers", where)
    if values.size != PIXELS:
        return _bad(skip, f"wrong pixel count {values.size} (expected {PIXELS} = 48x48)", where)
    if values.min() < 0 or values.max() > 255:
        return _bad(skip, "pixel values outside 0..255", where)
    return split, label, values.astype(np.uint8).reshape(48, 48)


def _folder_class(name: str) -> int | None:
    name = name.lower()
    return FER7.index(name) if name in FER7 else None


def load_fer_folders(root: str | Path, skip: SkipLog | None = None, val_fraction: float = 0.1,
                     seed: int = 0) -> dict[str, dict[str, list]]:
    """Columns per split from ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Kaggle's layout keeps the Usage in the file name (``PublicTest_*`` / ``PrivateTest_*`` under
    ``test/``): those become validation / test. Without such names, validation is a stratified,
    seeded split of train (never of test).
    """
    root = Path(root)
    raw = {s: {"image": [], "label": []} for s in ("train", "test")}
    for part in raw:
        part_dir = root / part
        if not part_dir.is_dir():
            raise DataError(f"{root}: expected a '{part}/' folder with one sub-folder per class ({', '.join(FER7)})")
        for class_dir in sorted(p for p in part_dir.iterdir() if p.is_dir()):
            label = _folder_class(class_dir.name)
            if label is None:
                raise DataError(f"{class_dir}: unknown class folder (expected one of {', '.join(FER7)})")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                pixels = _read_gray(file, skip)
                if pixels is not None:
                    raw[part]["image"].append((file.name, _png(pixels)))
                    raw[part]["label"].append(label)
    return _split_folder_parts(raw, val_fraction, seed)


def _read_gray(file: Path, skip: SkipLog | None) -> np.ndarray | None:
    try:
        with Image.open(file) as im:
            return np.asarray(im.convert("L"))
    except Exception as e:  # PIL raises many types for broken files
        return _bad(skip, f"unreadable image ({type(e).__name__})", str(file))


def _split_folder_parts(raw: dict, val_fraction: float, seed: int) -> dict[str, dict[str, list]]:
    out = {s: {"image": [], "label": []} for s in SPLITS}
    test_names = [n for n, _ in raw["test"]["image"]]
    has_usage = any(n.startswith("PublicTest_") for n in test_names)
    for (name, img), label in zip(raw["test"]["image"], raw["test"]["label"]):
        split = "validation" if has_usage and name.startswith("PublicTest_") else "test"
        out[split]["image"].append(img)
        out[split]["label"].append(label)
    train_imgs = [img for _, img in raw["train"]["image"]]
    train_labels = raw["train"]["label"]
    val_idx = set() if has_usage else set(stratified_indices(train_labels, val_fraction, seed))
    for i, (img, label) in enumerate(zip(train_imgs, train_labels)):
        split = "validation" if i in val_idx else "train"
        out[split]["image"].append(img)
        out[split]["label"].append(label)
    return out


def stratified_indices(labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """A seeded, per-class ``fraction`` of indices (at least one per class with 2+ members)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    chosen: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(fraction * idx.size)) if idx.size > 1 else 0
        k = max(k, 1) if idx.size > 1 else 0
        chosen.extend(rng.choice(idx, size=k, replace=False).tolist())
    return sorted(chosen)


def parquet_files(root: Path) -> dict[str, Path]:
    files = {s: root / f"{s}.parquet" for s in SPLITS}
    missing = [s for s, p in files.items() if not p.exists()]
    if missing:
        raise DataError(f"{root}: missing {', '.join(m + '.parquet' for m in missing)}")
    return files


def load_fer_parquet(root: str | Path) -> dict[str, dict[str, list]]:
    """Columns per split from ``root/{train,validation,test}.parquet`` (e.g. ``../shared/data/fer2013``)."""
    import pyarrow.parquet as pq  # lazy: a heavy import, paid only when this runs

    out = {}
    for split, path in parquet_files(Path(root)).items():
        table = pq.read_table(path)
        names = set(table.column_names)
        if not {"image", "label"} <= names:
            raise DataError(f"{path}: expected 'image' and 'label' columns, found {sorted(names)}")
        cols = {"image": table.column("image").to_pylist(), "label": table.column("label").to_pylist()}
        if "fer2013_row" in names:
            cols["fer2013_row"] = table.column("fer2013_row").to_pylist()
        vote_cols = [f"ferplus_{c}" for c in FERPLUS_VOTE_COLUMNS]
        if "ferplus_votes" in names:
            cols["ferplus_votes"] = table.column("ferplus_votes").to_pylist()
        elif set(vote_cols) <= names:
            per_col = [table.column(c).to_pylist() for c in vote_cols]
            cols["ferplus_votes"] = [None if any(v is None for v in vs) else list(vs) for vs in zip(*per_col)]
        if "ferplus_votes" in cols:
            cols["ferplus_label"] = [ferplus_majority(v) for v in cols["ferplus_votes"]]
        _check_labels(cols["label"], str(path))
        out[split] = cols
    return out


def _check_labels(labels: list, where: str) -> None:
    bad = [i for i, y in enumerate(labels) if y is None or not 0 <= int(y) < len(FER7)]
    if bad:
        raise DataError(f"{where}: row {bad[0]}: unknown label {labels[bad[0]]!r} ({len(bad)} such rows)")


def load_fer_hub(repo_id: str, val_fraction: float = 0.1, seed: int = 0):
    """A Hub dataset with ``image`` and ``label`` columns; validation split from train when absent."""
    from datasets import load_dataset  # lazy: a heavy import, paid only when this runs

    ds = load_dataset(repo_id)
    if "validation" not in ds:
        if "train" not in ds or "test" not in ds:
            raise DataError(f"{repo_id}: expected 'train' and 'test' splits, found {list(ds)}")
        val_idx = set(stratified_indices(ds["train"]["label"], val_fraction, seed))
        ds["validation"] = ds["train"].select(sorted(val_idx))
        ds["train"] = ds["train"].select([i for i in range(len(ds["train"])) if i not in val_idx])
    return ds


def source_kind(source: str | Path) -> str:
    """'csv', 'folders', 'parquet' or 'hub' for a source path or id."""
    p = Path(source)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    if p.is_dir():
        if (p / "train.parquet").exists():
            return "parquet"
        if (p / "train").is_dir():
            return "folders"
        raise DataError(f"{p}: not a FER source (expected {{train,validation,test}}.parquet or train/ + test/ folders)")
    if p.exists():
        raise DataError(f"{p}: unsupported file type (expected fer2013.csv, a folder, or a Hub dataset id)")
    if str(source).count("/") == 1 and not str(source).startswith((".", "/")):
        return "hub"
    raise DataError(f"{source}: no such file or folder")


def load_fer(source: str | Path, ferplus: str | Path | None = None, skip_bad: bool = False,
             val_fraction: float = 0.1, seed: int = 0, skips: SkipLog | None = None):
    """Load FER2013 from any supported source as a ``DatasetDict`` (see module docstring).

    Args:
        source: fer2013.csv path, folder (parquet or train/test layout), or Hub dataset id.
        ferplus: optional ``fer2013new.csv`` to join FER+ votes by row position.
        skip_bad: skip unreadable rows/files and count them in ``skips`` instead of raising.
    """
    from datasets import DatasetDict  # lazy: a heavy import, paid only when this runs

    kind = source_kind(source)
    if kind == "hub":
        return load_fer_hub(str(source), val_fraction, seed)
    skip = (skips if skips is not None else SkipLog()) if skip_bad else None
    if kind == "csv":
        splits = load_fer_csv(source, skip)
    elif kind == "folders":
        splits = load_fer_folders(source, skip, val_fraction, seed)
    else:
        splits = load_fer_parquet(source)
    if ferplus is not None:
        votes = read_ferplus_csv(ferplus)
        for cols in splits.values():
            attach_ferplus(cols, votes, str(source))
    with_row = "fer2013_row" in splits["train"]
    with_fp = "ferplus_votes" in splits["train"]
    return DatasetDict({s: _dataset(cols, with_row, with_fp) for s, cols in splits.items()})


# --------------------------------------------------------------------------- arrays for training


def to_arrays(split, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 grayscale images and (N,) int64 labels of a FER split."""
    from datasets import Image as HFImage  # lazy: a heavy import, paid only when this runs

    split = split.cast_column("image", HFImage(decode=False))
    images = np.empty((len(split), size, size), dtype=np.uint8)
    for i, item in enumerate(split["image"]):
        with Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]) as im:
            im = im.convert("L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            images[i] = np.asarray(im)
    return images, np.asarray(split["label"], dtype=np.int64)


def seen_in(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) bool: which of ``images`` occur pixel for pixel in ``reference`` (e.g. test images that are
    also train images, which a model may have memorised)."""
    known = {im.tobytes() for im in reference}
    return np.fromiter((im.tobytes() in known for im in images), dtype=bool, count=len(images))
