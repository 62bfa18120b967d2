"""Two models image by image: each one's accuracy, the difference with a paired bootstrap interval.

    python eval/paired.py --a runs/base_resnet18_imstem_s0 --b runs/base_resnet18_rerun_s0 --splits validation test

For any two image models (registry names, folders or Hub ids) scored on the same images: a stem, a recipe, a
candidate against the bundled model. Both are judged on every image, so the interval resamples images, not
models, and is much tighter than either model's own interval; the discordant counts show how many images the
difference rests on. Writes ``results/paired_<a>_vs_<b>.json`` (or ``--json``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fermm import evaluation, evaluator  # noqa: E402
from fermm.image_training import DEFAULT_DATASET  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="first model: registry name, folder or Hub id")
    p.add_argument("--b", required=True, help="second model, the reference the difference a - b is taken from")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--splits", nargs="+", default=["validation"], choices=("train", "validation", "test"))
    p.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"))
    p.add_argument("--json", help="default: results/paired_<a>_vs_<b>.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    return p.parse_args(argv)


def model_name(ref: str) -> str:
    return Path(ref.rstrip("/")).name


def correct_on(model, split_data: dict, tta: str):
    probs, _ = evaluator.predict_split(model, split_data["images"], tta)
    return probs.argmax(1) == evaluator.labels_for(model, split_data["labels"])


def row(name_a: str, name_b: str, split: str, c: dict) -> str:
    lo, hi = c["difference_ci95"]
    return (f"| {split} | `{name_a}` {c['accuracy_a']:.2%} | `{name_b}` {c['accuracy_b']:.2%} | "
            f"{100 * c['difference']:+.2f} ({100 * lo:+.2f} to {100 * hi:+.2f}) | "
            f"{c['only_a_right']} / {c['only_b_right']} of {c['n']} |")


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.models import load_model

    args = parse_args(argv)
    if model_name(args.a) == model_name(args.b):
        raise SystemExit(f"--a and --b are both named {model_name(args.a)}: compare two different models")
    models = {}
    for ref in (args.a, args.b):
        try:
            models[ref] = load_model(ref)
        except Exception as e:  # a missing or damaged model: say which, stop before any scoring
            raise SystemExit(f"cannot load {ref}: {type(e).__name__}: {e}") from None
    names = model_name(args.a), model_name(args.b)
    record = {"a": args.a, "b": args.b, "tta": args.tta, "dataset": args.dataset, "splits": {}}
    print("| split | a | b | a - b, points (paired 95% CI) | right only for a / only for b |\n|---|---|---|---|---|")
    for split in args.splits:
        d = evaluator.load_split(args.dataset, split)
        c = evaluation.paired_comparison(correct_on(models[args.a], d, args.tta),
                                         correct_on(models[args.b], d, args.tta), args.seed)
        record["splits"][split] = c
        print(row(*names, split, c))
    record.update(evaluation.RunInfo(evaluation.command_line("eval/paired.py", argv), args.seed).as_dict())
    evaluation.save_record(record, args.json or f"results/paired_{names[0]}_vs_{names[1]}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
