"""Data report: counts, exact-duplicate images within and across splits, label conflicts, and FER+ agreement."""
from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from itertools import combinations

import numpy as np
from PIL import Image

from fermm.data.ferplus import ferplus_fer7_targets
from fermm.labels import FER7


def pixel_hashes(split) -> list[str]:
    """A hash of each image's decoded grayscale pixels (PNG/JPEG bytes of equal images may differ)."""
    from datasets import Image as HFImage  # lazy: a heavy import, paid only when this runs

    raw = split.cast_column("image", HFImage(decode=False))["image"]
    out = []
    for item in raw:
        with Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]) as im:
            px = np.asarray(im.convert("L"))
        out.append(hashlib.blake2b(px.tobytes() + str(px.shape).encode(), digest_size=16).hexdigest())
    return out


def build_report(ds, hashes: dict[str, list[str]] | None = None) -> dict:
    """Counts per split and class, duplicate groups, cross-split overlaps and conflicting labels."""
    names = ds[next(iter(ds))].features["label"].names
    hashes = hashes or {s: pixel_hashes(ds[s]) for s in ds}
    report: dict = {"labels": names, "splits": {}, "cross_split": {}}
    groups = {}
    for s in ds:
        labels = ds[s]["label"]
        by_hash: dict[str, list[int]] = defaultdict(list)
        for h, y in zip(hashes[s], labels):
            by_hash[h].append(y)
        groups[s] = by_hash
        dup = [ys for ys in by_hash.values() if len(ys) > 1]
        conflict = [ys for ys in dup if len(set(ys)) > 1]
        report["splits"][s] = {
            "n": len(labels),
            "per_class": {n: int(c) for n, c in zip(names, np.bincount(labels, minlength=len(names)))},
            "distinct": len(by_hash),
            "duplicate_groups": len(dup),
            "images_in_duplicate_groups": sum(map(len, dup)),
            "conflicting_groups": len(conflict),
            "images_in_conflicting_groups": sum(map(len, conflict)),
        }
    for a, b in combinations(list(ds), 2):
        shared = groups[a].keys() & groups[b].keys()
        disagree = [h for h in shared if set(groups[a][h]) != set(groups[b][h])]
        report["cross_split"][f"{a}/{b}"] = {"shared_distinct_images": len(shared),
                                             "shared_with_different_labels": len(disagree)}
    if "ferplus_votes" in ds[next(iter(ds))].column_names:
        report["ferplus"] = {s: ferplus_agreement(ds[s]) for s in ds}
    return report


def ferplus_agreement(split) -> dict:
    """How far FER+'s ten annotators agree with the FER2013 label, over the rows that have FER-7 votes."""
    names = split.features["label"].names
    to_fer7 = np.array([FER7.index(n) for n in names])  # the split's label order may differ from FER7's
    votes, labels = ferplus_fer7_targets(split), to_fer7[np.asarray(split["label"])]
    has = votes.sum(1) > 0
    votes, labels = votes[has], labels[has]
    return {"n": len(split), "with_votes": int(has.sum()),
            "argmax_agrees": int((votes.argmax(1) == labels).sum()),
            "mean_vote_share_of_label": float(votes[np.arange(len(labels)), labels].mean()) if len(labels) else 0.0}


def format_report(report: dict) -> str:
    """The report as plain text tables."""
    names = report["labels"]
    lines = ["Counts per split and class:", "split       " + " ".join(f"{n:>8}" for n in names) + "    total"]
    for s, r in report["splits"].items():
        lines.append(f"{s:<11} " + " ".join(f"{r['per_class'][n]:>8,}" for n in names) + f" {r['n']:>8,}")
    lines += ["", "Exact duplicates (identical pixels) within each split:"]
    for s, r in report["splits"].items():
        lines.append(
            f"  {s}: {r['duplicate_groups']:,} groups holding {r['images_in_duplicate_groups']:,} images; "
            f"{r['distinct']:,} distinct; {r['conflicting_groups']:,} groups with conflicting labels "
            f"({r['images_in_conflicting_groups']:,} images)")
    lines += ["", "Across splits (distinct images present in both):"]
    for pair, r in report["cross_split"].items():
        lines.append(f"  {pair}: {r['shared_distinct_images']:,} shared, "
                     f"{r['shared_with_different_labels']:,} of them labelled differently")
    if "ferplus" in report:
        lines += ["", "FER+ votes against the FER2013 label (rows with votes for the seven classes):"]
        for s, r in report["ferplus"].items():
            k = max(r["with_votes"], 1)
            lines.append(f"  {s}: {r['with_votes']:,} of {r['n']:,} with votes; the most-voted class (first on ties) "
                         f"is the label for {r['argmax_agrees']:,} ({r['argmax_agrees'] / k:.1%}); mean share of votes on the label "
                         f"{r['mean_vote_share_of_label']:.2f}")
    return "\n".join(lines)


def drop_cross_split_duplicates(ds, hashes: dict[str, list[str]] | None = None):
    """Remove train rows whose pixels also occur in validation or test. Returns (ds, n_dropped)."""
    hashes = hashes or {s: pixel_hashes(ds[s]) for s in ds}
    held_out = set(hashes.get("validation", [])) | set(hashes.get("test", []))
    keep = [i for i, h in enumerate(hashes["train"]) if h not in held_out]
    n_dropped = len(hashes["train"]) - len(keep)
    ds["train"] = ds["train"].select(keep)
    return ds, n_dropped
