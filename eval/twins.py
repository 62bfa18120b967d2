"""Measure the word-vector gain: GloVe-CNN runs against their cross-entropy twins (fermm.studies.twins).

    python eval/twins.py --runs runs/glove_vgg11_s0 runs/base_vgg11_s0 runs/glove_vgg11_s1 runs/base_vgg11_s1

Each run folder is a ``train/glove_cnn.py`` output (model + training_args.json). Both splits are
scored; the gain that counts is on test, validation is shown beside it. ``--recorded`` adds the runs
kept in an earlier results file (per-image correctness and training arguments), for arms whose folders
are gone or were trained on another machine. ``--epoch_matched`` pairs each GloVe-CNN with a base run of
as many epochs in all, contrastive ones included.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from fermm import cli
from fermm.evaluation import evaluator, metrics
from fermm.studies import twins
from fermm.training import image
from fermm.training.image import DEFAULT_DATASET

SPLITS = ("validation", "test")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=[], help="train/glove_cnn.py output folders, both arms")
    p.add_argument("--recorded", nargs="+", default=[], metavar="JSON",
                   help="earlier eval/twins.py results whose runs join these (a folder given in --runs wins)")
    p.add_argument("--epoch_matched", action="store_true",
                   help="pair each GloVe run with a base run of as many epochs in all (contrastive ones included)")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--json", help="default: results/twins.json, or results/twins_epoch_matched.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    return p.parse_args(argv)


def script_defaults() -> dict:
    """``train/glove_cnn.py``'s default arguments."""
    p = argparse.ArgumentParser()
    image.add_common_args(p)
    image.add_glove_args(p)
    return vars(p.parse_args(["--output_dir", "unused"]))


def load_run(folder: str, splits: dict[str, dict]) -> twins.TwinRun:
    """A run's training arguments and per-image correctness on each split."""
    from fermm.models import load_model

    path = Path(folder)
    args_file = path / "training_args.json"
    if not args_file.exists():
        raise SystemExit(f"{folder}: no training_args.json (is this a finished train/glove_cnn.py run?)")
    model = load_model(str(path))
    run = twins.TwinRun(path.name, with_defaults(json.loads(args_file.read_text())), source=str(path))
    for split, d in splits.items():
        run.correct[split] = evaluator.correct_on(model, d)
    return run


def with_defaults(run_args: dict) -> dict:
    # arguments added to the script after a run was trained take their defaults, as the run had them
    return {**script_defaults(), **run_args}


def read_record(file: str, digests: dict[str, str], dataset: str) -> list[twins.TwinRun]:
    """The runs kept in an earlier results file, refused unless scored on these very images."""
    try:
        record = json.loads(Path(file).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--recorded {file}: cannot read it ({e})") from None
    if "runs" not in record:
        raise SystemExit(f"--recorded {file}: it keeps no per-image results (written before commit 33ca0cf)")
    if record.get("split_digest") != digests:
        raise SystemExit(f"--recorded {file}: its runs were scored on {record.get('dataset')}, whose validation "
                         f"and test images or labels differ from those of {dataset} here")
    try:
        return [twins.TwinRun.from_record(name, {**r, "args": with_defaults(r["args"])}, r.get("source") or file)
                for name, r in record["runs"].items()]
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"--recorded {file}: a run's record is damaged ({e!r})") from None


def gather(fresh: list[twins.TwinRun], recorded: Sequence[str], digests: dict[str, str],
           dataset: str) -> list[twins.TwinRun]:
    """Fresh runs, then recorded ones; a fresh folder replaces a recorded run of its name, any other clash stops."""
    runs = {}
    for run in fresh:
        if run.name in runs:
            raise SystemExit(f"two run folders are named {run.name}: {runs[run.name].source} and {run.source}")
        runs[run.name] = run
    fresh_names = set(runs)
    for file in recorded:
        for run in read_record(file, digests, dataset):
            old = runs.get(run.name)
            if old is None:
                runs[run.name] = run
            elif run.name not in fresh_names and not old.same_as(run):
                raise SystemExit(f"--recorded {file}: its {run.name} has other results than the {run.name} "
                                 f"read before (from {old.source}); give only one of them")
    return list(runs.values())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.runs and not args.recorded:
        raise SystemExit("give --runs folders, --recorded results files, or both")
    run = metrics.RunInfo(metrics.command_line("eval/twins.py", argv), args.seed)  # commit and date as it starts
    splits = {s: evaluator.load_split(args.dataset, s) for s in SPLITS}
    digests = {s: twins.split_digest(d["images"], d["labels"]) for s, d in splits.items()}
    runs = gather([load_run(r, splits) for r in args.runs], args.recorded, digests, args.dataset)
    try:
        pairs, alone = twins.pair_up(runs, args.epoch_matched)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if not pairs:
        raise SystemExit(f"no GloVe/base twins among {', '.join(r.name for r in runs)}")
    out = {s: twins.gain_table(pairs, s, args.seed) for s in SPLITS}
    protocol = "epoch-matched" if args.epoch_matched else "Bülbül (the GloVe arm's contrastive epochs on top)"
    print(f"Schedule: {protocol}\n")
    for s in SPLITS:
        print(twins.markdown(out[s]), end="\n\n")
    if alone:
        hint = "" if args.epoch_matched else " (a base run as long as both GloVe stages pairs by --epoch_matched)"
        print(f"without a twin (not counted): {', '.join(alone)}{hint}")
    record = {**out, "protocol": protocol, "unpaired": alone, "dataset": args.dataset,
              "n": {s: len(d["labels"]) for s, d in splits.items()}, "split_digest": digests,
              "runs": {r.name: r.to_record() for r in runs},
              **run.as_dict()}
    out = args.json or f"results/twins{'_epoch_matched' if args.epoch_matched else ''}.json"
    print(f"wrote {metrics.save_record(record, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
