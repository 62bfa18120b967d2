"""Training cost of real runs: seconds per epoch and the time it took to reach the best checkpoint, read from
the `history.json` every training stage writes (fermm.training.Trainer).

    python bench/train_cost.py --runs runs/glove_vgg11_r2_s0 runs/resnet50_s0 --json results/bench/train_cost.json

Per stage (e.g. GloVe-CNN's `stage_contrastive` then `stage_finetune`): epochs run, the median seconds per
training epoch and images/second, the best validation accuracy and its epoch, and the training time to that
epoch two ways: the recorded sum of epoch times (inflated by anything that paused or slowed the run) and
(best epoch + 1) x the median epoch. Validation passes are not in either. The per-step speed of each backbone
with and without bf16 / channels_last is bench/throughput.py's. A warm-started run (--init_from) counts
only its own epochs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run folders (train/*.py --output_dir)")
    p.add_argument("--json", help="also write the figures here")
    return p.parse_args(argv)


def stage_cost(stage: Path) -> dict:
    """The cost figures of one stage folder (history.json + training_args.json)."""
    history = json.loads((stage / "history.json").read_text())
    if not history:
        raise ValueError(f"{stage / 'history.json'} is empty: the stage has not finished an epoch")
    cfg_path = stage / "training_args.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    best = max(range(len(history)), key=lambda i: history[i].get("val_accuracy", -1.0))
    secs = [r["epoch_seconds"] for r in history]
    median = statistics.median(secs)
    return {"stage": stage.name, "epochs": len(history), "planned_epochs": cfg.get("epochs"),
            "precision": cfg.get("mixed_precision"), "channels_last": cfg.get("channels_last"),
            "median_epoch_seconds": round(median, 1),
            "median_images_per_second": round(statistics.median(r["images_per_second"] for r in history), 1),
            "best_epoch": history[best]["epoch"], "best_val_accuracy": round(history[best]["val_accuracy"], 4),
            "to_best_seconds_recorded": round(sum(secs[:best + 1]), 1),
            "to_best_seconds_median": round(median * (best + 1), 1)}


def run_cost(folder: Path) -> dict:
    """Every stage of a run, in the order trained (file time of the first history)."""
    stages = sorted((h.parent for h in folder.glob("*/history.json")), key=lambda s: (s / "history.json").stat().st_mtime)
    if not stages:
        raise FileNotFoundError(f"{folder}: no stage folder with a history.json (not a train/*.py --output_dir)")
    rows = [stage_cost(s) for s in stages]
    # earlier stages count whole (the next one starts after them), the last up to its best epoch
    earlier = sum(r["median_epoch_seconds"] * r["epochs"] for r in rows[:-1])
    return {"run": folder.name, "stages": rows,
            "total_to_best_seconds_median": round(earlier + rows[-1]["to_best_seconds_median"], 1)}


def report(runs: list[dict]) -> None:
    print(f"{'run / stage':<40} {'epochs':>6} {'s/epoch':>8} {'img/s':>7} {'best val':>9} {'@epoch':>6} "
          f"{'to best (median)':>16} {'(recorded)':>10}")
    for r in runs:
        for s in r["stages"]:
            print(f"{r['run'] + ' / ' + s['stage']:<40} {s['epochs']:>6} {s['median_epoch_seconds']:>8.0f} "
                  f"{s['median_images_per_second']:>7.0f} {s['best_val_accuracy'] * 100:>8.2f}% {s['best_epoch']:>6} "
                  f"{s['to_best_seconds_median'] / 60:>12.0f} min {s['to_best_seconds_recorded'] / 60:>6.0f} min")
        print(f"{r['run'] + ': whole run':<40} {'':>6} {'':>8} {'':>7} {'':>9} {'':>6} "
              f"{r['total_to_best_seconds_median'] / 60:>12.0f} min")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.provenance("bench/train_cost.py", argv)
    common.print_header(info)
    runs = [run_cost(Path(f)) for f in args.runs]
    report(runs)
    common.write_json(args.json, info, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
