"""Score the serving path (detect, crop, model, fusion) on FER2013 faces placed in synthetic scenes
against each model on the original 48x48 images -> results/end_to_end/<model>.json.

    python eval/end_to_end.py --models glove_cnn fast_cnn --split test --seed 0
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from fermm import cli
from fermm.data import load_fer, seen_in, to_arrays
from fermm.evaluation import metrics
from fermm.models.runtime import precision_of
from fermm.paths import RESULTS_DIR
from fermm.serve import end_to_end
from fermm.serve.predict import SERVED_TTA, ModelPool
from fermm.training.image import DEFAULT_DATASET

SCALES = (0.85, 0.9, 1.0, 1.1, 1.2, 1.3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["glove_cnn", "fast_cnn"],
                   help="registry names, folders or Hub ids of image models; with more than one, their fusion "
                        "is scored too")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--split", default="test", choices=("validation", "test"))
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seeds every scene (background, place, size, turn, JPEG)")
    p.add_argument("--margin", type=float, default=None,
                   help="crop a square with this margin around the box instead of FER2013's framing")
    p.add_argument("--align", action="store_true", help="level the eyes before cropping")
    p.add_argument("--scales", type=float, nargs="*", default=list(SCALES),
                   help="framing scales for the robustness figure (1.0 must be among them; none to skip)")
    p.add_argument("--tta", default=SERVED_TTA, choices=("none", "flip", "tencrop"),
                   help="the views each model averages, served and direct alike (default: as the app serves)")
    p.add_argument("--output_dir", default=str(RESULTS_DIR / "end_to_end"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.scales and 1.0 not in args.scales:
        p.error("--scales must include 1.0 (the reference framing)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_fer(args.dataset)
    images, labels = to_arrays(ds[args.split])
    in_train = seen_in(images, to_arrays(ds["train"])[0])
    if args.limit:
        images, labels, in_train = images[:args.limit], labels[:args.limit], in_train[:args.limit]
    pool = ModelPool(args.models, {m: m for m in args.models if Path(m).exists()})
    missing = {m: pool.error(m) for m in args.models if pool.get(m) is None}
    if missing:
        raise SystemExit(f"cannot load {missing}")
    info = metrics.RunInfo(metrics.command_line("eval/end_to_end.py", argv), args.seed).as_dict()  # as it starts
    trace = end_to_end.run_scenes(pool, args.models, images, args.seed, args.scales, args.margin, args.align,
                                  tta=args.tta)
    direct = end_to_end.direct_predictions(pool, args.models, images, args.tta)
    bare = direct if args.tta == "none" else end_to_end.direct_predictions(pool, args.models, images, "none")
    mirror = end_to_end.mirror_agreement(pool, args.models, images, bare)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [*args.models, end_to_end.FUSED] if len(args.models) > 1 else list(args.models)
    for name in names:
        record = {**end_to_end.summary(trace, direct, labels, in_train, name, mirror), "split": args.split,
                  "dataset": args.dataset, "crop": "fer2013" if args.margin is None else f"margin {args.margin:g}",
                  "align": args.align, "tta": args.tta, "models": list(args.models),
                  "precision": {m: precision_of(pool.get(m)) for m in args.models}, **info}
        stem = Path(name).name if name != end_to_end.FUSED else "fused_" + "+".join(Path(m).name for m in args.models)
        path = out / f"{stem}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path}: found {record['detected']}/{record['n']}, pipeline {record['accuracy_pipeline']} "
              f"vs direct {record['accuracy_direct']} (agreement {record['agreement_with_direct']}); "
              f"framing agreement {record.get('framing_agreement')}, mirrored {record.get('mirror_agreement_direct')}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
