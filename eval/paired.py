"""Two models image by image: each one's accuracy, the difference with a paired bootstrap interval.

    python eval/paired.py --a runs/base_resnet18_imstem_s0 --b runs/base_resnet18_rerun_s0 --splits validation test

For any two image models (registry names, folders or Hub ids) scored on the same images: a stem, a recipe, a
candidate against the bundled model. Both are judged on every image, so the interval resamples images, not
models, and is much tighter than either model's own interval; the discordant counts show how many images the
difference rests on. Writes ``results/paired/<a>_vs_<b>.json`` (or ``--json``) with each model's per-image
correctness and a digest of the images, so the comparison can be checked later without the models.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from fermm import cli
from fermm.evaluation import evaluator, metrics
from fermm.studies import twins
from fermm.training.image import DEFAULT_DATASET

if TYPE_CHECKING:
    from fermm.models.base import EmotionClassifier


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="first model: registry name, folder or Hub id")
    p.add_argument("--b", required=True, help="second model, the reference the difference a - b is taken from")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--splits", nargs="+", default=["validation"], choices=("train", "validation", "test"))
    p.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"))
    p.add_argument("--json", help="default: results/paired/<a>_vs_<b>.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    args = p.parse_args(argv)
    if same_model(args.a, args.b):
        p.error(f"--a and --b are the same model ({args.a}): compare two different ones")
    if not args.json and model_name(args.a) == model_name(args.b):
        p.error(f"both models are named {model_name(args.a)}: give --json to name the output")
    return args


def model_name(ref: str) -> str:
    return Path(ref.rstrip("/")).name


def same_model(a: str, b: str) -> bool:
    # folders compare by where they resolve; registry names and Hub ids by their text
    pa, pb = Path(a), Path(b)
    return pa.resolve() == pb.resolve() if pa.exists() and pb.exists() else a.rstrip("/") == b.rstrip("/")


def row(names: Sequence[str], split: str, c: dict) -> str:
    lo, hi = c["difference_ci95"]
    return (f"| {split} | `{names[0]}` {c['accuracy_a']:.2%} | `{names[1]}` {c['accuracy_b']:.2%} | "
            f"{100 * c['difference']:+.2f} ({100 * lo:+.2f} to {100 * hi:+.2f}) | "
            f"{c['only_a_right']} / {c['only_b_right']} of {c['n']} |")


def load_both(refs: Sequence[str]) -> list["EmotionClassifier"]:
    from fermm.models import load_model

    models = []
    for ref in refs:
        try:
            models.append(load_model(ref))
        except Exception as e:  # stop before any scoring: a half-made comparison is worse than none
            raise SystemExit(f"cannot load {ref}: {type(e).__name__}: {e}") from None
    return models


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = metrics.RunInfo(metrics.command_line("eval/paired.py", argv), args.seed)  # commit and date as it starts
    names = model_name(args.a), model_name(args.b)
    models = load_both([args.a, args.b])
    record = {"a": args.a, "b": args.b, "labels": {"a": list(models[0].labels), "b": list(models[1].labels)},
              "tta": args.tta, "dataset": args.dataset, "splits": {}}
    print("| split | a | b | a - b, points (paired 95% CI) | right only for a / only for b |\n|---|---|---|---|---|")
    for split in args.splits:
        d = evaluator.load_split(args.dataset, split)
        correct = [evaluator.correct_on(m, d, args.tta) for m in models]
        c = metrics.paired_comparison(*correct, seed=args.seed)
        record["splits"][split] = {**c, "split_digest": twins.split_digest(d["images"], d["labels"]),
                                   "correct_a": twins.pack_correct(correct[0]),
                                   "correct_b": twins.pack_correct(correct[1])}
        print(row(names, split, c))
    record.update(run.as_dict())
    out = metrics.save_record(record, args.json or f"results/paired/{names[0]}_vs_{names[1]}.json")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
