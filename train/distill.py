"""Distil a teacher (any fermm model or ensemble) into a small, fast CNN student.

    python train/distill.py --teacher checkpoints/ensemble --backbone mini --output_dir runs/student_mini
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.training import image as image_training, recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image_training.add_common_args(p)
    p.add_argument("--teacher", required=True, help="registry name, folder or Hub id of the teacher")
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--teacher_view", default="same", choices=("same", "clean"),
                   help="the teacher sees the student's augmented view, or the image un-augmented (teaches "
                        "invariance to the augmentation, e.g. with --framing_jitter)")
    p.add_argument("--teacher_tta", default="none", choices=("none", "flip", "tencrop"),
                   help="test-time views the teacher averages on each batch (as its validation figure was chosen)")
    p.set_defaults(backbone="mini")
    return recipes.parse(p, argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    model = image_training.train_distilled(args)
    image_training.finish(model, args, f"student_{args.backbone}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
