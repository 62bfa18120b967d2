"""Seeded fuzzing of the upload path: a mutated image is either decoded or refused with ImageError, never
anything else, and predicting on what decodes never fails (bit flips, truncation, header damage, EXIF)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fermm import faces
from fermm.serve.predict import ModelPool, predict_image

FORMATS = {"JPEG": {}, "PNG": {}, "GIF": {}, "BMP": {}, "WEBP": {"quality": 80}, "TIFF": {}}
PER_FORMAT = 220


def _valid(fmt: str, rng: np.random.Generator) -> bytes:
    arr = rng.integers(0, 256, (int(rng.integers(8, 40)), int(rng.integers(8, 40)), 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if fmt == "JPEG" and rng.random() < 0.5:  # every EXIF orientation value, valid or not
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(0, 10))
        return _save(im, fmt, exif=exif)
    return _save(im.convert("P") if fmt == "GIF" else im, fmt, **FORMATS[fmt])


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: flip bits, cut the file short, overwrite part of its header, or several of these."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(0, 4)
        if kind == 0:
            for i in rng.integers(0, len(out), int(rng.integers(1, 9))):
                out[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            out = out[:int(rng.integers(0, len(out)))]
        elif kind == 2 and out:
            start = int(rng.integers(0, min(64, len(out))))
            out[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        elif out:
            i = int(rng.integers(0, len(out)))
            out[i:i + 4] = b"\xff\xff\xff\x7f"  # a huge length or size field
    return bytes(out)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_uploads_decode_or_raise_image_error(fmt):
    rng = np.random.default_rng(list(FORMATS).index(fmt))
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(PER_FORMAT):
        payload = mutate(_valid(fmt, rng), rng)
        try:
            im = faces.load_image(payload)
        except faces.ImageError as e:
            assert "PIL" not in str(e) and "Pillow" not in str(e)
            outcomes["refused"] += 1
            continue
        assert im.mode == "RGB" and min(im.size) >= 1
        predict_image(im, ModelPool([]), [])  # detection and cropping take whatever decoded
        outcomes["decoded"] += 1
    assert outcomes["refused"] > 0  # the corpus really is damaged


def test_a_sixteen_bit_image_is_converted_in_bands(monkeypatch):
    arr = np.arange(3000 * 40, dtype=np.uint16).reshape(3000, 40) * 17
    rgb = faces.load_image(_save(Image.fromarray(arr), "PNG"))
    want = np.clip(arr.astype(np.float64) * 255 / 65535, 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(rgb)[..., 0], want)
