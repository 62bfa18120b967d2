"""Saliency overlays: what in a face drove a model's prediction.

CNNs get Grad-CAM (Selvaraju et al. 2017) on their last convolutional block; models without one (e.g.
CLIP) get the gradient of the top class score with respect to the input pixels (Simonyan et al. 2014).
"""
from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _cam_layer(model) -> torch.nn.Module | None:
    layer = getattr(model, "cam_layer", None)
    return layer() if callable(layer) else None


def saliency(model, face: Image.Image, target: int | None = None) -> tuple[np.ndarray, int]:
    """(H, W) map in [0, 1] at the model's input size, and the class it explains (top class by default)."""
    x = model.preprocess([face]).requires_grad_(True)  # (1, C, H, W)
    layer = _cam_layer(model)
    acts: list[torch.Tensor] = []
    me = threading.get_ident()  # the model is shared by the app's requests: keep only this call's activations

    def keep(module, inputs, output):
        if threading.get_ident() == me:
            acts.append(output)
    handle = layer.register_forward_hook(keep) if layer is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)
            target = int(logits.argmax(-1)) if target is None else target
            if acts:
                grads = torch.autograd.grad(logits[0, target], acts[0])[0]  # (1, K, h, w)
                weights = grads.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
                cam = F.relu((weights * acts[0]).sum(1, keepdim=True))  # (1, 1, h, w)
                cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            else:
                cam = torch.autograd.grad(logits[0, target], x)[0].abs().amax(1)[0]  # (H, W)
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    cam = cam.detach().float()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
    return cam.numpy(), target


def overlay(face: Image.Image, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The face with the map blended on top (blue = low, red = high)."""
    face = face.convert("RGB")
    h = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(face.size, Image.BILINEAR)) / 255.0
    color = np.stack([np.clip(1.5 - abs(4 * h - 3), 0, 1), np.clip(1.5 - abs(4 * h - 2), 0, 1),
                      np.clip(1.5 - abs(4 * h - 1), 0, 1)], -1)  # a "jet" colour map
    blended = (1 - alpha) * np.asarray(face) / 255.0 + alpha * color
    return Image.fromarray((blended * 255).clip(0, 255).astype(np.uint8))
