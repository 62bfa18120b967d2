"""Where a face sits in a FER2013 frame, measured, and the served crop that reproduces it.

FER2013's faces fill their 48x48 frame. A detector box with a margin around it frames a face
differently (the face is smaller, more background shows), and the classifiers trained on FER2013
lose many points on such crops. So the framing is measured on FER2013 itself: YuNet runs on
upscaled, padded train images, and the box's size and position inside the 48x48 frame are kept
(in units of the frame side) in ``assets/framing.json``. Serving inverts that: from a detected box,
the frame that a FER2013 image of this face would have had.

Reproduce the JSON with ``python eval/framing.py --output fermm/assets/framing.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

FRAMING_PATH = Path(__file__).parent / "assets" / "framing.json"
UPSCALE = 4  # 48 px -> 192 px: YuNet's smallest anchors miss faces at 48 px
CANVAS = 480  # the upscaled frame is pasted in the middle of a grey canvas this size
FIELDS = ("box_w", "box_h", "dx", "dy", "eye_y", "eye_dist", "eye_angle")


@dataclass(frozen=True)
class Framing:
    """A face box inside its FER2013 frame, in units of the frame side (medians over train).

    ``box_w``/``box_h``: the box's size; ``dx``/``dy``: its centre minus the frame centre.
    """

    box_w: float
    box_h: float
    dx: float
    dy: float

    def frame(self, box: tuple[float, float, float, float], scale: float = 1.0) -> tuple[float, float, float]:
        """(centre x, centre y, side) of the square frame for a detected ``box`` (x, y, w, h);
        ``scale`` > 1 frames more loosely (robustness studies)."""
        x, y, w, h = box
        side = float(np.sqrt((w / self.box_w) * (h / self.box_h)))  # geometric mean of the two estimates
        cx, cy = x + w / 2 - self.dx * side, y + h / 2 - self.dy * side
        return cx, cy, side * scale


@lru_cache(maxsize=1)
def fer2013_framing(path: str | Path = FRAMING_PATH) -> Framing:
    """The measured framing (``assets/framing.json``)."""
    median = json.loads(Path(path).read_text())["median"]
    return Framing(median["box_w"], median["box_h"], median["dx"], median["dy"])


def scene_of(face48: Image.Image, upscale: int = UPSCALE, canvas: int = CANVAS) -> tuple[Image.Image, tuple[int, int, int]]:
    """A 48x48 face upscaled and pasted in the middle of a grey canvas; returns the scene and the
    pasted frame as (left, top, side)."""
    side = face48.size[0] * upscale
    big = face48.convert("RGB").resize((side, side), Image.BICUBIC)
    scene = Image.new("RGB", (canvas, canvas), (128, 128, 128))
    off = (canvas - side) // 2
    scene.paste(big, (off, off))
    return scene, (off, off, side)


def measure_one(detector, face48: Image.Image) -> dict[str, float] | None:
    """The best detected box of one FER2013 image, in units of its frame side; None if no face."""
    scene, (left, top, side) = scene_of(face48)
    found = detector.detect(scene)
    if not found:
        return None
    f = found[0]
    x, y, w, h = f.box
    (rx, ry), (lx, ly) = f.landmarks[0], f.landmarks[1]
    return {"box_w": w / side, "box_h": h / side,
            "dx": (x + w / 2 - left) / side - 0.5, "dy": (y + h / 2 - top) / side - 0.5,
            "eye_y": ((ry + ly) / 2 - top) / side, "eye_dist": float(np.hypot(lx - rx, ly - ry)) / side,
            "eye_angle": float(np.degrees(np.arctan2(ly - ry, lx - rx))), "score": f.score}


def summarise(rows: Iterable[dict[str, float] | None]) -> dict:
    """Detection rate, and the median and quantiles of each field over the detected faces."""
    rows = list(rows)
    found = [r for r in rows if r is not None]
    if not found:
        raise ValueError("no face was detected in any image; cannot measure the framing")
    out = {"n": len(rows), "detected": len(found), "detection_rate": round(len(found) / len(rows), 4)}
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        out["median" if q == 0.5 else f"q{round(q * 100):02d}"] = {
            field: round(float(np.quantile([r[field] for r in found], q)), 4) for field in FIELDS}
    return out


def measure(detector, images: Iterable[Image.Image]) -> dict:
    """The framing summary over 48x48 FER2013 images (see :func:`summarise`)."""
    return summarise(measure_one(detector, im) for im in images)


def spread(path: str | Path = FRAMING_PATH) -> tuple[float, float, float]:
    """(smallest scale, largest scale, largest shift) of FER2013's own framing, 5-95%: box width relative to the
    median, and centre offset in units of the side (the range a model should tolerate)."""
    f = json.loads(Path(path).read_text())
    med = f["median"]["box_w"]
    shift = max(abs(f[q][k]) for q in ("q05", "q95") for k in ("dx", "dy"))
    return round(f["q05"]["box_w"] / med, 3), round(f["q95"]["box_w"] / med, 3), round(shift, 3)
