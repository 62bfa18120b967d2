"""The model families a saved folder can hold (its ``config.json`` names one), without ensembles, which
are built from them (:mod:`fermm.models.ensemble`)."""
from __future__ import annotations

import json
from pathlib import Path

from fermm.models.base import EmotionClassifier
from fermm.models.clip import ClipFinetune, ClipLinear, ClipZeroShot
from fermm.models.cnn import CNNClassifier
from fermm.models.coop import CoOp
from fermm.models.text import TextCLIP, TextGRU, TextMiniLM

# config.json "fermm_class" -> class (no side-effect registration: add new families here)
FAMILIES: dict[str, type[EmotionClassifier]] = {
    c.__name__: c for c in (CNNClassifier, ClipZeroShot, ClipLinear, ClipFinetune, CoOp, TextGRU, TextMiniLM, TextCLIP)}


def model_class(folder_or_config: str | Path | dict,
                classes: dict[str, type[EmotionClassifier]] = FAMILIES) -> type[EmotionClassifier]:
    """The class recorded in a saved model's ``config.json``."""
    cfg = folder_or_config
    if not isinstance(cfg, dict):
        path = Path(folder_or_config) / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{folder_or_config}: no config.json (not a saved fermm model)")
        cfg = json.loads(path.read_text())
    name = cfg.get("fermm_class")
    if name not in classes:
        raise ValueError(f"config.json names model class {name!r}; this fermm knows {', '.join(classes)}")
    return classes[name]




def load_member(folder: str | Path) -> EmotionClassifier:
    """A saved model of one family (an ensemble member), ready for inference."""
    return model_class(folder).from_pretrained(str(folder), strict=True).for_inference(folder)
