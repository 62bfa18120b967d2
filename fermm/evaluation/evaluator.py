"""Evaluate models on a FER split, the same way for every model (used by ``eval/evaluate.py``)."""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from fermm import data
from fermm.evaluation import metrics, text_scores
from fermm.faces import find_and_crop
from fermm.labels import FER7
from fermm.models import MODELS, TEXT_MODELS, fingerprint, load_folder, model_folder
from fermm.models.registry import resolve
from fermm.models.runtime import precision_of

if TYPE_CHECKING:
    from fermm.models.base import EmotionClassifier

log = logging.getLogger(__name__)


def load_split(dataset: str, split: str) -> dict:
    """Images (uint8 48x48), labels, FER+ majority labels (or None) of one split, and which of its images
    also occur in train (``in_train``; None for train itself)."""
    ds = data.load_fer(dataset)
    if split not in ds:
        raise ValueError(f"{dataset} has no split {split!r} (it has {', '.join(ds)})")
    images, labels = data.to_arrays(ds[split])
    fp = np.asarray(ds[split]["ferplus_label"]) if "ferplus_label" in ds[split].column_names else None
    in_train = data.seen_in(images, data.to_arrays(ds["train"])[0]) if split != "train" and "train" in ds else None
    return {"images": images, "labels": labels, "ferplus": fp, "in_train": in_train}


def predict_split(model, images: np.ndarray, tta: str, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """(N, K) probabilities and images per second (prediction time only, batch ``batch_size``).

    Under ``torchrun`` or ``accelerate launch`` each process predicts a contiguous share and every process gets
    all the rows back in order, so the scores are those of one process; the speed is then all processes'."""
    state = _distributed()
    t0 = time.perf_counter()
    if state is None:
        probs = model.predict_proba(list(images), tta=tta, batch_size=batch_size).numpy()
    else:
        from accelerate.utils import gather_object  # lazy: a heavy import, paid only when this runs

        with state.split_between_processes(list(range(len(images)))) as mine:  # a list: arrays are not split
            share = model.predict_proba([images[i] for i in mine], tta=tta, batch_size=batch_size).numpy() \
                if mine else np.zeros((0, len(model.labels)), dtype=np.float32)
        probs = np.concatenate(gather_object([share]))  # one share per process, in process order
    return probs.astype(np.float64), len(images) / (time.perf_counter() - t0)


def _distributed():
    """accelerate's process state when this runs as one of several processes, else None (no set-up cost)."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from accelerate import PartialState  # lazy: a heavy import, paid only when this runs

    return PartialState(cpu=not torch.cuda.is_available())  # without cpu=True, CPU processes stay unaware of each other


def _barrier() -> None:
    state = _distributed()
    if state is not None:
        state.wait_for_everyone()


def is_main_process() -> bool:
    """True unless this is one of several processes and not the first (only the first writes files)."""
    state = _distributed()
    return state is None or state.is_main_process


def evaluate_model(model, name: str, source: str, split_data: dict, dataset: str, split: str, tta: str,
                   run: metrics.RunInfo) -> dict:
    """One result dict in the schema of :mod:`fermm.evaluation.metrics`."""
    probs, ips = predict_split(model, split_data["images"], tta)
    y = labels_for(model, split_data["labels"])
    result = {"model": name, "source": source, "dataset": dataset, "split": split, "tta": tta,
              "precision": precision_of(model),
              **metrics.score(probs, y, model.labels, run.seed, split_data["ferplus"], split_data.get("in_train")),
              "images_per_second": ips, **run.as_dict(), "schema_version": metrics.SCHEMA_VERSION}
    return result


def labels_for(model, fer7_labels: np.ndarray) -> np.ndarray:
    """FER-7 label ids -> the model's label ids (its labels must include all of FER-7)."""
    missing = [lab for lab in FER7 if lab not in model.labels]
    if missing:
        raise ValueError(f"model labels {model.labels} lack {missing}: it cannot be scored on FER2013")
    mapping = np.array([list(model.labels).index(lab) for lab in FER7])
    return mapping[fer7_labels]


def correct_on(model: "EmotionClassifier", split_data: dict, tta: str = "none") -> np.ndarray:
    """Per image of a split: is the model's top class the label?"""
    probs, _ = predict_split(model, split_data["images"], tta)
    return probs.argmax(1) == labels_for(model, split_data["labels"])


def validation_gain(candidate: "EmotionClassifier", incumbent: "EmotionClassifier", dataset: str,
                    tta: str = "none", fp16: bool = True) -> dict:
    """Both models' accuracy on ``validation`` (never test: this decides which model ships) and how
    many images separate them. Used to gate replacing a bundled model with a retrained one; with
    ``fp16`` the candidate is scored with fp16-rounded weights, as it would ship."""
    if list(candidate.labels) != list(incumbent.labels):
        raise ValueError(f"the run predicts {list(candidate.labels)} but the bundled model {list(incumbent.labels)}: "
                         "the app would change label set; compare them with eval/paired.py instead")
    if fp16:
        candidate = copy.deepcopy(candidate).half().float()
    split_data = load_split(dataset, "validation")
    c = metrics.paired_comparison(correct_on(candidate, split_data, tta), correct_on(incumbent, split_data, tta))
    return {"n": c["n"], "fp16": fp16, "candidate": c["accuracy_a"], "incumbent": c["accuracy_b"],
            "gain_points": 100 * c["difference"], "gain_images": c["only_a_right"] - c["only_b_right"]}


def evaluate_text_model(model, name: str, source: str, dataset: str, split: str, run: metrics.RunInfo,
                        goemotions: str | None = None) -> dict:
    """A text model in the same schema (``images_per_second`` counts sentences). DAIR-AI-label models: on
    DAIR-AI emotion (``dataset``). FER-7 models: on GoEmotions (``goemotions``; see
    :func:`fermm.evaluation.text_scores.goemotions_scores`) with DAIR-AI on FER labels beside it."""
    if list(model.labels) == list(FER7):
        return {"model": name, "source": source, "split": split, "tta": "none", "task": "text",
                **text_scores.goemotions_scores(model, goemotions, dataset, split, run.seed), **run.as_dict(),
                "schema_version": metrics.SCHEMA_VERSION}
    ds = data.load_text(dataset)[split]
    texts, y = list(ds["text"]), np.asarray(ds["label"])
    t0 = time.perf_counter()
    probs = model.predict_text(texts).numpy().astype(np.float64)
    rate = len(texts) / (time.perf_counter() - t0)
    return {"model": name, "source": source, "dataset": dataset, "split": split, "tta": "none", "task": "text",
            **metrics.score(probs, y, model.labels, run.seed), "images_per_second": rate, **run.as_dict(),
            "schema_version": metrics.SCHEMA_VERSION}


def claimed_by(path: Path, source: str, sha256: str) -> str | None:
    """What else ``path`` holds, if it is not a result of this model (same folder or same weights): a path's
    last component names its result, so ``runs/a/best`` and ``runs/b/best`` would both write ``best.json``,
    and ``results/`` also holds other scripts' records (``fusion.json``, ``twins.json``)."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return "a file that is not a result"
    if not isinstance(old, dict) or not old.get("source"):
        return "a record that is not a model's result"
    same = old.get("model_sha256") == sha256 or Path(old["source"]).resolve() == Path(source).resolve()
    return None if same else f"the result of {old['source']}"


def evaluate_all(names: Sequence[str], dataset: str, split: str, tta: str, output_dir: str | Path,
                 run: metrics.RunInfo, text_dataset: str | None = None,
                 result_name: str | None = None, goemotions: str | None = None) -> tuple[list[Path], dict[str, str]]:
    """Evaluate every model that resolves; returns written files and {model: reason} for skipped ones.
    Text models are scored on ``goemotions`` (FER-7 text models) and ``text_dataset`` (DAIR-AI emotion), image
    models on ``dataset``. A folder's
    result is named ``result_name`` (one model only) or after the folder, and never replaces another
    file; a registry name's result is replaced whatever its source (it names the product's model).
    A model that cannot be loaded is skipped; an error while scoring one stops the run."""
    if result_name and len(names) != 1:
        raise ValueError("a result name can be given for one model only")
    torch.manual_seed(run.seed)
    images: dict = {}
    written, skipped = [], {}
    for name_or_path in names:
        _barrier()  # every process decides on this model after the first has written the one before
        known = name_or_path in MODELS or name_or_path in TEXT_MODELS
        name = result_name or (name_or_path if known else Path(name_or_path.rstrip("/")).name)
        source = resolve(name_or_path) if known else name_or_path
        try:
            (model, sha256), reason = _load(name_or_path), None
        except Exception as e:  # one model's absence never stops the others
            model, reason = None, f"{type(e).__name__}: {e}"
        text = getattr(model, "family", "") == "text"
        path = Path(output_dir) / f"{metrics.result_name(name, split, 'none' if text else tta)}.json"
        reason = reason or _refusal(path, source, sha256, not known or bool(result_name), text and text_dataset is None)
        if reason:
            skipped[name] = reason
            log.warning("skipping %s: %s", name_or_path, reason)
            continue
        if text:
            result = evaluate_text_model(model, name, source, text_dataset, split, run, goemotions)
        else:
            images = images or load_split(dataset, split)
            result = evaluate_model(model, name, source, images, dataset, split, tta, run)
        result = {**result, "model_sha256": sha256}
        written.append(metrics.write_result(result, output_dir) if is_main_process() else path)
        log.info("%s: accuracy %.4f (95%% CI %.4f-%.4f), macro-F1 %.4f, %.0f img/s", name, result["accuracy"],
                 *result["accuracy_ci95"], result["macro_f1"], result["images_per_second"])
    return written, skipped


def _load(name_or_path: str) -> tuple["EmotionClassifier", str]:
    """The model and its fingerprint (which weights are measured, whatever the path)."""
    folder = model_folder(name_or_path)
    return load_folder(folder), fingerprint(folder)


def _refusal(path: Path, source: str, sha256: str, guard: bool, needs_text_dataset: bool) -> str | None:
    """Why a loaded model is not evaluated, if it is not: another model's file at ``path`` (``guard``), or
    a text model without its dataset."""
    if needs_text_dataset:
        return "a text model: give --text_dataset"
    other = claimed_by(path, source, sha256) if guard else None
    return f"{path} holds {other}; give --name to store this one under another name (or delete it)" if other else None


def evaluate_set(pool, models: Sequence[str], labelled, detect_faces: bool = False, progress=None,
                 seed: int = 0) -> tuple[dict[str, dict], list[dict], dict[str, int]]:
    """Score models on a user's labelled set (see :mod:`fermm.evaluation.userset`).

    With ``detect_faces`` the most confident detected face of each image is classified (images with
    none are skipped and counted); otherwise each image is taken as one face. Returns per-model
    metrics (:func:`fermm.evaluation.metrics.score`), per-image prediction rows and skip counts (the skipped
    files are named in ``labelled.skipped_files``).
    """
    crops, keep = [], []
    for i, image in enumerate(labelled.images):
        if progress:
            progress(0.3 * i / len(labelled.images), desc="finding faces")
        faces, face_crops = find_and_crop(image, whole_image=not detect_faces)
        if not face_crops:
            labelled.skip("no face found", labelled.names[i])
            continue
        crops.append(face_crops[0])
        keep.append(i)
    y = np.asarray([labelled.labels[i] for i in keep], dtype=np.int64)
    rows = [{"file": labelled.names[i], "label": FER7[labelled.labels[i]]} for i in keep]
    scores = {}
    for k, name in enumerate(models):
        if progress:
            progress(0.3 + 0.7 * k / max(len(models), 1), desc=f"running {name}")
        model = pool.get(name)
        if model is None or not crops:
            continue
        probs = model.predict_proba(crops).numpy().astype(np.float64)
        scores[name] = metrics.score(probs, labels_for(model, y), model.labels, seed)
        for row, p in zip(rows, probs):
            row[f"{name}:prediction"] = model.labels[int(p.argmax())]
            row[f"{name}:confidence"] = round(float(p.max()), 4)
    return scores, rows, dict(labelled.skipped)
