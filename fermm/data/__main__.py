"""Command line: ``python -m fermm.data prepare --source S --output_dir D`` builds the FER2013 splits (and pushes
them with ``--push_to_hub``); ``python -m fermm.data report --source S`` prints counts, duplicates and
label conflicts; ``python -m fermm.data prepare-text --which goemotions|dair --source S --output_dir D`` does the
same for a text data set."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm.data import card, publish, report
from fermm.data.errors import DataError
from fermm.data.sources import SkipLog, load_fer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fermm.data", description="Prepare or report on a FER2013 source.")
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build train/validation/test parquet files and a dataset card")
    prep.add_argument("--source", required=True, help="fer2013.csv, a folder, or a Hub dataset id")
    prep.add_argument("--output_dir", required=True)
    prep.add_argument("--ferplus", help="fer2013new.csv to join FER+ votes by row position")
    prep.add_argument("--push_to_hub", metavar="REPO_ID", help="also push the splits and card to this Hub dataset")
    prep.add_argument("--drop_cross_split_duplicates", action="store_true",
                      help="drop train images whose pixels also occur in validation or test")
    prep.add_argument("--skip_bad", action="store_true", help="skip unreadable rows and report them")
    prep.add_argument("--val_fraction", type=float, default=0.1,
                      help="validation share of train when the source has no validation split")
    prep.add_argument("--seed", type=int, default=0)
    rep = sub.add_parser("report", help="counts, duplicates and label conflicts")
    rep.add_argument("--source", required=True)
    rep.add_argument("--ferplus")
    rep.add_argument("--skip_bad", action="store_true")
    txt = sub.add_parser("prepare-text", help="a text data set's splits as parquet with a dataset card")
    txt.add_argument("--which", required=True, choices=sorted(publish.TEXT_SETS))
    txt.add_argument("--source", required=True, help="the data set's folder (TSV/txt/parquet) or a Hub dataset id")
    txt.add_argument("--output_dir", required=True)
    txt.add_argument("--push_to_hub", metavar="REPO_ID", help="also push the splits and card to this Hub dataset")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.command == "prepare-text":
        try:
            return publish.prepare_text(args.which, args.source, args.output_dir, args.push_to_hub)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    skips = SkipLog()
    try:
        ds = load_fer(args.source, args.ferplus, args.skip_bad, getattr(args, "val_fraction", 0.1),
                      getattr(args, "seed", 0), skips)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.skip_bad:
        print(skips.summary())
        for line in skips.examples:
            print(f"  {line}")
    if args.command == "report":
        print(report.format_report(report.build_report(ds)))
        return 0

    return card.prepare(ds, args, skips)


if __name__ == "__main__":
    sys.exit(main())
