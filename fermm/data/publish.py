"""``prepare-text``: the text data sets (GoEmotions with Ekman labels, DAIR-AI emotion) as parquet splits with a
``DatasetCard``, pushed with ``DatasetDict.push_to_hub`` when asked."""
from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from fermm.data.goemotions import load_goemotions
from fermm.data.sources import SPLITS
from fermm.data.text import load_text

log = logging.getLogger(__name__)

TEXT_SETS = {
    "goemotions": {
        "load": load_goemotions, "pretty": "GoEmotions, Ekman labels (fermm)", "license": "apache-2.0",
        "about": "English Reddit comments (2019) labelled by crowd raters, mapped by the dataset's authors to "
                 "Ekman's six emotions plus neutral: the seven FER2013 labels, named as fermm names them. A row "
                 "may carry several labels (`labels` is a list).",
        "cite": "Demszky et al., \"GoEmotions: A Dataset of Fine-Grained Emotions\", ACL 2020 (google-research, "
                "Apache-2.0). Names in the comments were masked by the authors as `[NAME]`.",
        "multilabel": True},
    "dair": {
        "load": load_text, "pretty": "DAIR-AI emotion (fermm)", "license": "other",
        "about": "English tweets labelled by their hashtags with six emotions (sadness, joy, love, anger, fear, "
                 "surprise): distant supervision, not annotation.",
        "cite": "Saravia et al., \"CARER: Contextualized Affect Representations for Emotion Recognition\", "
                "EMNLP 2018. For research use.",
        "multilabel": False},
}


def text_card(which: str, ds, source: str, files: str = "{split}.parquet") -> DatasetCard:
    """A dataset card with per-split counts (rows, and per label); ``files``: where each split's parquet is
    (the local folder's ``train.parquet`` or, on the Hub, ``push_to_hub``'s ``data/train-*``)."""
    spec = TEXT_SETS[which]
    col = "labels" if spec["multilabel"] else "label"
    names = (ds["train"].features[col].feature if spec["multilabel"] else ds["train"].features[col]).names
    lines = ["| split | rows | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for s in SPLITS:
        counts = Counter(c for row in ds[s][col] for c in (row if spec["multilabel"] else [row]))
        lines.append(f"| {s} | {len(ds[s]):,} | " + " | ".join(f"{counts[i]:,}" for i in range(len(names))) + " |")
    data = DatasetCardData(license=spec["license"], language=["en"], pretty_name=spec["pretty"],
                           task_categories=["text-classification"],
                           configs=[{"config_name": "default",
                                     "data_files": [{"split": s, "path": files.format(split=s)} for s in SPLITS]}])
    body = [f"# {spec['pretty']}", "", spec["about"], "", f"Built by `python -m fermm.data prepare-text --which "
            f"{which}` from `{source}`. `validation` is the source's dev split.", "",
            "Label counts (a multi-label row counts once for each of its labels):", "", *lines, "",
            "## Source and terms", "", spec["cite"], "", "## Intended use", "",
            "Research and teaching on emotion in text. A sentence is not a person's inner state; not for "
            "surveillance, hiring or decisions about people.", ""]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def prepare_text(which: str, source: str, output_dir: str | Path, push_to_hub: str | None = None) -> int:
    """Write ``{train,validation,test}.parquet`` + ``README.md``; push them if asked (the local files stay
    whatever happens to the push)."""
    ds = TEXT_SETS[which]["load"](source)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        ds[s].to_parquet(str(out / f"{s}.parquet"))
    card = text_card(which, ds, source)
    card.save(str(out / "README.md"))
    print(f"wrote {out}: " + ", ".join(f"{s} {len(ds[s]):,}" for s in SPLITS))
    if not push_to_hub:
        return 0
    return push_splits(ds, text_card(which, ds, source, HUB_FILES), push_to_hub, out)


HUB_FILES = "data/{split}-*"  # where DatasetDict.push_to_hub puts each split's parquet shards


def push_splits(ds, card: DatasetCard, repo_id: str, out: Path) -> int:
    """Push the splits (``DatasetDict.push_to_hub``) and their card; on failure keep the local folder ``out`` and
    say how to upload it as it is (its card points at its own parquet files). Returns the exit status."""
    try:
        ds.push_to_hub(repo_id, commit_message="Add splits (fermm)")
        card.push_to_hub(repo_id, repo_type="dataset", commit_message="Add dataset card (fermm)")
    except Exception as e:  # network, auth, permissions: the local output stays
        print(f"error: push to {repo_id} failed: {e}\nThe local files in {out} are intact. Retry with: "
              f"hf upload --repo-type dataset {repo_id} {out} .", file=sys.stderr)
        return 1
    print(f"pushed to https://huggingface.co/datasets/{repo_id}")
    return 0
