"""Compare every result in results/: a markdown table (optionally written into the README) and plotly
figures (results/figures/*.json), with published numbers beside ours, labelled as such.

    python eval/compare.py --results results --readme README.md --runs runs/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fermm import evaluation, plots  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def histories(runs: Sequence[str]) -> dict[str, list[dict]]:
    out = {}
    for root in runs:
        for h in sorted(Path(root).glob("**/history.json")):
            out[str(h.parent.relative_to(Path(root).parent))] = json.loads(h.read_text())
    return out


def write_figures(results: Sequence[dict], out: Path, runs: Sequence[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    faces = [r for r in results if r.get("task", "image") == "image"]
    figs = {"accuracy": plots.accuracy_bars(faces), "per_class_f1": plots.per_class_f1(faces)}
    for r in results:
        figs[f"confusion_{evaluation.result_name(r['model'], r['split'], r['tta'])}"] = plots.confusion_heatmap(r)
    if runs:
        figs["training_curves"] = plots.training_curves(histories(runs))
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.json"
        path.write_text(fig.to_json())
        paths.append(path)
    return paths


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--readme", help="write the table between the results markers of this file")
    p.add_argument("--figures", default=None, help="figure folder (default: RESULTS/figures)")
    p.add_argument("--runs", nargs="*", default=[], help="training run folders for the curves")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = evaluation.read_results(args.results)
    table = evaluation.markdown_table(results, plots.PUBLISHED)
    print(table)
    if args.readme:
        update_readme(Path(args.readme), table)
    for path in write_figures(results, Path(args.figures or Path(args.results) / "figures"), args.runs):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
