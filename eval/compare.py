"""Compare every result in results/: a markdown table (optionally written into the README) and plotly
figures (results/figures/*.json), with published numbers beside ours, labelled as such.

    python eval/compare.py --results results --readme results/README.md --served_readme README.md --runs runs/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fermm import cli
from fermm.evaluation import metrics, plots
from fermm.models import list_models
from fermm.serve import end_to_end


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results")
    p.add_argument("--readme", help="write the table between the results markers of this file")
    p.add_argument("--served_readme", help="write the served models' table (test and end-to-end figures) between "
                                           "the served markers of this file (the README)")
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
    if args.served_readme:
        records = end_to_end.read_records(Path(args.results) / "end_to_end")
        served = [r for r in results if r["model"] in list_models()]
        metrics.update_readme(Path(args.served_readme), end_to_end.served_models_table(served, records),
                              end_to_end.SERVED_START, end_to_end.SERVED_END)
    for path in plots.write_figures(results, Path(args.figures or Path(args.results) / "figures"), args.runs):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
