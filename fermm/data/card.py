"""``prepare``: write the splits as parquet with a ``DatasetCard``, and push them with ``DatasetDict.push_to_hub``
when asked."""
from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from fermm.data import report as datareport
from fermm.data.publish import HUB_FILES, push_splits
from fermm.data.sources import SPLITS, SkipLog, source_kind

FER_TERMS = (
    "FER2013 was released by Kaggle for the ICML 2013 workshop \"Challenges in Representation Learning\" "
    "(Goodfellow et al., 2013; data by P.-L. Carrier and A. Courville). The images were collected by web "
    "image search and their copyright belongs to their owners; no licence is stated for them. Use them for "
    "research and non-commercial purposes only and cite the challenge paper."
)
FERPLUS_TERMS = (
    "FER+ votes: microsoft/FERPlus `fer2013new.csv`, MIT License, Copyright (c) Microsoft Corporation. "
    "Cite Barsoum et al., ICMI 2016."
)


def fer_card(ds, source: str, report: dict, notes: list[str], files: str = "{split}.parquet") -> DatasetCard:
    """A dataset card describing sources, counts and terms; ``files``: where each split's parquet is (the local
    folder's ``train.parquet`` or, on the Hub, ``push_to_hub``'s shards)."""
    names = report["labels"]
    has_fp = "ferplus_votes" in ds["train"].column_names
    rows = "\n".join(
        f"| {s} | {r['n']:,} | " + " | ".join(f"{r['per_class'][n]:,}" for n in names) + " |"
        for s, r in report["splits"].items())
    data = DatasetCardData(license="other", task_categories=["image-classification"], pretty_name="FER2013 (fermm)",
                           configs=[{"config_name": "default",
                                     "data_files": [{"split": s, "path": files.format(split=s)} for s in SPLITS]}])
    body = [
        "# FER2013 facial expressions (prepared by fermm)", "",
        f"Built by `python -m fermm.data prepare` from `{source}`.", "",
        "Splits: `train` = FER2013 Training, `validation` = PublicTest, `test` = PrivateTest "
        "(the standard test split).", "", *notes, "",
        "| split | total | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|", rows, "",
        "Columns: `image` (grayscale), `label` (FER-7: " + ", ".join(names) + ")"
        + (", `fer2013_row` (row in fer2013.csv)" if "fer2013_row" in ds["train"].column_names else "")
        + (", `ferplus_votes` (10 crowd votes: neutral, happiness, surprise, sadness, anger, disgust, fear, "
           "contempt, unknown, not-a-face), `ferplus_label` (FER+ majority label, -1 when none)" if has_fp else "")
        + ".", "",
        "## Data report", "", "```", datareport.format_report(report), "```", "",
        "## Terms", "", FER_TERMS, *(["", FERPLUS_TERMS] if has_fp else []), "",
        "## Intended use", "",
        "Research and teaching on facial expression recognition. Not for surveillance, hiring, or inferring "
        "a person's inner state: a facial expression is not an emotion, and FER2013 labels are noisy.", "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def prepare(ds, args: argparse.Namespace, skips: SkipLog) -> int:
    """Write ``{train,validation,test}.parquet`` + ``README.md`` to ``args.output_dir``; push if asked."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes = {s: datareport.pixel_hashes(ds[s]) for s in ds}
    notes = []
    if source_kind(args.source) == "folders" and not _has_publictest(args.source):
        notes.append(f"The source had only train/ and test/: `validation` is a stratified random "
                     f"{args.val_fraction:.0%} of train (seed {args.seed}), never taken from test.")
    if args.drop_cross_split_duplicates:
        ds, n = datareport.drop_cross_split_duplicates(ds, hashes)
        hashes["train"] = datareport.pixel_hashes(ds["train"])
        notes.append(f"{n} train images whose pixels also occur in validation or test were dropped.")
    if skips.total:
        notes.append(f"Bad rows: {skips.summary()}.")
    report = datareport.build_report(ds, hashes)
    for s in SPLITS:
        ds[s].to_parquet(str(out / f"{s}.parquet"))
    fer_card(ds, str(args.source), report, notes).save(str(out / "README.md"))
    print(f"wrote {out}: " + ", ".join(f"{s} {len(ds[s]):,}" for s in SPLITS))
    if not args.push_to_hub:
        return 0
    return push_splits(ds, fer_card(ds, str(args.source), report, notes, HUB_FILES), args.push_to_hub, out)


def _has_publictest(source: str) -> bool:
    test = Path(source) / "test"
    return any(p.name.startswith("PublicTest_") for p in test.rglob("*"))
