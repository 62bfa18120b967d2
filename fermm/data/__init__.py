"""Data sets as ``datasets.DatasetDict``: FER2013 (+ FER+ votes) from any usual source, and DAIR-AI emotion.

    >>> from fermm import data
    >>> ds = data.load_fer("../shared/data/fer2013")    # train / validation / test
    >>> images, labels = data.to_arrays(ds["test"])      # (3589, 48, 48) uint8, (3589,) int64

The command line is ``python -m fermm.data prepare|report`` (:mod:`fermm.data.__main__`).
"""
from fermm.data.errors import DataError
from fermm.data.ferplus import ferplus_fer7_targets, ferplus_majority, read_ferplus_csv
from fermm.data.sources import (
                                IMAGE_EXTENSIONS,
                                SPLITS,
                                SkipLog,
                                load_fer,
                                seen_in,
                                source_kind,
                                stratified_indices,
                                to_arrays,
)
from fermm.data.text import load_text

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "DataError", "SkipLog", "ferplus_fer7_targets", "ferplus_majority",
           "load_fer", "load_text", "read_ferplus_csv", "seen_in", "source_kind", "stratified_indices", "to_arrays"]
