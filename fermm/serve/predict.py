"""Prediction service shared by the app and the command line: faces in a photo -> every model's
probabilities, plus their fused result. Models load once, lazily and thread-safely; a model that cannot
be loaded is reported as unavailable with the reason, and the others keep working.
"""
from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from fermm import faces as facelib
from fermm.labels import FER7, to_fer7
from fermm.models import list_models, load_model
from fermm.models.registry import fingerprint, model_folder, resolve
from fermm.models.runtime import precision_of
from fermm.models.textprep import clean_text
from fermm.serve.fusion import fuse as fuse_text
from fermm.serve.fusion import as_fer7, text_evidence

log = logging.getLogger(__name__)
# The views each model averages per face: the face and its mirror. Chosen on validation (1,000 scenes, models as
# served in int8, results/end_to_end/validation/served_*): the fused answer 67.1% -> 68.7% end to end, and answers
# that do not change when a webcam mirrors the picture. With the int8 graphs and one thread per request it cost
# ~3 ms of app CPU per request in an A/B of python -m bench.load (68 -> 71 ms); in PyTorch fp32, ~40 ms.
SERVED_TTA = "flip"


@dataclass
class ModelStatus:
    name: str
    available: bool
    source: str
    reason: str = ""


class ModelPool:
    """Lazily loaded models by registry name (``sources`` may override where each comes from)."""

    def __init__(self, names: Sequence[str] | None = None, sources: dict[str, str] | None = None):
        self.names = list(names) if names is not None else list_models()
        self.sources = dict(sources or {})
        self._models: dict[str, object] = {}
        self._errors: dict[str, str] = {}
        self._locks = {n: threading.Lock() for n in self.names}

    def source(self, name: str) -> str:
        """Where ``name`` loads from, or "not configured" (the reason is the load error)."""
        try:
            return resolve(name, self.sources.get(name))
        except (FileNotFoundError, ValueError):
            return "not configured"

    def get(self, name: str):
        """The loaded model, or None if it cannot be loaded (see :meth:`error`)."""
        if name not in self._locks:
            self._errors[name] = f"unknown model {name!r}"
            return None
        with self._locks[name]:
            if name not in self._models and name not in self._errors:
                self._load(name)
            return self._models.get(name)

    def _load(self, name: str) -> None:
        try:
            self._models[name] = load_model(name, self.sources.get(name))
            log.info("model %s loaded (%s)", name, precision_of(self._models[name]))
        except Exception as e:  # any failure makes this one model unavailable, never the app
            self._errors[name] = _short(e)
            log.warning("model %s unavailable: %s", name, self._errors[name])

    def error(self, name: str) -> str:
        return self._errors.get(name, "")

    def retry_failed(self) -> None:
        """Forget load failures, so the next use tries again (e.g. after a Hub outage or a new checkpoint)."""
        for name in self.names:
            with self._locks[name]:
                self._errors.pop(name, None)

    def status(self) -> list[ModelStatus]:
        """Load every model once and report which are available and why not."""
        out = []
        for n in self.names:
            ok = self.get(n) is not None
            out.append(ModelStatus(n, ok, self.source(n), "" if ok else self.error(n)))
        return out

    def available(self) -> list[str]:
        return [s.name for s in self.status() if s.available]

    def served(self) -> dict[str, dict]:
        """{name: {"sha256", "precision"}} of the models loaded so far (nothing is loaded or retried here): which
        weights and precision the app serves, to match measured results against."""
        loaded = dict(self._models)  # a copy: another thread may be loading one
        return {n: {"sha256": _fingerprint_of(n, self.sources.get(n)), "precision": precision_of(m)}
                for n, m in loaded.items()}


@functools.lru_cache(maxsize=64)
def _fingerprint_of(name: str, source: str | None) -> str | None:
    """The fingerprint of the folder ``name`` loaded from (hashing its weights once), or None if it has none."""
    try:
        return fingerprint(model_folder(name, source))
    except Exception:  # e.g. a model with no weight files of its own (CLIP zero-shot): nothing to match by
        return None


def _short(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300]}" if str(e) else type(e).__name__


@dataclass
class FaceResult:
    index: int
    box: tuple[float, float, float, float]
    score: float
    crop: Image.Image
    probs: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> label -> p
    fused: dict[str, float] = field(default_factory=dict)
    joint: dict[str, dict[str, float]] = field(default_factory=dict)  # CLIP model -> its joint face + text scores
    frame: tuple[float, float, float] | None = None  # (centre x, centre y, side) of the crop the models saw

    @property
    def top(self) -> str:
        return max(self.fused, key=self.fused.get) if self.fused else ""


@dataclass
class TextResult:
    model: str
    probs: dict[str, float]  # over the text model's labels (FER-7, or DAIR-AI's 6 for the earlier models)
    fer7: dict[str, float]  # the same mass on FER-7
    weight: float  # its weight in the fusion

    @property
    def top(self) -> str:
        return max(self.probs, key=self.probs.get)

    @property
    def strength(self) -> float:
        """How much emotion the reading expresses (1 - its neutral share): what scales its weight in fusion."""
        return float(text_evidence(np.array([self.fer7[lab] for lab in FER7]))[1])


@dataclass
class ImageResult:
    faces: list[FaceResult]
    unavailable: dict[str, str]
    whole_image: bool
    notes: list[str] = field(default_factory=list)
    text: TextResult | None = None


def predict_text(text: str | None, pool: ModelPool | None, model_name: str | None, weight: float
                 ) -> tuple[TextResult | None, list[str], dict[str, str]]:
    """The text model's reading of ``text``: None when there is no text, no model, or nothing it could read
    (the notes say which)."""
    if text is None or not text.strip() or pool is None or not model_name:
        return None, [], {}
    model = pool.get(model_name)
    if model is None:
        return None, clean_text(text)[1], {model_name: pool.error(model_name)}
    reading = model.read(text)
    if reading is None or not reading.readable:
        return None, reading.notes if reading else clean_text(text)[1], {}
    p = np.array([[reading.probs[lab] for lab in model.labels]])
    fer = as_fer7(p, model.labels)[0]
    return TextResult(model_name, reading.probs, {lab: float(v) for lab, v in zip(FER7, fer)}, weight), reading.notes, {}


def fuse(per_model: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of FER-7 distributions (equal weights unless fitted ones are given)."""
    stack = np.stack(per_model)  # (M, N, 7)
    w = np.ones(len(stack)) if weights is None else np.asarray(weights, dtype=np.float64)
    fused = np.tensordot(w / w.sum(), stack, axes=1)
    return fused / fused.sum(-1, keepdims=True)


def predict_image(image: Image.Image | None, pool: ModelPool, models: Sequence[str], whole_image: bool = False,
                  max_faces: int = 20, text: str | None = None, text_pool: ModelPool | None = None,
                  text_model: str | None = None, text_weight: float = 0.5, margin: float | None = None,
                  align: bool = False, tta: str = SERVED_TTA) -> ImageResult:
    """Detect faces (or take the whole image), run each chosen model on all faces in one batch, and fuse
    with the text's reading when there is text. With no image, the result is the text's alone.
    ``margin`` and ``align`` choose the crop (:func:`fermm.faces.crop_face`; default: FER2013's framing);
    ``tta`` the test-time views each model averages (:func:`fermm.transforms.tta_views`)."""
    text_result, notes, text_unavailable = predict_text(text, text_pool, text_model, text_weight)
    if image is None:
        return ImageResult([], text_unavailable, whole_image, notes, text_result)
    found = facelib.detect_faces(image, whole_image)
    if len(found) > max_faces:  # cut before cropping: a crowd photo may hold thousands of detections
        notes.append(f"{len(found)} faces found; showing the {max_faces} most confident")
        found = found[:max_faces]
    crops = facelib.crop_faces(image, found, whole_image, margin, align)
    results = [FaceResult(i + 1, f.box, f.score, c, frame=None if whole_image else facelib.face_frame(f, margin))
               for i, (f, c) in enumerate(zip(found, crops))]
    unavailable, fer7 = {}, []
    for name in models:
        model = pool.get(name)
        if model is None:
            unavailable[name] = pool.error(name)
            continue
        if not results:
            continue
        p = model.predict_proba(crops, tta=tta).numpy()
        for r, row in zip(results, p):
            r.probs[name] = {lab: float(v) for lab, v in zip(model.labels, row)}
        fer7.append(to_fer7(p, model.labels))
        if text_result and getattr(model, "family", "") == "clip":  # CLIP also reads the text in its own space
            for r, row in zip(results, model.joint_proba(torch.from_numpy(p), text).numpy()):
                r.joint[name] = {lab: float(v) for lab, v in zip(model.labels, row)}
    if fer7:
        image_probs = fuse(fer7)
        text_fer = np.array([text_result.fer7[lab] for lab in FER7]) if text_result else None
        for r, row in zip(results, fuse_text(image_probs, text_fer, text_weight)):
            r.fused = {lab: float(v) for lab, v in zip(FER7, row)}
    unavailable.update(text_unavailable)
    return ImageResult(results, unavailable, whole_image, notes, text_result)
