"""Build an ensemble of trained models, its members and weights selected on validation only.

    python eval/ensemble.py --members runs/glove_vgg11_r2_s0 checkpoints/glove_cnn --tta flip --output_dir runs/ensemble
    python eval/evaluate.py --models runs/ensemble --split test --tta flip      # then measure it, once

Selection is Caruana's greedy forward selection with replacement on the members' validation
probabilities (fermm.models.ensemble.greedy_weights); the folder holds config.json (members, weights)
and selection.json (the validation scores and the command that made it). Its validation accuracy is the
selection's own score, not a held-out estimate: measure the ensemble on test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from fermm import cli
from fermm.evaluation import evaluator, metrics
from fermm.training.image import DEFAULT_DATASET


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", required=True, help="registry names, folders or Hub ids")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"), help="for selection only")
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if len(set(args.members)) != len(args.members):
        p.error("a member is listed twice: list each once (selection repeats members itself)")
    return args


def member_probs(members: Sequence[str], split: dict, tta: str) -> tuple[list, dict[str, str]]:
    """Each member's FER-7 validation probabilities, and the precision that computed them (a member whose folder
    holds a validated int8 graph runs it, as it will in the ensemble)."""
    from fermm.labels import to_fer7
    from fermm.models import load_model
    from fermm.models.runtime import precision_of

    out, precision = [], {}
    for m in members:
        model = load_model(m)
        try:
            evaluator.labels_for(model, split["labels"])
        except ValueError as e:
            raise SystemExit(f"{m}: {e}") from None
        probs, _ = evaluator.predict_split(model, split["images"], tta)
        out.append(to_fer7(probs, model.labels))
        precision[m] = precision_of(model)
    return out, precision


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.models.ensemble import EnsembleClassifier, greedy_weights
    from fermm.serve.predict import fuse

    args = parse_args(argv)
    run = metrics.RunInfo(metrics.command_line("eval/ensemble.py", argv))  # commit and date as it starts
    val = evaluator.load_split(args.dataset, "validation")
    probs, precision = member_probs(args.members, val, args.tta)
    counts = greedy_weights(probs, val["labels"], args.rounds)
    kept = [(m, c) for m, c in zip(args.members, counts) if c]
    singles = {m: float((p.argmax(1) == val["labels"]).mean()) for m, p in zip(args.members, probs)}
    fused = fuse(probs, counts)  # members never picked weigh 0
    accuracy = float((fused.argmax(1) == val["labels"]).mean())
    ens = EnsembleClassifier(members=[m for m, _ in kept], weights=[c for _, c in kept])
    out = Path(args.output_dir)
    ens.save_pretrained(out)
    record = {"members": dict(zip(args.members, counts)), "validation_accuracy": accuracy,
              "member_validation_accuracy": singles, "member_precision": precision, "tta": args.tta,
              "rounds": args.rounds,
              **run.as_dict()}
    (out / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
    for m, a in singles.items():
        print(f"{m}: validation {a:.2%}, weight {dict(kept).get(m, 0)}/{sum(counts)}")
    # not a held-out estimate: the members' checkpoints were chosen on this split too
    print(f"ensemble: validation {accuracy:.2%} (selection split) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
