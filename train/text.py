"""Train a text emotion classifier on DAIR-AI emotion: the GRU baseline, MiniLM (LoRA or full) or a head
on CLIP's text tower.

    python train/text.py --model gru --output_dir runs/text_gru
    python train/text.py --model minilm --mode lora --output_dir runs/text_minilm
    python train/text.py --model clip --output_dir runs/text_clip   # needs pretrained CLIP (Hub or folder)
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.training import recipes, text as text_training


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return recipes.parse_script(__doc__, argv, text_training.add_args)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    model, extra = text_training.train(args)
    text_training.finish(model, args, f"text_{args.model}", extra)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
