"""CLIP for facial expressions: zero-shot, linear probe on cached features, or fine-tuning (full / LoRA).

    python train/clip.py --method zeroshot --output_dir runs/clip_zeroshot
    python train/clip.py --method linear --output_dir runs/clip_linear
    python train/clip.py --method finetune --lora --output_dir runs/clip_lora     # Dinie's preset
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.labels import FER7
from fermm.training import clip as clip_training, recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="linear", choices=("zeroshot", "linear", "finetune"))
    p.add_argument("--lora", action="store_true", help="finetune with LoRA adapters instead of the full tower")
    p.add_argument("--lora_r", type=int, default=8)
    clip_training.add_args(p)
    return recipes.parse(p, argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    if args.method == "zeroshot":
        from fermm.models.clip import ClipZeroShot

        model, stage, name = ClipZeroShot(base_model=args.model_name_or_path, labels=FER7), None, "clip_zeroshot"
    elif args.method == "linear":
        model, stage, name = clip_training.train_linear(args), "stage_linear", "clip_linear"
    else:
        model, stage, name = clip_training.train_finetune(args), "stage_finetune", "clip_finetune"
    clip_training.finish(model, args, name, stage)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
