"""Synthetic scenes around FER2013 faces, for end-to-end checks of the serving path without new data.

Each 48x48 face is upscaled, turned a little, and pasted somewhere on a seeded background (gradients,
blurred noise, clutter shapes), then the scene is JPEG-compressed. The scene knows where the original
frame went, so the serving path's detect -> crop can be scored against it, and its answer against the
model's answer on the original 48x48 image.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass
class Scene:
    image: Image.Image
    frame: tuple[float, float, float]  # (centre x, centre y, side) of the pasted 48x48 frame
    angle: float  # degrees the face was turned (counter-clockwise)
    quality: int  # JPEG quality


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient between two random colours, plus blurred noise and a few random shapes."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
    ramp = c0[None] * (1 - t[:, None]) + c1[None] * t[:, None]  # (L, 3)
    arr = np.broadcast_to(ramp[None] if len(t) == width else ramp[:, None], (height, width, 3)).astype(np.float32)
    noise = rng.normal(0, rng.uniform(5, 40), (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    noise_up = np.asarray(Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.BICUBIC), dtype=np.float32) - 128
    im = Image.fromarray(np.clip(arr + noise_up, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 6))):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(20, width // 2 + 21), y0 + rng.integers(20, height // 2 + 21)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))


def make_scene(face48: np.ndarray | Image.Image, rng: np.random.Generator, side_range: tuple[int, int] = (96, 320),
               max_angle: float = 8.0, quality_range: tuple[int, int] = (60, 95)) -> Scene:
    """One seeded scene around a 48x48 face (see the module docstring)."""
    face = face48 if isinstance(face48, Image.Image) else Image.fromarray(face48)
    width, height = int(rng.integers(480, 1025)), int(rng.integers(360, 769))
    side = int(rng.integers(side_range[0], min(side_range[1], int(min(width, height) * 0.8)) + 1))
    angle = float(rng.uniform(-max_angle, max_angle))
    big = face.convert("RGB").resize((side, side), Image.BICUBIC)
    turned = big.rotate(angle, Image.BICUBIC, expand=True)
    mask = Image.new("L", big.size, 255).rotate(angle, Image.BICUBIC, expand=True)
    tw, th = turned.size
    x, y = int(rng.integers(0, width - tw + 1)), int(rng.integers(0, height - th + 1))
    scene = background(rng, width, height)
    scene.paste(turned, (x, y), mask)
    quality = int(rng.integers(quality_range[0], quality_range[1] + 1))
    buf = io.BytesIO()
    scene.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Scene(Image.open(buf).convert("RGB"), (x + tw / 2, y + th / 2, float(side)), angle, quality)


def square_iou(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """IoU of two axis-aligned squares given as (centre x, centre y, side)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[2] / 2, a[0] + a[2] / 2, a[1] + a[2] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[2] / 2, b[0] + b[2] / 2, b[1] + b[2] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)
