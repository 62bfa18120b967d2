"""Face detection (OpenCV YuNet) and cropping faces to model inputs.

Images from users come in every shape: EXIF-rotated phone photos, RGBA / CMYK / palette / 16-bit PNGs,
grayscale, 1-pixel images and 50-megapixel ones. :func:`load_image` turns any of them into an RGB PIL
image or raises :class:`ImageError` with a message a person understands. Detection runs on a copy
scaled to at most ``max_side`` pixels; boxes are mapped back and crops are cut from the original.
"No face found" is an empty list, not an exception.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps, JpegImagePlugin

from fermm import yunet
from fermm.framing import fer2013_framing

log = logging.getLogger(__name__)
YUNET_PATH = Path(__file__).parent / "assets" / "face_detection_yunet_2023mar.onnx"
MAX_PIXELS = 64_000_000  # refuse larger images before decoding them (decompression bombs)
# images are worked on at most this large (3072 x 3072; a phone's 12 MP photo is halved): detection sees at
# most 1280 px and the models 48-224 px, so more only costs memory
WORK_PIXELS = 3072 * 3072
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# images reduced to WORK_PIXELS take turns (each briefly holds its decoded pixels: 128 MB for a 64 MP 16-bit PNG,
# 256 MB for a 64 MP RGB(A) one); the app holds it for the whole request (fermm.serve.ui)
_ONE_BIG_IMAGE = threading.RLock()


class ImageError(ValueError):
    """An input that is not a usable image; the message says why, for a person to read."""


@dataclass
class Face:
    """A detected face: box (x, y, w, h) in original-image pixels, score, 5 landmarks (x, y):
    right eye, left eye, nose tip, right and left mouth corners (YuNet's order)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    detected_box: tuple[float, float, float, float] | None = None  # before clipping to the image: frames the crop

    def as_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "score": round(float(self.score), 4)}


# --------------------------------------------------------------------------- loading


def load_image(source, max_pixels: int = MAX_PIXELS, work_pixels: int | None = None) -> Image.Image:
    """An upright RGB PIL image from a path, bytes, file object, PIL image or array; with ``work_pixels`` (the
    app: ``WORK_PIXELS``) a bigger one is reduced by a whole factor while it is decoded, so face boxes are then
    in the reduced image's pixels.

    Raises ImageError, with a message in plain words, for empty, damaged, non-image or over-large inputs:
    whatever Pillow raises while opening, decoding or converting a file (its decoders raise many types).
    """
    if isinstance(source, Image.Image):
        im = source
    elif isinstance(source, np.ndarray):
        im = Image.fromarray(_to_uint8(source))
    else:
        im = _open(source, max_pixels)
    factor = _factor(im.size, work_pixels)
    with _ONE_BIG_IMAGE if factor > 1 else contextlib.nullcontext():
        _decode(im, factor if im is not source else 1)  # never shrink a caller's own image in place
        try:
            if getattr(im, "is_animated", False):
                im.seek(0)  # animated GIF / WebP: the first frame
            turn = _ORIENTATION.get(im.getexif().get(0x0112))  # read before shrinking, which drops the EXIF
            small = _shrink(im, _factor(im.size, work_pixels))  # what the JPEG draft left to do
            if small is not im and im is not source:
                im.close()  # free the full-size pixels now, before the RGB copy is made
            rgb = to_rgb(small)
            return rgb.transpose(turn) if turn is not None else rgb
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad upload, never a crash
            log.info("image could not be decoded: %s: %s", type(e).__name__, e)
            raise ImageError("the image could not be decoded (the file is damaged or in an unusual format)") from None


def one_at_a_time_if_big(source) -> contextlib.AbstractContextManager:
    """Held while a request works on ``source`` (a path or bytes): requests for images over ``WORK_PIXELS`` take
    turns from decoding to answer, so four 64 MP uploads at once cost one's memory. Reads the header only."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            big = _factor(im.size, WORK_PIXELS) > 1
    except Exception:  # noqa: BLE001 - not an image: load_image says why
        big = False
    return _ONE_BIG_IMAGE if big else contextlib.nullcontext()


# EXIF orientation -> the transpose that makes the picture upright (as PIL.ImageOps.exif_transpose)
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def _read(source) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path.name}: no such file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path.name}: the file is empty (0 bytes)")
        return path.read_bytes()
    return bytes(source) if isinstance(source, (bytes, bytearray)) else source.read()


def _open(source, max_pixels: int) -> Image.Image:
    """The image's header, checked: size within ``max_pixels``; its pixels are not decoded yet."""
    data = _read(source)
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    limit = f"the limit is {max_pixels / 1e6:.0f} megapixels"
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"the image is too large ({limit})") from None
    except Exception as e:  # noqa: BLE001 - damaged headers raise many types
        log.info("not an image: %s: %s", type(e).__name__, e)
        raise ImageError("this is not an image fermm can read (JPEG, PNG, GIF, BMP, WebP or TIFF)") from None
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(f"the image is too large ({w}x{h} is {w * h / 1e6:.0f} megapixels; {limit})")
    if w * h == 0:
        raise ImageError("the image is empty (it declares no pixels)")
    return im


def _decode(im: Image.Image, factor: int) -> None:
    """Decode the pixels; a JPEG to be reduced by ``factor`` straight at a reduced DCT scale (a fraction of the
    memory and time)."""
    try:
        if factor > 1 and isinstance(im, JpegImagePlugin.JpegImageFile):  # MPO files are JPEGs too
            im.draft(im.mode, (im.size[0] // factor, im.size[1] // factor))
        im.load()
    except Exception as e:  # noqa: BLE001 - truncated or corrupt data raise many types
        log.info("damaged image: %s: %s", type(e).__name__, e)
        raise ImageError("the image file is damaged or truncated") from None


def _factor(size: tuple[int, int], work_pixels: int | None) -> int:
    """The whole factor that brings an image of this size within ``work_pixels`` (1 without a limit)."""
    return max(1, math.ceil(math.sqrt(size[0] * size[1] / work_pixels))) if work_pixels else 1


def _shrink(im: Image.Image, factor: int) -> Image.Image:
    """``im`` reduced by ``factor`` (box filter), a band of rows at a time so that no full-size copy is made;
    16-bit images become 8-bit grey on the way, palette images RGB (RGBA if they have transparency)."""
    if factor == 1:
        return im
    if im.mode in WIDE_MODES:
        return _rescale_to_uint8(im, factor)
    mode = {"P": "RGBA" if "transparency" in im.info else "RGB", "PA": "RGBA", "1": "L"}.get(im.mode, im.mode)
    return _in_bands(im, factor, mode, lambda band: band.convert(mode))


def _in_bands(im: Image.Image, factor: int, mode: str, to_mode, rows: int = 256) -> Image.Image:
    """``to_mode(band)`` over bands of ``im``, each reduced by ``factor``, pasted into one ``mode`` image."""
    w, h = im.size
    out = Image.new(mode, (-(-w // factor), -(-h // factor)))
    step = max(factor, rows - rows % factor)  # bands start on a multiple of the factor: no seam between them
    for top in range(0, h, step):
        band = to_mode(im.crop((0, top, w, min(h, top + step))))
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
        return (arr * 255).clip(0, 255).astype(np.uint8)
    return arr.clip(0, 255).astype(np.uint8)


def _rescale_to_uint8(im: Image.Image, factor: int = 1) -> Image.Image:
    """A 16-bit, 32-bit or float image -> 8-bit grey, reduced by ``factor``, a band at a time (no float copy of it).
    16-bit images map 0-65535 to 0-255; 32-bit and float ones their range up to 255 (or 0-1 for float)."""
    hi = 65535.0 if im.mode.startswith("I;16") else float(im.getextrema()[1])  # getextrema refuses I;16B
    scale = 255.0 / (65535.0 if im.mode.startswith("I;16") or hi > 255 else max(hi, 1.0))
    if im.mode == "F" and hi <= 1.0:
        scale = 255.0

    def to_grey(band: Image.Image) -> Image.Image:
        pixels = np.asarray(band, dtype=np.float32) * np.float32(scale)
        return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))
    return _in_bands(im, factor, "L", to_grey)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB from any PIL mode: alpha is composited on white, 16-bit and float are rescaled to 8-bit."""
    if im.mode == "RGB":
        return im
    if im.mode in WIDE_MODES:
        return _rescale_to_uint8(im).convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")  # L, CMYK, YCbCr, 1, ...


# --------------------------------------------------------------------------- detection


class FaceDetector:
    """YuNet (:mod:`fermm.yunet`: ONNX Runtime, decoded as OpenCV decodes it), on a copy at most ``max_side`` and at
    least ``min_side`` pixels across; boxes come back in the image's pixels. Thread-safe."""

    def __init__(self, model_path: str | Path = YUNET_PATH, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, max_side: int = 1280, min_side: int = 320):
        if not Path(model_path).exists():
            raise FileNotFoundError(f"face detector model not found: {model_path}")
        self._yunet = yunet.YuNet(model_path, score_threshold, nms_threshold, top_k=5000)
        self.max_side, self.min_side = max_side, min_side

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in an RGB image, best score first; an empty list when there is none.

        When nothing is found, a copy padded by half its side all round is tried too: a close-up whose
        face fills the picture (a FER2013 image, a selfie crop) scores low until YuNet sees it whole.
        """
        return _kept(self._detect(image), image) or _kept(self._detect_padded(image), image)

    def _detect_padded(self, image: Image.Image) -> list[Face]:
        """Faces found on a copy, at most half ``max_side`` across, padded by half its side all round (so the
        padded copy never exceeds ``max_side``, whatever the photo's size or shape); in original pixels."""
        scale = min(1.0, self.max_side / 2 / max(image.size))
        small = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                             Image.BILINEAR) if scale < 1 else image
        pad = max(small.size) // 2
        found = self._detect(ImageOps.expand(small, border=pad, fill=_mean_colour(small)))
        return [Face(((x - pad) / scale, (y - pad) / scale, w / scale, h / scale), f.score, (f.landmarks - pad) / scale)
                for f in found for x, y, w, h in [f.box]]

    def _detect(self, image: Image.Image) -> list[Face]:
        """YuNet's faces in original-image pixels, not clipped to the image."""
        w, h = image.size
        scale = min(1.0, self.max_side / max(w, h))
        if max(w, h) * scale < self.min_side:  # tiny inputs: upscale so YuNet's anchors can fit a face
            scale = self.min_side / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        small = image.resize((sw, sh), Image.BILINEAR) if (sw, sh) != (w, h) else image
        found = self._yunet.detect(np.asarray(small)[:, :, ::-1])
        return [Face(box=tuple(float(v) / scale for v in row[:4]), score=float(row[14]),
                     landmarks=row[4:14].reshape(5, 2) / scale) for row in found]


def _kept(found: list[Face], image: Image.Image) -> list[Face]:
    """Faces clipped to the image, those left with some area, best score first."""
    faces = [_clip_face(f, *image.size) for f in found]
    return sorted([f for f in faces if f.box[2] > 1 and f.box[3] > 1], key=lambda f: -f.score)


def _mean_colour(image: Image.Image) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image.resize((16, 16))).reshape(-1, 3).mean(0))


def _clip_face(face: Face, w: int, h: int) -> Face:
    x, y, bw, bh = face.box
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
    return Face((x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)), face.score, face.landmarks,
                face.detected_box or face.box)


def whole_image_face(image: Image.Image) -> Face:
    """The whole image as one face (for already-cropped inputs such as FER2013)."""
    return Face((0.0, 0.0, float(image.size[0]), float(image.size[1])), 1.0, None)


_default: FaceDetector | None = None
_default_lock = threading.Lock()


def default_detector() -> FaceDetector:
    """A process-wide detector, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FaceDetector()
        return _default


def detect_faces(image: Image.Image, whole_image: bool = False) -> list[Face]:
    """Detected faces, or the whole image as one face when ``whole_image``."""
    return [whole_image_face(image)] if whole_image else default_detector().detect(image)


# --------------------------------------------------------------------------- cropping


def face_frame(face: Face, margin: float | None = None, scale: float = 1.0) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square cut around ``face``.

    By default (``margin=None``) the frame a FER2013 image of this face would have had, measured on
    FER2013 itself (:mod:`fermm.framing`): the models were trained on such frames. A ``margin`` gives the
    older square around the box with that fraction of its side on each side. ``scale`` widens (> 1) or
    tightens (< 1) either frame about its centre.
    """
    box = face.detected_box or face.box  # a face cut by the image edge keeps its full frame
    if margin is None:
        return fer2013_framing().frame(box, scale)
    x, y, w, h = box
    return x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin) * scale


def crop_face(image: Image.Image, face: Face, margin: float | None = None, align: bool = False,
              scale: float = 1.0) -> Image.Image:
    """The square cut of :func:`face_frame` around ``face``: what every serving path gives the models.

    With ``align`` and landmarks, the image is first rotated about the frame centre so that the eyes are
    level (off by default: FER2013's own faces are not levelled, and levelling did not help end to end).
    Areas outside the image are filled by edge replication, so the face keeps its place in the frame.
    """
    cx, cy, side = face_frame(face, margin, scale)
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    if align and face.landmarks is not None:
        (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
        if abs(angle) > 1:  # rotate a patch around the face (1.5 x the crop covers any angle), not the photo
            half = math.ceil(side * 0.75)
            px, py = round(cx) - half, round(cy) - half
            patch = _crop_padded(image, (px, py, px + 2 * half, py + 2 * half))
            patch = patch.rotate(angle, resample=Image.BILINEAR, center=(cx - px, cy - py))
            return patch.crop((box[0] - px, box[1] - py, box[2] - px, box[3] - py))
    return _crop_padded(image, box)


def _crop_padded(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    w, h = image.size
    x0, y0, x1, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return image.crop(box)
    arr = np.asarray(image)
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w))) + ((0, 0),) * (arr.ndim - 2)
    arr = np.pad(arr, pad, mode="edge")
    ox, oy = max(0, -x0), max(0, -y0)
    return Image.fromarray(arr[y0 + oy:y1 + oy, x0 + ox:x1 + ox])


def find_and_crop(image: Image.Image, whole_image: bool = False, margin: float | None = None,
                  align: bool = False) -> tuple[list[Face], list[Image.Image]]:
    """Faces in an image and their crops (empty lists when none is found)."""
    faces = detect_faces(image, whole_image)
    return faces, crop_faces(image, faces, whole_image, margin, align)


def crop_faces(image: Image.Image, faces: Sequence[Face], whole_image: bool = False, margin: float | None = None,
               align: bool = False) -> list[Image.Image]:
    return [image if whole_image else crop_face(image, f, margin, align) for f in faces]


def draw_boxes(image: Image.Image, faces: Sequence[Face], labels: Sequence[str] | None = None,
               fit: int | None = None) -> Image.Image:
    """A copy of ``image`` (shrunk to fit ``fit`` x ``fit`` if given) with each face boxed and numbered
    (1-based) with an optional label."""
    scale = min(1.0, fit / max(image.size)) if fit else 1.0
    out = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                       Image.LANCZOS, reducing_gap=3.0) if scale < 1 else image.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    for i, face in enumerate(faces):
        x, y, w, h = (v * scale for v in face.box)
        draw.rectangle([x, y, x + w, y + h], outline=(255, 64, 64), width=width)
        text = f"{i + 1}" + (f" {labels[i]}" if labels and i < len(labels) else "")
        tb = draw.textbbox((x, y), text, font_size=max(12, width * 6))
        ty = y - (tb[3] - tb[1]) - 2 * width if y > (tb[3] - tb[1]) + 2 * width else y + h
        draw.rectangle([x, ty, x + (tb[2] - tb[0]) + 2 * width, ty + (tb[3] - tb[1]) + 2 * width], fill=(255, 64, 64))
        draw.text((x + width, ty), text, fill=(255, 255, 255), font_size=max(12, width * 6))
    return out
