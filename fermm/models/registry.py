"""The product's models by name, and where each one comes from (a folder, the bundle or the Hub)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from fermm.hub import fetch_folder
from fermm.paths import CHECKPOINTS, REPO_ROOT

SOURCES_FILE = REPO_ROOT / "model_sources.json"


@dataclass(frozen=True)
class ModelSpec:
    """A product model: its name and what it is (where it comes from: :func:`resolve`)."""

    name: str
    description: str


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("glove_cnn", "VGG11 pre-trained against word-vector label embeddings (Bülbül), then fine-tuned"),
    ModelSpec("fast_cnn", "small VGG (1.1M parameters, strided stem) distilled from an ensemble, ~4x faster per face"),
    ModelSpec("base_cnn", "VGG11 trained with plain cross-entropy (the GloVe-CNN's base twin)"),
    ModelSpec("resnet50", "ResNet50 for 48x48 grayscale faces, trained from scratch"),
    ModelSpec("clip_zeroshot", "CLIP ViT-B/32 zero-shot with a prompt ensemble"),
    ModelSpec("clip_linear", "linear probe on frozen CLIP ViT-B/32 features"),
    ModelSpec("clip_finetune", "CLIP ViT-B/32 vision tower fine-tuned with LoRA"),
    ModelSpec("coop", "CoOp: 16 learned prompt context vectors on a frozen CLIP ViT-B/32"),
)}


# Text models (DAIR-AI emotion, 6 labels): the optional sentence beside a photo.
TEXT_MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("text_minilm", "all-MiniLM-L6-v2 fine-tuned on GoEmotions + DAIR-AI: the seven FER labels, neutral included"),
    ModelSpec("text_gru", "bidirectional GRU over word2vec-initialised embeddings (Khuzairi's baseline), on GoEmotions + DAIR-AI"),
    ModelSpec("text_clip", "a head on CLIP ViT-B/32's frozen text tower (needs pretrained CLIP)"),
)}


def list_models(kind: str = "image") -> list[str]:
    """Names of the product's image (or ``kind="text"``) models, whether or not they resolve here."""
    return list(TEXT_MODELS if kind == "text" else MODELS)




def configured_sources(path: str | Path | None = None) -> dict[str, str]:
    """Model sources from the file ``FERMM_SOURCES`` names (default ``model_sources.json`` at the repo root, which
    ``spaces/build.py --source`` writes): ``{"resnet50": "USER/fermm-resnet50@REVISION", ...}``."""
    path = Path(path or os.environ.get("FERMM_SOURCES") or SOURCES_FILE)
    if not path.exists():
        return {}
    try:
        sources = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(sources, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise ValueError(f'{path}: expected {{"model name": "USER/REPO[@REVISION]" or a folder, ...}}')
    return sources


def resolve(name: str, explicit: str | None = None) -> str:
    """Where model ``name`` comes from: ``explicit`` (a folder, or a Hub repo id with an optional ``@revision``)
    -> the environment variable ``FERMM_MODEL_<NAME>`` -> the sources file (:func:`configured_sources`) ->
    ``checkpoints/<name>``. A model with none of these has no source: fermm owns no Hub namespace, so it never
    guesses a repo id."""
    source = explicit or os.environ.get(f"FERMM_MODEL_{name.upper()}") or configured_sources().get(name)
    if source:
        return source
    local = CHECKPOINTS / name
    if (local / "config.json").exists():
        return str(local)
    raise FileNotFoundError(f"{name}: no bundled checkpoint and no source configured (set FERMM_MODEL_{name.upper()}"
                            f"=USER/REPO[@REVISION] or a folder, or list it in {SOURCES_FILE.name})")


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
