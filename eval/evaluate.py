"""Measure models on a FER split, the same way for every model, into results/<model>.json.

    python eval/evaluate.py --models glove_cnn base_cnn --dataset ../shared/data/fer2013 --split test --tta none
    torchrun --nproc_per_node 2 eval/evaluate.py --models glove_cnn --split test   # shared by 2 processes, same result
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from fermm import cli
from fermm.evaluation import evaluator, metrics, plots
from fermm.models import list_models
from fermm.training.image import DEFAULT_DATASET
from fermm.training.text import DEFAULT_GO, DEFAULT_TEXT


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list_models() + list_models("text"),
                   help="registry names, folders or Hub ids (image and text models)")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--text_dataset", default=str(DEFAULT_TEXT), help="DAIR-AI emotion, for text models")
    p.add_argument("--goemotions", default=str(DEFAULT_GO), help="GoEmotions (Ekman), for FER-7 text models")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"))
    p.add_argument("--output_dir", default="results")
    p.add_argument("--name", help="store the result under this name (one model only; default: the registry "
                                   "name or the folder's last component)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    p.add_argument("--readme", help="then rewrite the results table of this README (eval/compare.py)")
    args = p.parse_args(argv)
    if args.name and len(args.models) != 1:
        p.error("--name needs exactly one model")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    command = metrics.command_line("eval/evaluate.py", argv)
    written, skipped = evaluator.evaluate_all(args.models, args.dataset, args.split, args.tta, args.output_dir,
                                              metrics.RunInfo(command, args.seed), args.text_dataset,
                                              args.name, args.goemotions)
    if not evaluator.is_main_process():  # one of several processes: the first reports and writes
        return 0 if written or not args.models else 1
    for path in written:
        print(f"wrote {path}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    if args.readme:
        metrics.update_readme(Path(args.readme), metrics.markdown_table(metrics.read_results(args.output_dir), plots.PUBLISHED))
    return 0 if written or not args.models else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))
