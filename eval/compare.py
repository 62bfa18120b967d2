"""Compare every result in results/: a markdown table (optionally written into the README) and plotly
figures (results/figures/*.json), with published numbers beside ours, labelled as such.

    python eval/compare.py --results results --readme README.md --runs runs/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fermm import cli
from fermm.evaluation import metrics, plots


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results")
    p.add_argument("--readme", help="write the table between the results markers of this file")
    p.add_argument("--figures", default=None, help="figure folder (default: RESULTS/figures)")
    p.add_argument("--runs", nargs="*", default=[], help="training run folders for the curves")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = metrics.read_results(args.results)
    table = metrics.markdown_table(results, plots.PUBLISHED)
    print(table)
    if args.readme:
        metrics.update_readme(Path(args.readme), table)
    for path in plots.write_figures(results, Path(args.figures or Path(args.results) / "figures"), args.runs):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
