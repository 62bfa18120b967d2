"""Training cost of real runs: seconds per epoch and the time it took to reach the best checkpoint, read from
the `history.json` every training stage writes (fermm.training.loop.Trainer).

    python -m bench.train_cost --runs runs/glove_vgg11_r2_s0 runs/resnet50_s0 --json results/bench/train_cost.json

Per stage (GloVe-CNN: `stage_contrastive` then `stage_finetune`): epochs run of those planned, the median seconds
per training epoch and images/second, the best validation accuracy and its epoch (1-based), and the training
time to that epoch two ways: the recorded sum of epoch times (inflated by anything that paused or slowed the
run) and (best epoch) x the median epoch. Validation passes are in neither. A warm-started run (--init_from)
counts only its own epochs and names its start. The per-step speed of each backbone with and without bf16 /
channels_last is bench/throughput.py's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Sequence

from bench import common
from fermm.training.image import STAGES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run folders (train/*.py --output_dir)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    for folder in map(Path, args.runs):
        if not folder.is_dir():
            p.error(f"--runs {folder}: no such folder")
        if not stage_folders(folder):
            p.error(f"--runs {folder}: no stage folder with a training_args.json (not a train/*.py --output_dir)")
    return args


def stage_folders(run: Path) -> list[Path]:
    """The run's stages in training order (unknown stage names last, by name)."""
    found = [t.parent for t in run.glob("*/training_args.json")]
    rank = {name: i for i, name in enumerate(STAGES)}
    return sorted(found, key=lambda s: (rank.get(s.name, len(STAGES)), s.name))


def stage_cost(stage: Path) -> dict:
    """The cost figures of one stage folder (training_args.json + history.json, if an epoch has finished)."""
    cfg = json.loads((stage / "training_args.json").read_text())
    history_path = stage / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    row = {"stage": stage.name, "epochs": len(history), "planned_epochs": cfg["epochs"],
           "precision": {"no": "fp32"}.get(cfg["mixed_precision"], cfg["mixed_precision"]),
           "channels_last": cfg["channels_last"], "init_from": cfg.get("extra", {}).get("init_from")}
    if not history:
        return row
    # the first of equal maxima, as the Trainer keeps it
    best = max(range(len(history)), key=lambda i: history[i]["val_accuracy"])
    secs = [r["epoch_seconds"] for r in history]
    median = statistics.median(secs)
    return {**row, "median_epoch_seconds": round(median, 1),
            "median_images_per_second": round(statistics.median(r["images_per_second"] for r in history), 1),
            "best_epoch": best + 1, "best_val_accuracy": round(history[best]["val_accuracy"], 4),
            "recorded_seconds": round(sum(secs), 1), "to_best_seconds_recorded": round(sum(secs[:best + 1]), 1),
            "to_best_seconds_median": round(median * (best + 1), 1)}


def run_cost(folder: Path) -> dict:
    """Every stage of a run, and the whole run's time to its best checkpoint: earlier stages count whole (the
    next one starts after them), the last up to its best epoch."""
    rows = [stage_cost(s) for s in stage_folders(folder)]
    out = {"run": folder.name, "init_from": rows[0]["init_from"], "stages": rows,
           "in_progress": any(r["epochs"] < r["planned_epochs"] for r in rows)}
    if len(rows) > 1 and all(r["epochs"] for r in rows):
        *earlier, last = rows
        out["total_to_best_seconds_median"] = round(
            sum(r["median_epoch_seconds"] * r["epochs"] for r in earlier) + last["to_best_seconds_median"], 1)
        out["total_to_best_seconds_recorded"] = round(
            sum(r["recorded_seconds"] for r in earlier) + last["to_best_seconds_recorded"], 1)
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def report(runs: list[dict]) -> None:
    print(f"{'run / stage':<44} {'epochs':>7} {'s/epoch':>8} {'img/s':>6} {'best val (epoch)':>17} "
          f"{'to best: epochs x median':>24} {'recorded':>9}")
    for r in runs:
        start = f" (from {Path(r['init_from']).name})" if r["init_from"] else ""
        print(f"{r['run']}{start}{' -- in progress' if r['in_progress'] else ''}")
        for s in r["stages"]:
            head = f"  {s['stage']} ({s['precision']}{', channels_last' if s['channels_last'] else ''})"
            epochs = f"{s['epochs']}/{s['planned_epochs']}"
            if not s["epochs"]:
                print(f"{head:<44} {epochs:>7}")
                continue
            best = f"{s['best_val_accuracy']:.2%} ({s['best_epoch']})"
            print(f"{head:<44} {epochs:>7} {s['median_epoch_seconds']:>8.0f} {s['median_images_per_second']:>6.0f} "
                  f"{best:>17} {_minutes(s['to_best_seconds_median']):>24} {_minutes(s['to_best_seconds_recorded']):>9}")
        if "total_to_best_seconds_median" in r:
            print(f"{'  whole run':<44} {'':>7} {'':>8} {'':>6} {'':>17} "
                  f"{_minutes(r['total_to_best_seconds_median']):>24} {_minutes(r['total_to_best_seconds_recorded']):>9}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.provenance("-m bench.train_cost", argv)
    common.print_header(info)
    runs = [run_cost(Path(f)) for f in args.runs]
    report(runs)
    common.write_json(args.json, info, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
