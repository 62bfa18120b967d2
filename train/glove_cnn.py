"""Train the word-vector label-embedding CNN of Bülbül ("GloVe-CNN"), or its ``--base`` twin.

    python train/glove_cnn.py --backbone vgg11 --output_dir runs/glove_vgg11
    python train/glove_cnn.py --backbone vgg11 --base --output_dir runs/base_vgg11
    python train/glove_cnn.py --backbone vgg11 --init_from runs/glove_vgg11 --epochs 15 --finetune_lr 0.01 \
        --ema 0.999 --output_dir runs/glove_vgg11_cycle2    # a second cosine cycle from a trained model
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.training import image as image_training, recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return recipes.parse_script(__doc__, argv, image_training.add_common_args, image_training.add_glove_args)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    model = image_training.train_plain(args) if args.base else image_training.train_glove(args)
    name = f"{'base' if args.base else 'glove'}_{args.backbone}"
    image_training.finish(model, args, name)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
