"""Metrics and the results schema shared by ``eval/``, the model cards, the README and the app.

One implementation of every metric (scikit-learn underneath; ``evaluate.load`` cannot fetch its
metric scripts offline). A result file ``results/<name>.json`` holds (schema version 1):

    model, source, dataset, split, n, labels, accuracy (fraction), accuracy_ci95 [lo, hi] (seeded
    bootstrap), macro_f1 (over the classes that occur in the split), per_class {label: precision, recall, f1,
    support}, confusion_matrix (counts,
    rows = true, cols = predicted), ece (15 bins), tta, ferplus (accuracy against FER+ majority labels,
    or null), ferplus8 (the same on FER+'s 8 labels, for models that score contempt, or null),
    images_per_second, command, commit, seed, date, hardware, schema_version; from 2026-12-04 also
    model_sha256 (``fermm.models.fingerprint`` of the folder measured); from 2026-12-06 also n_not_in_train and
    accuracy_not_in_train (the images of the split whose pixels do not occur in train; null for train itself).
"""
from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fermm.labels import FERPLUS8

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("model", "source", "dataset", "split", "n", "labels", "accuracy", "accuracy_ci95", "macro_f1",
                 "per_class", "confusion_matrix", "ece", "tta", "ferplus", "ferplus8", "images_per_second",
                 "command", "commit", "seed", "date", "hardware", "schema_version")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score  # lazy: a heavy import, paid only when this runs

    return float(accuracy_score(y_true, y_pred))


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, seed: int = 0, n_boot: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy over resampled test images (seeded, deterministic)."""
    return bootstrap_mean_ci(np.asarray(y_true) == np.asarray(y_pred), seed, n_boot, level)


def bootstrap_mean_ci(values: np.ndarray, seed: int = 0, n_boot: int = 1000,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image ``values`` (e.g. correct = 1, or a paired
    difference of two models' correctness)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float64)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_comparison(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0) -> dict:
    """Two models scored on the same images (per-image correctness): both accuracies, the difference
    a - b with its paired bootstrap 95% interval, and the discordant images (right for one model only),
    which are all a paired difference rests on."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different images ({a.shape} vs {b.shape})")
    if a.size == 0:
        raise ValueError("no images to compare the two models on")
    lo, hi = bootstrap_mean_ci(a.astype(np.float64) - b, seed)
    return {"n": int(a.size), "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()),
            "difference": float(a.mean() - b.mean()), "difference_ci95": [lo, hi],
            "only_a_right": int((a & ~b).sum()), "only_b_right": int((~a & b).sum())}


def per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support  # lazy: a heavy import, paid only when this runs

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(labels))), zero_division=0)
    return {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes with at least one true example: a model label that never occurs (FER+
    'contempt' on FER2013) has no F1 to measure and would otherwise count as 0."""
    from sklearn.metrics import f1_score  # lazy: a heavy import, paid only when this runs

    present = sorted(set(np.asarray(y_true).tolist()) & set(range(n_classes)))
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def macro_f1_of(result: dict) -> float:
    """``macro_f1`` recomputed from a result's per-class F1 and support (records written before 2026-12-04
    averaged labels without true examples in as 0)."""
    f1 = [c["f1"] for c in result["per_class"].values() if c["support"] > 0]
    return float(np.mean(f1)) if f1 else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix  # lazy: a heavy import, paid only when this runs

    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist()


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over confidence bins of |accuracy - confidence| weighted by bin size."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def ferplus_scores(probs: np.ndarray, labels: Sequence[str], ferplus_label: np.ndarray, seed: int
                   ) -> tuple[dict | None, dict | None]:
    """Accuracy against FER+ majority labels (rows with no majority are left out).

    ``ferplus``: over rows whose FER+ label is one of the model's labels (a 7-label model is not
    scored on contempt rows). ``ferplus8``: over all rows with a majority, for models that have every
    FER+ label (contempt included); else None.
    """
    valid = ferplus_label >= 0
    if not valid.any():
        return None, None
    model_idx = np.array([list(labels).index(FERPLUS8[k]) if FERPLUS8[k] in labels else -1
                          for k in range(len(FERPLUS8))])
    target = np.where(valid, model_idx[np.clip(ferplus_label, 0, None)], -1)
    pred = probs.argmax(1)
    scored = target >= 0
    seven = {"n": int(scored.sum()), "accuracy": accuracy(target[scored], pred[scored]),
             "accuracy_ci95": list(bootstrap_ci(target[scored], pred[scored], seed)),
             "confusion_matrix": confusion(target[scored], pred[scored], len(labels))}
    eight = None
    if all(lab in labels for lab in FERPLUS8):
        eight = {"n": int(valid.sum()), "accuracy": accuracy(target[valid], pred[valid]),
                 "accuracy_ci95": list(bootstrap_ci(target[valid], pred[valid], seed))}
    return seven, eight


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The shell command that reproduces a figure: ``python <script> <args>`` (``sys.argv`` when argv is None)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", script, *(shlex.quote(a) for a in args)])


@dataclass
class RunInfo:
    """Provenance recorded with every figure. Commit and date are taken when it is made, so make it as the run
    starts: a commit made while a long run goes on must not be credited with its figures."""

    command: str
    seed: int = 0
    commit: str = field(default_factory=lambda: git_commit())
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def as_dict(self) -> dict:
        return {"command": self.command, "commit": self.commit, "seed": self.seed, "date": self.date,
                "hardware": hardware()}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    n = torch.get_num_threads()
    return f"{cpu}, {n} thread{'s' * (n != 1)}{gpu}"  # the threads PyTorch runs on, not the CPU's count


def score(probs: np.ndarray, y_true: np.ndarray, labels: Sequence[str], seed: int = 0,
          ferplus_label: np.ndarray | None = None, in_train: np.ndarray | None = None) -> dict:
    """All metrics of one model on one split, from its (N, K) probabilities. With ``in_train`` (which images
    also occur in train, pixel for pixel), also the accuracy on the others, which no model can have memorised."""
    y_pred = probs.argmax(1)
    unseen = ~np.asarray(in_train, bool) if in_train is not None else None
    out = {"n": int(len(y_true)), "labels": list(labels), "accuracy": accuracy(y_true, y_pred),
           "accuracy_ci95": list(bootstrap_ci(y_true, y_pred, seed)),
           "n_not_in_train": int(unseen.sum()) if unseen is not None else None,
           "accuracy_not_in_train": accuracy(y_true[unseen], y_pred[unseen]) if unseen is not None else None,
           "macro_f1": macro_f1(y_true, y_pred, len(labels)), "per_class": per_class(y_true, y_pred, labels),
           "confusion_matrix": confusion(y_true, y_pred, len(labels)),
           "ece": expected_calibration_error(probs, y_true), "ferplus": None, "ferplus8": None}
    if ferplus_label is not None:
        out["ferplus"], out["ferplus8"] = ferplus_scores(probs, labels, ferplus_label, seed)
    return out


def result_name(model: str, split: str = "test", tta: str = "none") -> str:
    """File stem in ``results/``: ``<model>``, plus ``.<tta>`` / ``.<split>`` when not the defaults."""
    return model + ("" if tta == "none" else f".{tta}") + ("" if split == "test" else f".{split}")


def write_result(result: dict, output_dir: str | Path) -> Path:
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"result is missing {missing}")
    path = Path(output_dir) / f"{result_name(result['model'], result['split'], result['tta'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def save_record(record: dict, path: str | Path) -> Path:
    """Write a study's record (an eval script's JSON output beside the results); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_records(folder: str | Path, required: Sequence[str]) -> list[dict]:
    """Every JSON object in ``folder`` that holds the ``required`` keys (unreadable or other files are skipped)."""
    out = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(r, dict) and all(k in r for k in required):
            out.append(r)
    return out


def read_results(folder: str | Path) -> list[dict]:
    """Every valid result file in ``folder`` (others are skipped), sorted by model name."""
    out = [r for r in read_records(folder, REQUIRED_KEYS) if r["schema_version"] == SCHEMA_VERSION]
    return sorted(out, key=lambda r: (r["model"], r["split"], r["tta"]))


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage, or "n/a" when it was not measured."""
    return "n/a" if value is None else f"{value:.{digits}%}"


def markdown_table(results: Sequence[dict], published: Sequence[dict] = ()) -> str:
    """The results as markdown: face models on FER2013, then text models on DAIR-AI emotion, with
    published figures listed (and labelled) below."""
    faces = [r for r in results if r.get("task", "image") == "image"]
    texts = [r for r in results if r.get("task") == "text"]
    rows = ["| model | split | TTA | runs in | accuracy (95% CI) | not in train | macro-F1 | FER+ acc. | ECE | img/s | "
            "commit, date |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(faces, key=lambda r: -r["accuracy"]):
        lo, hi = r["accuracy_ci95"]
        fp = f"{r['ferplus']['accuracy']:.1%}" if r.get("ferplus") else "n/a"
        rows.append(f"| `{r['model']}` | {r['split']} | {r['tta']} | {precision_label(r)} | "
                    f"{r['accuracy']:.2%} ({lo:.1%}-{hi:.1%}) | "
                    f"{pct(r.get('accuracy_not_in_train'))} | {macro_f1_of(r):.3f} | {fp} | {r['ece']:.3f} | "
                    f"{r['images_per_second']:.0f} | {r['commit']}, {r['date'][:10]} |")
    if not faces:
        rows.append("| *(no model measured yet)* | | | | | | | | | | |")
    text = ["", text_table(texts)] if texts else []
    pub = ["", published_line(published)] if published else []
    return "\n".join(rows + text + pub)


def text_table(texts: Sequence[dict]) -> str:
    """Text models' results as markdown (measured on GoEmotions or DAIR-AI emotion)."""
    rows = ["| text model | measured on | split | accuracy (95% CI) | macro-F1 | multi-label macro-F1 | "
            "DAIR-AI on FER labels | sentences/s | commit, date |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(texts, key=lambda r: (-("multilabel_macro_f1" in r), -r["accuracy"])):
        lo, hi = r["accuracy_ci95"]
        dair = r.get("dair_fer7")
        rows.append(f"| `{r['model']}` | {Path(r['dataset']).name} | {r['split']} | {r['accuracy']:.2%} "
                    f"({lo:.1%}-{hi:.1%}) | {macro_f1_of(r):.3f} | {_f3(r.get('multilabel_macro_f1'))} | "
                    f"{pct(dair['accuracy'] if dair else None)} | {r['images_per_second']:.0f} | "
                    f"{r['commit']}, {r['date'][:10]} |")
    return "\n".join(rows)


def published_line(published: Sequence[dict]) -> str:
    return "Published, not measured here: " + "; ".join(
        f"{p['model']} {p['accuracy']:.1%}" + (f" ({p['note']})" if p.get("note") else "") for p in published)


def precision_label(r: dict) -> str:
    """What computed a result's predictions: "int8 (ONNX)" or "fp32" (results older than stored int8 graphs carry no
    ``precision``: they were all computed in fp32, by PyTorch or ONNX Runtime)."""
    precision = r.get("precision", "torch fp32")
    return {"onnx int8": "int8 (ONNX)", "mixed": "int8 and fp32 members"}.get(precision, "fp32")


def _f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(readme: Path, table: str, start: str = README_START, end: str = README_END) -> None:
    """Replace the table between the ``start`` and ``end`` markers of ``readme``."""
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")
