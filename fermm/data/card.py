"""``prepare``: write the splits as parquet with a dataset card, and optionally push them to the Hub."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fermm.data import report as datareport
from fermm.data.sources import SPLITS, SkipLog, source_kind
from fermm.hub import push_folder

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


def card_text(ds, source: str, report: dict, notes: list[str]) -> str:
    """A dataset card (YAML front matter + markdown) describing sources, counts and terms."""
    names = report["labels"]
    has_fp = "ferplus_votes" in ds["train"].column_names
    rows = "\n".join(
        f"| {s} | {r['n']:,} | " + " | ".join(f"{r['per_class'][n]:,}" for n in names) + " |"
        for s, r in report["splits"].items())
    front = "\n".join([
        "---", "license: other", "task_categories:", "- image-classification", "pretty_name: FER2013 (fermm)",
        "configs:", "- config_name: default", "  data_files:",
        *[f"  - split: {s}\n    path: {s}.parquet" for s in SPLITS], "---", ""])
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
    return front + "\n".join(body)


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
    (out / "README.md").write_text(card_text(ds, str(args.source), report, notes))
    print(f"wrote {out}: " + ", ".join(f"{s} {len(ds[s]):,}" for s in SPLITS))
    if args.push_to_hub:
        return push_dataset_folder(out, args.push_to_hub)
    return 0


def _has_publictest(source: str) -> bool:
    test = Path(source) / "test"
    return any(p.name.startswith("PublicTest_") for p in test.rglob("*"))


def push_dataset_folder(folder: Path, repo_id: str) -> int:
    """Push a prepared folder as a Hub dataset; on failure keep the folder and say how to retry."""
    try:
        url = push_folder(folder, repo_id, repo_type="dataset", message="Add FER2013 splits (fermm)")
    except Exception as e:  # network, auth, permissions: the local output stays
        print(f"error: push to {repo_id} failed: {e}\nThe local files in {folder} are intact. Retry with: "
              f"hf upload --repo-type dataset {repo_id} {folder} .", file=sys.stderr)
        return 1
    print(f"pushed to {url}")
    return 0
