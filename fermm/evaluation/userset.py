"""A user's labelled image set from a zip file, read safely for the app's Evaluate tab.

Layouts: a folder per class named with FER labels (``happy/img1.jpg``, at any depth: the image's parent
folder is its label), or a ``labels.csv`` with ``file,label`` rows. Members are read in memory and
never extracted, so paths like ``../../etc/x`` cannot write anywhere (zip-slip); sizes, counts and
compression ratios are checked before anything is decompressed (zip bombs), and decoded images are shrunk
and counted (an image that compresses well can still decode huge).
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from PIL import Image

from fermm.data import IMAGE_EXTENSIONS
from fermm.faces import WORK_PIXELS, ImageError, load_image
from fermm.labels import FER7


@dataclass(frozen=True)
class Limits:
    max_zip_bytes: int = 100 * 1024 * 1024
    max_files: int = 5000
    max_member_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 500 * 1024 * 1024
    max_ratio: float = 200.0  # uncompressed / compressed, per member
    max_side: int = 1024  # decoded images are shrunk to this (a plain 8000 px PNG is ~200 KB in a zip)
    max_total_pixels: int = 100_000_000  # decoded, after shrinking: ~300 MB of RGB held for the evaluation


@dataclass
class LabelledSet:
    names: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file in the zip, reason)
    pixels: int = 0  # decoded so far

    def skip(self, reason: str, name: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if name:
            self.skipped_files.append((name, reason))


class ZipError(ValueError):
    """A zip that cannot be used as a whole (the message says why)."""


def _label_of(name: str, mapping: dict[str, str] | None) -> str | None:
    if mapping is not None:
        return mapping.get(name) or mapping.get(PurePosixPath(name).name)
    parent = PurePosixPath(name).parent.name.lower()
    return parent or None


def _read_mapping(z: zipfile.ZipFile, limits: Limits) -> dict[str, str] | None:
    csvs = [i for i in z.infolist() if PurePosixPath(i.filename).name.lower() == "labels.csv"]
    if not csvs:
        return None
    if csvs[0].file_size > limits.max_member_bytes:
        raise ZipError("labels.csv is too large")
    rows = csv.reader(io.StringIO(z.read(csvs[0]).decode("utf-8", errors="replace")))
    mapping = {}
    for row in rows:
        if len(row) >= 2 and row[0].strip().lower() not in ("file", "filename", "path"):
            mapping[row[0].strip()] = row[1].strip().lower()
    return mapping


def read_zip(path_or_bytes, limits: Limits = Limits()) -> LabelledSet:
    """Images and FER-7 labels from a zip; whatever cannot be used is counted in ``skipped``."""
    raw = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else open(path_or_bytes, "rb").read()
    if len(raw) > limits.max_zip_bytes:
        raise ZipError(f"the zip is larger than {limits.max_zip_bytes // 2**20} MB")
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise ZipError("this file is not a zip archive") from None
    members = [i for i in z.infolist() if not i.is_dir()]
    if len(members) > limits.max_files:
        raise ZipError(f"the zip holds {len(members)} files; the limit is {limits.max_files}")
    if sum(i.file_size for i in members) > limits.max_total_bytes:
        raise ZipError(f"the zip unpacks to more than {limits.max_total_bytes // 2**20} MB")
    mapping = _read_mapping(z, limits)
    out = LabelledSet()
    for info in members:
        _add_member(z, info, mapping, limits, out)
    if not out.images and out.skipped_files:  # images were there, but none could be used: say why
        why = "; ".join(f"{n} {reason}" for reason, n in out.skipped.items())
        raise ZipError(f"none of its images could be used ({why}; for example {out.skipped_files[0][0]}). Use one "
                       f"folder per class named {', '.join(FER7)}, or a labels.csv with file,label rows")
    if not out.images:
        raise ZipError("no labelled images found: use one folder per class named "
                       f"{', '.join(FER7)}, or a labels.csv with file,label rows")
    return out


def _add_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, mapping, limits: Limits, out: LabelledSet) -> None:
    name = info.filename
    if PurePosixPath(name).name.lower() == "labels.csv" or PurePosixPath(name).name.startswith("."):
        return
    if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return out.skip("not an image file", name)
    if info.file_size > limits.max_member_bytes:
        return out.skip("image larger than the per-file limit", name)
    if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
        return out.skip("suspicious compression ratio (possible zip bomb)", name)
    label = _label_of(name, mapping)
    if label not in FER7:
        return out.skip("no FER label (folder or labels.csv)", name)
    try:
        image = load_image(z.read(info), work_pixels=WORK_PIXELS)
    except (ImageError, zipfile.BadZipFile, OSError):
        return out.skip("unreadable image", name)
    image.thumbnail((limits.max_side, limits.max_side))
    out.pixels += image.width * image.height
    if out.pixels > limits.max_total_pixels:
        raise ZipError(f"its images decode to more than {limits.max_total_pixels // 10**6} megapixels in all "
                       f"(each shrunk to {limits.max_side} px): send fewer or smaller images")
    out.names.append(name)
    out.images.append(image)
    out.labels.append(FER7.index(label))
