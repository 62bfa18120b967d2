"""CoOp: learn prompt context vectors on a frozen CLIP (Zhou et al. 2022) and publish the adapter.

    python train/coop.py --output_dir runs/coop --push_to_hub USER/fermm-coop
    python train/coop.py --n_ctx 4 --ctx_init "a photo of a" --shots 16 --output_dir runs/coop_16shot
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.training import clip as clip_training, recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return recipes.parse_script(__doc__, argv, clip_training.add_args, clip_training.add_coop_args)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    model = clip_training.train_coop(args)
    clip_training.finish(model, args, "coop", "stage_coop")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
