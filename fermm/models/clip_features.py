"""Cache of frozen CLIP image features: a split is encoded once and reused by the linear probe and CoOp.

The key covers everything the features depend on: the base model (its id and a digest of its vision
weights), the preprocessing (input size, mean, std) and the exact images (a digest of the uint8 array).
Training on cached features with large batches skips the image tower, by far the costliest part
(``bench/throughput.py`` and the training logs measure the ratio).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fermm.transforms import normalize

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path.home() / ".cache" / "fermm" / "clip_features"


def clip_input(x: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(N, 1|3, h, w) in [0, 1] -> CLIP input (N, 3, size, size): bicubic resize, grey to RGB, normalise.
    Training and inference both come through here, so a face is scored as it was trained on."""
    if x.shape[-1] != size or x.shape[-2] != size:
        shrink = x.shape[-1] > size or x.shape[-2] > size  # large app crops: antialias (48 px faces only grow)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                                            antialias=shrink).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return normalize(x, mean, std)


def cache_key(model, images: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{model.base_model}|{model.input_size}|{model.mean}|{model.std}".encode())
    vision = model.clip.vision_model.embeddings.patch_embedding.weight
    h.update(vision.detach().float().numpy().tobytes()[:1 << 20])
    h.update(model.clip.visual_projection.weight.detach().float().numpy().tobytes())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:24]


@torch.no_grad()
def encode(model, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """(N, D) unit image features of uint8 (N, H, W) faces through the frozen image tower."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).unsqueeze(1).float().div_(255)
        out.append(model.image_embed(clip_input(x, model.input_size, model.mean, model.std)).float())
    return torch.cat(out) if out else torch.empty(0, model.clip.config.projection_dim)


def cached_features(model, images: np.ndarray, cache_dir: str | Path = DEFAULT_CACHE,
                    batch_size: int = 64) -> torch.Tensor:
    """Features of ``images``, computed once and then read from ``cache_dir``."""
    path = Path(cache_dir) / f"{cache_key(model, images)}.safetensors"
    if path.exists():
        log.info("CLIP features from cache %s", path)
        return load_file(str(path))["features"]
    feats = encode(model, images, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"features": feats.contiguous()}, str(path), metadata={"base_model": model.base_model})
    return feats
