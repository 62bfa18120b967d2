"""The model registry: a plain mapping from names to specs, and one loader for all of them.

    >>> from fermm.models import list_models, load_model
    >>> model = load_model("glove_cnn")          # checkpoints/glove_cnn, else the Hub repo
    >>> model.predict_proba([face]).shape        # (1, 7)
"""
from __future__ import annotations

from pathlib import Path

from fermm.models.base import EmotionClassifier
from fermm.models.clip import ClipFinetune, ClipLinear, ClipZeroShot
from fermm.models.cnn import CNNClassifier
from fermm.models.coop import CoOp
from fermm.models.ensemble import EnsembleClassifier
from fermm.models.families import FAMILIES, model_class
from fermm.models.registry import (
    MODELS,
    TEXT_MODELS,
    ModelSpec,
    fingerprint,
    list_models,
    model_folder,
    resolve,
)
from fermm.models.text import TextCLIP, TextGRU, TextMiniLM

# config.json "fermm_class" -> class: every family, and ensembles of them
CLASSES: dict[str, type[EmotionClassifier]] = {**FAMILIES, EnsembleClassifier.__name__: EnsembleClassifier}

__all__ = ["CLASSES", "MODELS", "TEXT_MODELS", "CNNClassifier", "ClipFinetune", "ClipLinear", "ClipZeroShot", "CoOp",
           "EmotionClassifier", "EnsembleClassifier", "ModelSpec", "TextCLIP", "TextGRU", "TextMiniLM", "fingerprint",
           "list_models", "load_folder", "load_model", "model_class", "model_folder", "resolve"]


def load_model(name_or_path: str, source: str | None = None) -> EmotionClassifier:
    """Load a model by registry name, folder or Hub repo id (see :func:`model_folder`)."""
    return load_folder(model_folder(name_or_path, source))


def load_folder(folder: str | Path) -> EmotionClassifier:
    model = model_class(folder, CLASSES).from_pretrained(str(folder), strict=True)
    return model.for_inference(folder)


