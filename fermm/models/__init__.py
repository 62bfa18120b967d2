"""The model registry: a plain mapping from names to specs, and one loader for all of them.

    >>> from fermm.models import list_models, load_model
    >>> model = load_model("glove_cnn")          # checkpoints/glove_cnn, else the Hub repo
    >>> model.predict_proba([face]).shape        # (1, 7)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fermm.models.base import EmotionClassifier
from fermm.models.clip import ClipFinetune, ClipLinear, ClipZeroShot
from fermm.models.cnn import CNNClassifier
from fermm.models.coop import CoOp
from fermm.models.ensemble import EnsembleClassifier
from fermm.models.text import TextCLIP, TextGRU, TextMiniLM


@dataclass(frozen=True)
class ModelSpec:
    """A product model: what it is and where its weights come from by default."""

    name: str
    description: str
    hub_repo: str  # default Hub repo id; override with FERMM_MODEL_<NAME> (see fermm.hub)


# config.json "fermm_class" -> class (no side-effect registration: add new families here)
CLASSES: dict[str, type[EmotionClassifier]] = {
    c.__name__: c for c in (CNNClassifier, ClipZeroShot, ClipLinear, ClipFinetune, CoOp, EnsembleClassifier, TextGRU,
                            TextMiniLM, TextCLIP)}

MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("glove_cnn", "VGG11 pre-trained against word-vector label embeddings (seed 003), then fine-tuned",
              "fermm/glove-cnn-vgg11"),
    ModelSpec("fast_cnn", "small VGG (1.1M parameters) distilled from glove_cnn, ~4x faster per face",
              "fermm/fast-cnn"),
    ModelSpec("base_cnn", "VGG11 trained with plain cross-entropy (the GloVe-CNN's base twin)",
              "fermm/base-cnn-vgg11"),
    ModelSpec("resnet50", "ResNet50 for 48x48 grayscale faces, trained from scratch", "fermm/resnet50-fer2013"),
    ModelSpec("clip_zeroshot", "CLIP ViT-B/32 zero-shot with a prompt ensemble", "fermm/clip-zeroshot"),
    ModelSpec("clip_linear", "linear probe on frozen CLIP ViT-B/32 features", "fermm/clip-linear"),
    ModelSpec("clip_finetune", "CLIP ViT-B/32 vision tower fine-tuned with LoRA", "fermm/clip-finetune-lora"),
    ModelSpec("coop", "CoOp: 16 learned prompt context vectors on a frozen CLIP ViT-B/32", "fermm/coop-vit-b32"),
)}


# Text models (DAIR-AI emotion, 6 labels): the optional sentence beside a photo.
TEXT_MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("text_minilm", "all-MiniLM-L6-v2 fine-tuned on DAIR-AI emotion", "fermm/text-minilm-emotion"),
    ModelSpec("text_gru", "bidirectional GRU over word2vec-initialised embeddings (seed 004's baseline)",
              "fermm/text-gru-emotion"),
    ModelSpec("text_clip", "a head on CLIP ViT-B/32's frozen text tower (needs pretrained CLIP)",
              "fermm/text-clip-emotion"),
)}


def list_models(kind: str = "image") -> list[str]:
    """Names of the product's image (or ``kind="text"``) models, whether or not they resolve here."""
    return list(TEXT_MODELS if kind == "text" else MODELS)


def model_class(folder_or_config: str | Path | dict) -> type[EmotionClassifier]:
    """The class recorded in a saved model's ``config.json``."""
    cfg = folder_or_config
    if not isinstance(cfg, dict):
        path = Path(folder_or_config) / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{folder_or_config}: no config.json (not a saved fermm model)")
        cfg = json.loads(path.read_text())
    name = cfg.get("fermm_class")
    if name not in CLASSES:
        raise ValueError(f"config.json names model class {name!r}; this fermm knows {', '.join(CLASSES)}")
    return CLASSES[name]


def model_folder(name_or_path: str, source: str | None = None) -> Path:
    """The local folder of a model given by registry name (resolved by :func:`fermm.hub.resolve`), folder or
    Hub repo id (fetched into the cache)."""
    from fermm.hub import fetch_folder, resolve

    known = name_or_path in MODELS or name_or_path in TEXT_MODELS
    where = resolve(name_or_path, source) if known else name_or_path
    return Path(fetch_folder(where))


def load_model(name_or_path: str, source: str | None = None) -> EmotionClassifier:
    """Load a model by registry name, folder or Hub repo id (see :func:`model_folder`)."""
    return load_folder(model_folder(name_or_path, source))


def load_folder(folder: str | Path) -> EmotionClassifier:
    model = model_class(folder).from_pretrained(str(folder), strict=True)
    return model.for_inference()


def fingerprint(folder: str | Path) -> str:
    """sha256 of a saved model's ``config.json`` and weight files: which model a folder holds, whatever its
    path (an ensemble checks its members against it; a result records it)."""
    import hashlib

    h = hashlib.sha256()
    folder = Path(folder)
    for f in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
