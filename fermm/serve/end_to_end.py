"""End-to-end evaluation of the serving path on FER2013 faces placed in synthetic scenes.

For each test face: build a seeded scene (:mod:`fermm.serve.scenes`), run the exact serving path
(:func:`fermm.serve.predict.predict_image`: detect, crop, every model, fusion), find the served face that
covers the pasted frame, and score its answers against the label and against each model's answer
on the original 48x48 image. Optionally, re-crop the same detected face at other framing scales and
count how often each model's top label stays the same (robustness to framing).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm import faces as facelib
from fermm.evaluation import metrics
from fermm.labels import FER7, to_fer7
from fermm.serve import scenes
from fermm.serve.predict import SERVED_TTA, ModelPool, predict_image

log = logging.getLogger(__name__)
FUSED = "fused"


@dataclass
class Trace:
    """Per-scene outcomes: detection, frame IoU, and each model's (and the fusion's) FER-7 prediction."""

    detected: list[bool] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    pipeline: dict[str, list[int]] = field(default_factory=dict)  # model -> prediction (-1: not detected)
    scale_preds: dict[str, dict[float, list[int]]] = field(default_factory=dict)  # model -> scale -> prediction


def _offset(box: tuple[float, float, float, float], frame: tuple[float, float, float]) -> float:
    """How far a box's centre is from the frame's centre (the larger of the two axes), in pixels."""
    x, y, w, h = box
    return max(abs(x + w / 2 - frame[0]), abs(y + h / 2 - frame[1]))


def served_face(result, frame: tuple[float, float, float]):
    """The served face whose box centre lies inside the pasted ``frame`` (the nearest to its centre, if
    several do), with the IoU of its served frame against ``frame``; (None, 0.0) when none does."""
    inside = [r for r in result.faces if _offset(r.box, frame) < frame[2] / 2]
    if not inside:
        return None, 0.0
    best = min(inside, key=lambda r: _offset(r.box, frame))
    return best, scenes.square_iou(best.frame, frame)


def _top(probs: dict[str, float]) -> int:
    fer = {lab: probs.get(lab, 0.0) for lab in FER7}
    return FER7.index(max(fer, key=fer.get))


def run_scenes(pool: ModelPool, models: Sequence[str], images: np.ndarray, seed: int,
               scales: Sequence[float] = (), margin: float | None = None, align: bool = False,
               progress_every: int = 500, tta: str = SERVED_TTA) -> Trace:
    """Serve every image inside its own seeded scene and trace what came out (``margin``/``align``:
    the crop, as in :func:`fermm.faces.crop_face`; ``tta``: the views each model averages)."""
    trace = Trace(pipeline={m: [] for m in [*models, FUSED]})
    trace.scale_preds = {m: {s: [] for s in scales} for m in models}
    for i, face48 in enumerate(images):
        scene = scenes.make_scene(face48, np.random.default_rng([seed, i]))
        result = predict_image(scene.image, pool, models, margin=margin, align=align, tta=tta)
        face, iou = served_face(result, scene.frame)
        trace.detected.append(face is not None)
        trace.iou.append(iou)
        for m in models:
            trace.pipeline[m].append(_top(face.probs[m]) if face is not None else -1)
        trace.pipeline[FUSED].append(_top(face.fused) if face is not None else -1)
        if scales and face is not None:
            _rescale(trace, pool, models, scene, scales, margin, align, tta)
        if progress_every and (i + 1) % progress_every == 0:
            log.info("%d/%d scenes, %d faces found", i + 1, len(images), sum(trace.detected))
    return trace


def _rescale(trace: Trace, pool: ModelPool, models: Sequence[str], scene: scenes.Scene,
             scales: Sequence[float], margin: float | None, align: bool, tta: str) -> None:
    """The same detected face cropped at each framing scale, through each model."""
    found = facelib.detect_faces(scene.image)
    face = min(found, key=lambda f: _offset(f.box, scene.frame))  # the face served_face chose
    crops = [facelib.crop_face(scene.image, face, margin, align, scale=s) for s in scales]
    for m in models:
        model = pool.get(m)
        preds = to_fer7(model.predict_proba(crops, tta=tta).numpy(), model.labels).argmax(1)
        for s, p in zip(scales, preds):
            trace.scale_preds[m][s].append(int(p))


def _fer7_probs(pool: ModelPool, name: str, images: np.ndarray, tta: str = "none") -> np.ndarray:
    model = pool.get(name)
    return to_fer7(model.predict_proba(list(images), tta=tta, batch_size=256).numpy(), model.labels)


def direct_predictions(pool: ModelPool, models: Sequence[str], images: np.ndarray,
                       tta: str = SERVED_TTA) -> dict[str, np.ndarray]:
    """Each model's FER-7 prediction on the original 48x48 images, with the same views as served (and their
    fusion)."""
    probs = {m: _fer7_probs(pool, m, images, tta) for m in models}
    out = {m: p.argmax(1) for m, p in probs.items()}
    out[FUSED] = np.mean(list(probs.values()), axis=0).argmax(1)
    return out


def mirror_agreement(pool: ModelPool, models: Sequence[str], images: np.ndarray,
                     direct: dict[str, np.ndarray]) -> dict[str, float]:
    """How often each bare model's top label on the original 48x48 image (``direct``, without test-time views)
    survives mirroring it left to right, which tells nothing new about the expression: the model's own
    consistency, to read the framing agreement against (served with flip views, the answer is mirror-proof)."""
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    return {m: _acc(_fer7_probs(pool, m, mirrored).argmax(1), direct[m]) for m in models}


def summary(trace: Trace, direct: dict[str, np.ndarray], labels: np.ndarray, in_train: np.ndarray | None,
            name: str, mirror: dict[str, float] | None = None) -> dict:
    """One model's (or the fusion's) end-to-end figures (``mirror``: :func:`mirror_agreement`'s)."""
    found = np.asarray(trace.detected)
    pipe, dire = np.asarray(trace.pipeline[name]), np.asarray(direct[name])
    iou = np.asarray(trace.iou)[found]
    out = {"model": name, "n": int(len(labels)), "detected": int(found.sum()),
           "detection_rate": round(float(found.mean()), 4),
           "accuracy_direct": _acc(dire[found], labels[found]),
           "accuracy_direct_all": _acc(dire, labels),
           "accuracy_pipeline": _acc(pipe[found], labels[found]),
           "agreement_with_direct": _acc(pipe[found], dire[found]),
           "frame_iou_median": round(float(np.median(iou)), 4) if iou.size else None,
           "frame_iou_at_least_0_8": round(float((iou >= 0.8).mean()), 4) if iou.size else None}
    if in_train is not None:
        keep = found & ~in_train
        out["n_not_in_train"] = int(keep.sum())
        out["accuracy_direct_not_in_train"] = _acc(dire[keep], labels[keep])
        out["accuracy_pipeline_not_in_train"] = _acc(pipe[keep], labels[keep])
    if name in trace.scale_preds and trace.scale_preds[name]:
        out["framing_agreement"] = framing_agreement(trace.scale_preds[name])
    if mirror and name in mirror:
        out["mirror_agreement_direct"] = mirror[name]
    return out


def framing_agreement(by_scale: dict[float, list[int]]) -> dict[str, float]:
    """For each scale, how often the top label equals the one at scale 1.0 (which must be among them)."""
    ref = np.asarray(by_scale[1.0])
    return {f"{s:g}": _acc(np.asarray(p), ref) for s, p in sorted(by_scale.items()) if s != 1.0}


def _acc(pred: np.ndarray, truth: np.ndarray) -> float | None:
    return round(float((np.asarray(pred) == np.asarray(truth)).mean()), 4) if len(truth) else None


def read_records(folder: str | Path) -> list[dict]:
    """The end-to-end records in ``folder`` (``results/end_to_end``), fused ones last; none if it is missing."""
    out = metrics.read_records(folder, ("model", "accuracy_pipeline", "accuracy_direct"))
    return sorted(out, key=lambda r: (r["model"] == FUSED, r["model"]))


def markdown_table(records: Sequence[dict]) -> str:
    """Served (photo -> detect -> crop -> model) against direct (the 48x48 image) accuracy, per model."""
    rows = ["| model | faces found | served accuracy | direct, same faces | not in train: served / direct | "
            "commit, date |", "|---|---|---|---|---|---|"]
    for r in records:
        name = " + ".join(r.get("models", [])) + " (fused)" if r["model"] == FUSED else r["model"]
        name += "" if r.get("tta", "none") == "none" else f", {r['tta']}"  # the views it averaged
        nit = (f"{r['accuracy_pipeline_not_in_train']:.1%} / {r['accuracy_direct_not_in_train']:.1%}"
               if r.get("accuracy_pipeline_not_in_train") is not None else "n/a")
        rows.append(f"| `{name}` | {r['detected']:,} of {r['n']:,} ({r['detection_rate']:.1%}) | "
                    f"{r['accuracy_pipeline']:.1%} | {r['accuracy_direct']:.1%} | {nit} | "
                    f"{r.get('commit', '?')}, {str(r.get('date', ''))[:10]} |")
    return "\n".join(rows) if records else ""


SERVED_START, SERVED_END = "<!-- served:start -->", "<!-- served:end -->"


def served_models_table(results: Sequence[dict], records: Sequence[dict]) -> str:
    """The served image models in one table: test accuracy (and on images not in train) and, end to end,
    the accuracy a user gets against the model's own on the same faces, and its stability across framings."""
    e2e = {r["model"]: r for r in records}
    rows = ["| model | test accuracy | not in train | served, end to end | direct, same faces | faces found | "
            "same answer, framing 0.85-1.3x (worst) | same answer, mirrored |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: -r["accuracy"]):
        if r["split"] != "test" or r["model"] not in e2e or r["tta"] != e2e[r["model"]].get("tta", "none"):
            continue  # the test row of the views the end-to-end record served
        e = e2e[r["model"]]
        agreement = min(e["framing_agreement"].values()) if e.get("framing_agreement") else None
        rows.append(f"| `{r['model']}` | {r['accuracy']:.2%} | {metrics.pct(r.get('accuracy_not_in_train'), 1)} | "
                    f"{e['accuracy_pipeline']:.1%} | {e['accuracy_direct']:.1%} | {e['detection_rate']:.1%} | "
                    f"{metrics.pct(agreement, 1)} | {metrics.pct(e.get('mirror_agreement_direct'), 1)} |")
    fused = [e for e in records if e["model"] == FUSED]
    for e in fused:
        rows.append(f"| {' + '.join(f'`{m}`' for m in e.get('models', []))} (fused) | | | "
                    f"{e['accuracy_pipeline']:.1%} | {e['accuracy_direct']:.1%} | {e['detection_rate']:.1%} | | |")
    return "\n".join(rows)
