"""The product's models by name, and where each one comes from (a folder, the bundle or the Hub)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fermm.hub import fetch_folder
from fermm.paths import CHECKPOINTS


@dataclass(frozen=True)
class ModelSpec:
    """A product model: what it is and where its weights come from by default."""

    name: str
    description: str
    hub_repo: str  # default Hub repo id; override with FERMM_MODEL_<NAME> (see resolve)


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("glove_cnn", "VGG11 pre-trained against word-vector label embeddings (Bülbül), then fine-tuned",
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
    ModelSpec("text_gru", "bidirectional GRU over word2vec-initialised embeddings (Khuzairi's baseline)",
              "fermm/text-gru-emotion"),
    ModelSpec("text_clip", "a head on CLIP ViT-B/32's frozen text tower (needs pretrained CLIP)",
              "fermm/text-clip-emotion"),
)}


def list_models(kind: str = "image") -> list[str]:
    """Names of the product's image (or ``kind="text"``) models, whether or not they resolve here."""
    return list(TEXT_MODELS if kind == "text" else MODELS)




def resolve(name: str, explicit: str | None = None) -> str:
    """Where model ``name`` comes from: ``explicit`` (a path or repo id) -> the environment variable
    ``FERMM_MODEL_<NAME>`` -> ``checkpoints/<name>`` -> its default Hub repo id."""
    explicit = explicit or os.environ.get(f"FERMM_MODEL_{name.upper()}")
    if explicit:
        return explicit
    local = CHECKPOINTS / name
    if (local / "config.json").exists():
        return str(local)
    return (MODELS.get(name) or TEXT_MODELS[name]).hub_repo


def model_folder(name_or_path: str, source: str | None = None) -> Path:
    """The local folder of a model given by registry name (resolved by :func:`resolve`), folder or
    Hub repo id (fetched into the cache)."""
    known = name_or_path in MODELS or name_or_path in TEXT_MODELS
    where = resolve(name_or_path, source) if known else name_or_path
    return Path(fetch_folder(where))


def fingerprint(folder: str | Path) -> str:
    """sha256 of a saved model's ``config.json`` and weight files: which model a folder holds, whatever its
    path (an ensemble checks its members against it; a result records it)."""
    h = hashlib.sha256()
    folder = Path(folder)
    for f in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
