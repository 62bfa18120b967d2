"""The word-vector gain: each GloVe-CNN (``train/glove_cnn.py``) against its cross-entropy twin (``--base``).

Twins share data, backbone, stem, seed and every training argument except those of the contrastive
stage; a pair whose protocols differ in anything else is refused. What is measured is the gain of the
whole two-stage recipe over its twin, the GloVe arm's extra pre-training epochs included (as in seed
003), or, epoch-matched, over a twin trained as many epochs in all. Both models of a pair are scored on
the same images, so the gain's 95% interval comes from a paired bootstrap (resampling images, not
models); the spread across seeds is reported beside it, since seed-to-seed variation is usually the
larger of the two.

Each run's per-image correctness is kept in the results file (:meth:`TwinRun.to_record`), so a run whose
folder is gone (another machine, an earlier session) can still be paired and its interval recomputed.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fermm.evaluation.metrics import bootstrap_mean_ci

# arguments only the GloVe-CNN arm uses, or that do not change what is trained
ARM_ONLY = frozenset({"base", "word_vectors", "lam", "tau", "positives", "pretrain_epochs", "freeze_backbone",
                      "finetune_lr", "output_dir", "push_to_hub", "threads", "log_with"})


@dataclass
class TwinRun:
    """One trained model: its training arguments and, per split, whether each image was classified right."""

    name: str
    args: dict
    correct: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""  # the run folder, or the results file it was recorded in

    @property
    def key(self) -> tuple[str, str, int]:
        return self.args["backbone"], self.args.get("stem", "small"), int(self.args["seed"])

    @property
    def is_base(self) -> bool:
        if "base" not in self.args:  # e.g. train/resnet50.py: cross-entropy, but no GloVe twin of it exists
            raise ValueError(f"{self.name} is not a train/glove_cnn.py run (its training arguments have no 'base')")
        return bool(self.args["base"])

    @property
    def total_epochs(self) -> int:
        """Epochs this run trained: the GloVe arm's contrastive epochs count too (none when it starts from a model;
        that model's own epochs are not counted)."""
        pretrain = 0 if self.is_base or self.args.get("init_from") else int(self.args.get("pretrain_epochs") or 0)
        return int(self.args["epochs"]) + pretrain

    def to_record(self) -> dict:
        """Training arguments and per-split correctness, packed 8 images to a byte (base64)."""
        return {"source": self.source, "args": self.args, "n": {s: len(c) for s, c in self.correct.items()},
                "correct": {s: pack_correct(c) for s, c in self.correct.items()}}

    @classmethod
    def from_record(cls, name: str, record: dict, source: str = "") -> "TwinRun":
        """The inverse of :meth:`to_record`."""
        correct = {s: unpack_correct(b, record["n"][s]) for s, b in record["correct"].items()}
        return cls(name, record["args"], correct, source)

    def same_as(self, other: "TwinRun") -> bool:
        """Same training arguments and the same per-image results (the source may differ)."""
        return self.args == other.args and self.correct.keys() == other.correct.keys() and all(
            np.array_equal(self.correct[s], other.correct[s]) for s in self.correct)

    @property
    def group(self) -> str:
        """What the gain is summarised over: the backbone, and its stem when not the default."""
        backbone, stem, _ = self.key
        return backbone if stem == "small" else f"{backbone} ({stem} stem)"


def pack_correct(correct: np.ndarray) -> str:
    """Per-image correctness as base64 of its packed bits (3,589 images: 600 characters)."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(packed: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_correct`; n is the number of images."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8))
    if len(bits) < n or len(bits) - n >= 8:
        raise ValueError(f"recorded correctness holds {len(bits)} bits, not {n} images")
    return bits[:n].astype(bool)


def split_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Fingerprint of a split's images and labels, so recorded runs are only paired on the same images."""
    h = hashlib.sha1(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def protocol_differences(glove_args: dict, base_args: dict, epoch_matched: bool = False) -> list[str]:
    """Training arguments (outside :data:`ARM_ONLY`) on which the two arms disagree."""
    keys = (set(glove_args) | set(base_args)) - ARM_ONLY - ({"epochs"} if epoch_matched else set())
    return sorted(k for k in keys if _comparable(k, glove_args.get(k)) != _comparable(k, base_args.get(k)))


def _comparable(key: str, value):
    # a dataset folder is named by its last part: the same data checked out elsewhere is the same data
    return Path(value).name if key == "dataset" and isinstance(value, str) else value


def paired_gain_ci(glove_correct: np.ndarray, base_correct: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(glove) - accuracy(base) over the same images."""
    if glove_correct.shape != base_correct.shape:
        raise ValueError(f"the twins were scored on different images ({glove_correct.shape} vs {base_correct.shape})")
    return bootstrap_mean_ci(glove_correct.astype(np.float64) - base_correct.astype(np.float64), seed)


def pair_up(runs: list[TwinRun], epoch_matched: bool = False) -> tuple[list[tuple[TwinRun, TwinRun]], list[str]]:
    """Match each GloVe-CNN run with the base run of the same backbone, stem, seed and schedule.

    The schedule is Bülbül's by default: the same fine-tuning epochs, the GloVe arm's contrastive epochs on top.
    With ``epoch_matched`` the base arm must train as many epochs in all as the GloVe arm (e.g. 26 against 6 + 20),
    so that the gain is not that of extra epochs. Returns the pairs and the names of runs left without a twin.
    Raises ValueError when two runs claim the same slot or a pair's protocols differ."""
    slots: dict[tuple, dict[bool, TwinRun]] = {}
    for run in runs:
        # a warm-started run (a further cycle) is no twin of one trained from scratch
        epochs = run.total_epochs if epoch_matched else int(run.args["epochs"])
        slot = (*run.key, epochs, bool(run.args.get("init_from")))
        arm = slots.setdefault(slot, {})
        if run.is_base in arm:
            raise ValueError(f"{run.name} and {arm[run.is_base].name} are both "
                             f"{'base' if run.is_base else 'GloVe'} runs of {run.key}, {epochs} epochs")
        arm[run.is_base] = run
    pairs, alone = [], []
    for key in sorted(slots):
        arm = slots[key]
        if len(arm) < 2:
            alone += [r.name for r in arm.values()]
            continue
        glove, base = arm[False], arm[True]
        diff = protocol_differences(glove.args, base.args, epoch_matched)
        if diff:
            raise ValueError(f"{glove.name} and {base.name} are not twins: they differ in {', '.join(diff)}")
        pairs.append((glove, base))
    return pairs, alone


def gain_table(pairs: list[tuple[TwinRun, TwinRun]], split: str, seed: int = 0) -> dict:
    """Per pair and per backbone: accuracies, gain (points), its paired interval, and the seed spread."""
    rows, by_backbone = [], {}
    for glove, base in pairs:
        g, b = glove.correct[split], base.correct[split]
        lo, hi = paired_gain_ci(g, b, seed)
        row = {"backbone": glove.group, "stem": glove.key[1], "seed": glove.key[2], "glove": glove.name,
               "base": base.name, "glove_accuracy": float(g.mean()), "base_accuracy": float(b.mean()),
               "gain": float(g.mean() - b.mean()), "gain_ci95": [lo, hi]}
        rows.append(row)
        by_backbone.setdefault(glove.group, []).append(row["gain"])
    summary = {bb: {"seeds": len(gains), "mean_gain": float(np.mean(gains)), "min_gain": float(min(gains)),
                    "max_gain": float(max(gains)),
                    "std_gain": float(np.std(gains, ddof=1)) if len(gains) > 1 else None}
               for bb, gains in by_backbone.items()}
    return {"split": split, "pairs": rows, "by_backbone": summary}


def markdown(table: dict) -> str:
    """One line per pair, then one per backbone (gains in accuracy points)."""
    lines = [f"Split: {table['split']}", "", "| backbone | seed | GloVe-CNN | base | gain (95% paired CI) |",
             "|---|---|---|---|---|"]
    for r in table["pairs"]:
        lo, hi = r["gain_ci95"]
        lines.append(f"| {r['backbone']} | {r['seed']} | {r['glove_accuracy']:.2%} | {r['base_accuracy']:.2%} | "
                     f"{100 * r['gain']:+.2f} ({100 * lo:+.2f} to {100 * hi:+.2f}) |")
    lines += ["", "| backbone | seeds | mean gain | range |", "|---|---|---|---|"]
    for bb, s in table["by_backbone"].items():
        lines.append(f"| {bb} | {s['seeds']} | {100 * s['mean_gain']:+.2f} | "
                     f"{100 * s['min_gain']:+.2f} to {100 * s['max_gain']:+.2f} |")
    return "\n".join(lines)
