"""FER+ (Barsoum et al. 2016): ten crowd votes per FER2013 image, joined by row position, their
majority label, and FER-7 target distributions."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm.data.errors import DataError
from fermm.labels import FER7, FERPLUS8, FERPLUS_COLUMNS, FERPLUS_NONFACE_COLUMNS

FERPLUS_VOTE_COLUMNS: tuple[str, ...] = tuple(FERPLUS_COLUMNS) + FERPLUS_NONFACE_COLUMNS  # 10, file order


def ferplus_majority(votes: Sequence[int] | None) -> int:
    """FER+ majority label (index into FERPLUS8), or -1 when there is none.

    FER+'s own "majority" rule (microsoft/FERPlus ``ferplus.py``): drop single votes as outliers, then
    the top emotion must hold more than half of the remaining votes; rows whose top is "unknown" or
    "not a face", or with no votes, get -1.
    """
    if votes is None or any(v is None or v < 0 for v in votes):
        return -1
    kept = np.array([v if v > 1 else 0 for v in votes], dtype=float)  # outlier removal
    total = kept.sum()
    if total == 0:
        return -1
    top = int(kept.argmax())
    if kept[top] <= 0.5 * total or top >= len(FERPLUS_COLUMNS):
        return -1
    return FERPLUS8.index(FERPLUS_COLUMNS[FERPLUS_VOTE_COLUMNS[top]])


def read_ferplus_csv(path: str | Path) -> list[list[int] | None]:
    """Vote rows of ``fer2013new.csv`` in file order (= fer2013.csv row order; names are not indices)."""
    rows: list[list[int] | None] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FERPLUS_VOTE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: not a FER+ vote file, missing columns {missing}")
        for i, row in enumerate(reader):
            try:
                rows.append([int(row[c]) for c in FERPLUS_VOTE_COLUMNS])
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {i + 2}: vote counts must be integers") from None
    return rows


def attach_ferplus(columns: dict[str, list], votes: list[list[int] | None], where: str) -> None:
    """Join FER+ votes onto columns that carry ``fer2013_row`` (the row position in fer2013.csv)."""
    if "fer2013_row" not in columns:
        raise DataError(f"{where}: this source has no fer2013.csv row positions, so FER+ votes cannot be joined")
    joined = []
    for r in columns["fer2013_row"]:
        if r is None or r < 0:
            joined.append(None)
        elif r >= len(votes):
            raise DataError(f"{where}: fer2013 row {r} is beyond the {len(votes)} rows of the FER+ file")
        else:
            joined.append(votes[r])
    columns["ferplus_votes"] = joined
    columns["ferplus_label"] = [ferplus_majority(v) for v in joined]


def ferplus_fer7_targets(split) -> np.ndarray:
    """(N, 7) FER-7 distributions from each row's FER+ votes; all-zero rows where there are none.

    Only votes for the seven FER-7 emotions count: "contempt", "unknown" and "not a face" votes are
    dropped, and a row whose votes were all of those gets zeros (the caller keeps its own label there).
    """
    if "ferplus_votes" not in split.column_names:
        raise DataError("this FER source has no FER+ votes (column ferplus_votes); build it with --ferplus "
                        "fer2013new.csv or use ../shared/data/fer2013, which has them joined")
    cols = [FER7.index(FERPLUS_COLUMNS[c]) if FERPLUS_COLUMNS.get(c) in FER7 else -1 for c in FERPLUS_VOTE_COLUMNS]
    out = np.zeros((len(split), len(FER7)), dtype=np.float32)
    for i, votes in enumerate(split["ferplus_votes"]):
        for col, v in zip(cols, votes or ()):
            if col >= 0 and v is not None and v > 0:
                out[i, col] += v
    total = out.sum(1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)
