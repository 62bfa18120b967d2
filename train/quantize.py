"""Store an int8 graph beside a CNN's weights, so the app serves it in ONNX Runtime (fermm.models.quantize).

    python train/quantize.py --model checkpoints/glove_cnn

Calibrates the activations on --calibration FER2013 train faces (seeded), measures the int8 graph against the
PyTorch model on validation (never test; each face alone, without the app's mirror view) and saves it only if
validation accuracy drops by at most --max_drop points. The folder's model card gets a "Served precision" section
with those figures and this command.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fermm import cli
from fermm.evaluation import metrics
from fermm.hub import push_trained
from fermm.models import quantize
from fermm.paths import SHARED_DATA
from fermm.training.quantize import quantize_folder


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a saved CNN's folder (the graph is written into it)")
    p.add_argument("--dataset", default=str(SHARED_DATA / "fer2013"), help="FER2013 (train calibrates, "
                                                                            "validation checks)")
    p.add_argument("--calibration", type=int, default=512, help="train faces that calibrate the activations")
    p.add_argument("--max_drop", type=float, default=0.3, help="largest validation accuracy loss allowed, points")
    p.add_argument("--seed", type=int, default=0, help="which train faces calibrate")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for calibration and the validation check")
    p.add_argument("--push_to_hub", metavar="USER/REPO", help="then publish the folder (weights, graph, card)")
    args = p.parse_args(argv)
    if args.calibration < 1 or args.threads < 1:
        p.error("--calibration and --threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    run = metrics.RunInfo(metrics.command_line("train/quantize.py", argv), args.seed)  # commit and date as it starts
    record = quantize_folder(args.model, args.dataset, args.calibration, args.seed, args.max_drop, args.threads, run)
    v = record["validation"]
    print(f"{args.model}: validation {v['accuracy_fp32']:.2%} (PyTorch fp32) -> {v['accuracy_int8']:.2%} (int8), "
          f"same top label on {v['agreement']:.2%}; saved {quantize.GRAPH}")
    if args.push_to_hub:
        push_trained(args.model, args.push_to_hub)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
