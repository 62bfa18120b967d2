"""Train ResNet50 from scratch on FER2013 (48x48 grayscale; see fermm.models.cnn for the stem).

    python train/resnet50.py --output_dir runs/resnet50 [--stem imagenet] [--push_to_hub USER/fermm-resnet50]
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.training import image as image_training, recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    # AdamW: SGD (nesterov, lr 0.02 and 0.05, one warm-up epoch) left ResNet50 at chance for its first epoch here
    return recipes.parse_script(__doc__, argv, image_training.add_common_args, backbone="resnet50", optimizer="adamw",
                                lr=1e-3, weight_decay=0.01)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    model = image_training.train_plain(args)
    image_training.finish(model, args, "resnet50")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
