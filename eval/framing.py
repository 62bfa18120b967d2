"""Measure where YuNet's face box sits inside FER2013's 48x48 frames -> fermm/assets/framing.json.

    python eval/framing.py --split train --n 4000 --seed 0 --output fermm/assets/framing.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fermm import cli, framing
from fermm.data import load_fer, to_arrays
from fermm.evaluation import metrics
from fermm.faces import default_detector
from fermm.training.image import DEFAULT_DATASET


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(DEFAULT_DATASET), help="FER source: folder, fer2013.csv or Hub id")
    p.add_argument("--split", default="train", choices=("train", "validation"),
                   help="never test: the framing is part of the served model")
    p.add_argument("--n", type=int, default=4000, help="images sampled from the split (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(framing.FRAMING_PATH))
    return p.parse_args(argv)


def sample(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` images drawn without replacement (all of them when n is 0 or too large), in a seeded order."""
    if not n or n >= len(images):
        return images
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    info = metrics.RunInfo(metrics.command_line("eval/framing.py", argv), args.seed).as_dict()  # as it starts
    images, _ = to_arrays(load_fer(args.dataset)[args.split])
    chosen = sample(images, args.n, args.seed)
    summary = framing.measure(default_detector(), (Image.fromarray(a) for a in chosen))
    record = {"what": "YuNet's face box inside FER2013's 48x48 frame, in units of the frame side",
              "split": args.split, "upscale": framing.UPSCALE, "canvas": framing.CANVAS, **summary, **info}
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}: {summary['detected']}/{summary['n']} detected; median {summary['median']}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
