"""fermm.faces: detection on a real photo, no-face, crops, and every awkward image input."""
from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from fermm import faces

# The astronaut photo (NASA, public domain, 512x512): one face, roughly here.
FACE_CENTRE = (223, 120)


def _centre(face: faces.Face) -> tuple[float, float]:
    x, y, w, h = face.box
    return x + w / 2, y + h / 2


def _near(face, centre=FACE_CENTRE, tol=20):
    cx, cy = _centre(face)
    return abs(cx - centre[0]) < tol and abs(cy - centre[1]) < tol


def test_detects_the_face_in_a_real_photo(astronaut):
    found = faces.default_detector().detect(astronaut)
    assert len(found) == 1
    assert found[0].score > 0.8 and _near(found[0])
    assert found[0].landmarks.shape == (5, 2)
    right_eye, left_eye = found[0].landmarks[:2]
    assert right_eye[0] < left_eye[0]  # image-left eye first


def test_blank_image_has_no_face():
    assert faces.default_detector().detect(Image.new("RGB", (640, 480), (120, 120, 120))) == []
    found, crops = faces.find_and_crop(Image.new("RGB", (64, 64)))
    assert found == [] and crops == []


def test_whole_image_mode(astronaut):
    found, crops = faces.find_and_crop(astronaut, whole_image=True)
    assert len(found) == 1 and found[0].box == (0.0, 0.0, 512.0, 512.0) and crops[0] is astronaut


def test_huge_and_tiny_images_map_boxes_back(astronaut):
    big = astronaut.resize((4096, 4096))
    (face,) = faces.default_detector().detect(big)
    assert _near(face, (FACE_CENTRE[0] * 8, FACE_CENTRE[1] * 8), tol=160)
    small = astronaut.resize((128, 128))
    (face,) = faces.default_detector().detect(small)
    assert _near(face, (FACE_CENTRE[0] / 4, FACE_CENTRE[1] / 4), tol=6)


def test_crop_is_square_centred_and_padded(astronaut):
    (face,) = faces.default_detector().detect(astronaut)
    crop = faces.crop_face(astronaut, face, margin=0.25, align=True)
    side = round(max(face.box[2:]) * 1.5)
    assert abs(crop.size[0] - side) <= 1 and crop.size[0] == crop.size[1]
    edge = faces.Face((-20.0, -20.0, 60.0, 60.0), 1.0, None)  # partly outside: padded, not shifted
    assert faces.crop_face(astronaut, edge, margin=0.0).size == (60, 60)


def test_eye_alignment_levels_the_eyes():
    # two bright "eyes" on a line tilted by 25 degrees; after alignment they sit on one row
    im = Image.new("RGB", (200, 200))
    angle = np.radians(25)
    right, left = np.array([70.0, 90.0]), np.array([70 + 60 * np.cos(angle), 90 + 60 * np.sin(angle)])
    arr = np.asarray(im).copy()
    for x, y in (right, left):
        arr[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
    face = faces.Face((50.0, 60.0, 100.0, 100.0), 1.0, np.array([right, left, [0, 0], [0, 0], [0, 0]]))
    out = np.asarray(faces.crop_face(Image.fromarray(arr), face, margin=0.1, align=True))[..., 0]
    ys, xs = np.nonzero(out > 128)
    blobs = [ys[xs < xs.mean()].mean(), ys[xs >= xs.mean()].mean()]
    assert abs(blobs[0] - blobs[1]) < 2.5
    unaligned = np.asarray(faces.crop_face(Image.fromarray(arr), face, margin=0.1, align=False))[..., 0]
    ys, xs = np.nonzero(unaligned > 128)
    assert abs(ys[xs < xs.mean()].mean() - ys[xs >= xs.mean()].mean()) > 20


def test_aligned_crop_rotates_a_patch_equal_to_rotating_the_whole_photo():
    """Away from the borders, rotating only a patch around the face gives the pixels rotating the photo gave."""
    arr = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    face = faces.Face((300.3, 200.7, 120.0, 110.0), 1.0, np.array([[330, 240], [400, 262], [0, 0], [0, 0], [0, 0]]))
    x, y, w, h = face.box
    cx, cy, side = x + w / 2, y + h / 2, max(w, h) * 1.5
    angle = np.degrees(np.arctan2(262 - 240, 400 - 330))
    whole = im.rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    want = whole.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
    assert np.array_equal(np.asarray(faces.crop_face(im, face, margin=0.25, align=True)), np.asarray(want))


def test_a_crowd_is_cut_to_max_faces_before_cropping(monkeypatch, astronaut):
    from fermm.serve import predict

    crowd = [faces.Face((float(i), 0.0, 40.0, 40.0), 1 - i / 1000, None) for i in range(500)]
    monkeypatch.setattr(faces, "detect_faces", lambda image, whole_image=False: crowd)
    cropped = []
    real_crop = faces.crop_face
    monkeypatch.setattr(faces, "crop_face", lambda *a, **k: cropped.append(1) or real_crop(*a, **k))
    result = predict.predict_image(astronaut, predict.ModelPool([]), [], max_faces=20)
    assert len(result.faces) == 20 and len(cropped) == 20
    assert "500 faces found; showing the 20 most confident" in result.notes


def test_flip_views_make_the_answer_the_same_for_a_mirrored_photo(tmp_path, astronaut):
    """predict_image with tta="flip" averages each face with its mirror: a mirrored photo (as many webcams send)
    gets the same answer; without those views the same model's answer changes."""
    import torch

    from fermm.models.cnn import CNNClassifier
    from fermm.serve import predict
    from PIL import ImageOps

    torch.manual_seed(0)
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "tiny")
    pool = predict.ModelPool(["glove_cnn"], sources={"glove_cnn": str(tmp_path / "tiny")})
    def probs(image, **kw):
        face = predict.predict_image(image, pool, ["glove_cnn"], whole_image=True, **kw).faces[0]
        return np.array(list(face.probs["glove_cnn"].values()))

    mirrored = ImageOps.mirror(astronaut)
    assert np.allclose(probs(astronaut, tta="flip"), probs(mirrored, tta="flip"), rtol=0, atol=1e-7)
    assert np.abs(probs(astronaut, tta="none") - probs(mirrored, tta="none")).max() > 1e-5  # an untrained model: small


def test_exif_orientation_is_applied(astronaut):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    astronaut.transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", exif=exif)
    upright = faces.load_image(buf.getvalue())
    assert upright.size == (512, 512)
    (face,) = faces.default_detector().detect(upright)
    assert _near(face)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "P", "L", "LA", "I;16", "1"])
def test_every_mode_becomes_rgb_and_keeps_the_face(astronaut, mode):
    if mode == "I;16":
        arr16 = (np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257)
        im = Image.fromarray(arr16)
        assert im.mode.startswith("I;16")
        src = _encode(im, "PNG")
    else:
        src = _encode(astronaut.convert(mode), "JPEG" if mode == "CMYK" else "PNG")
    rgb = faces.load_image(src)
    assert rgb.mode == "RGB" and rgb.size == (512, 512)
    if mode != "1":  # a 1-bit dither is no longer a photo
        (face,) = faces.default_detector().detect(rgb)
        assert _near(face)


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.linspace(0, 65535, 64 * 64, dtype=np.uint16).reshape(64, 64)
    rgb = faces.load_image(_encode(Image.fromarray(arr), "PNG"))
    px = np.asarray(rgb)[..., 0]
    assert px.min() == 0 and px.max() == 255 and len(np.unique(px)) > 200


def test_rgba_transparency_composited_on_white():
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(faces.load_image(_encode(im, "PNG"))).min() == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    rgb = faces.load_image(buf.getvalue())
    assert tuple(np.asarray(rgb)[0, 0]) == (255, 0, 0)


def test_one_pixel_image_gives_no_face_not_an_error():
    rgb = faces.load_image(_encode(Image.new("RGB", (1, 1)), "PNG"))
    assert faces.default_detector().detect(rgb) == []


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but holds almost no data (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "text renamed .jpg": (b"hello, I am not a picture", "not an image"),
    "html renamed": (b"<html><script>alert(1)</script></html>", "not an image"),
    "svg renamed": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "not an image"),
    "bomb": (_png_header_only(100_000, 100_000), "possible decompression bomb|too large"),
    "too large": (_png_header_only(9000, 8000), "too large"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_inputs_raise_a_clear_image_error(name):
    payload, message = BAD_INPUTS[name]
    with pytest.raises(faces.ImageError, match=message):
        faces.load_image(payload)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_raise_a_clear_error(astronaut, fmt):
    whole = _encode(astronaut, fmt)
    with pytest.raises(faces.ImageError, match="damaged or truncated"):
        faces.load_image(whole[: len(whole) // 2])


def test_zero_byte_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(faces.ImageError, match="empty.jpg: the file is empty"):
        faces.load_image(empty)
    with pytest.raises(faces.ImageError, match="no such file"):
        faces.load_image(tmp_path / "nope.jpg")


def test_large_photo_within_limit_loads_reduced_to_the_working_size(astronaut):
    big = _encode(astronaut.resize((8000, 6000)), "JPEG", quality=70)
    assert faces.load_image(big).size == (8000, 6000)  # the library's default: boxes in the original's pixels
    rgb = faces.load_image(big, work_pixels=faces.WORK_PIXELS)  # the app's
    w, h = rgb.size
    assert w * h <= faces.WORK_PIXELS and 8000 % w == 0 and (w * 6000, h * 8000) == (8000 * h, 6000 * w)  # whole factor
    (face,) = faces.default_detector().detect(rgb)
    assert _near(face, (FACE_CENTRE[0] * w / 512, FACE_CENTRE[1] * h / 512), tol=250 * w / 8000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_big_image_keeps_its_exif_orientation(astronaut, fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    big = astronaut.resize((6000, 3000))
    buf = io.BytesIO()
    big.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 70} if fmt == "JPEG" else {"compress_level": 1}))
    rgb = faces.load_image(buf.getvalue(), work_pixels=faces.WORK_PIXELS)
    assert rgb.size == (1500, 3000)  # 18 MP -> halved, then turned upright (portrait)
    assert faces.load_image(buf.getvalue()).size == (3000, 6000)


def test_a_64_megapixel_16_bit_image_costs_a_bounded_amount_of_memory(tmp_path):
    """Decoding, rescaling to 8 bits and reducing such a file must stay far below a float copy of it (~512 MB)."""
    side = int(faces.MAX_PIXELS ** 0.5) - 1
    ramp = np.linspace(0, 65535, side, dtype=np.float32)
    path = tmp_path / "big16.png"
    Image.fromarray((ramp[None, :] * 0.5 + ramp[:, None] * 0.5).astype(np.uint16)).save(path, compress_level=1)
    code = ("import resource, sys; from fermm import faces; import numpy as np; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"im = faces.load_image({str(path)!r}, work_pixels=faces.WORK_PIXELS); "
            "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024; "
            "a = np.asarray(im); print(im.size[0], im.size[1], a[0, 0, 0], a[-1, -1, 0], round(grown))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    w, h, first, last, grown_mb = map(int, out)
    factor = -(-side // int(faces.WORK_PIXELS ** 0.5))  # the whole factor that brings it within WORK_PIXELS
    assert (w, h) == (-(-side // factor), -(-side // factor))
    assert first < 5 and last > 250  # the ramp survives, dark to bright
    assert grown_mb < 300, f"loading took {grown_mb} MB more at peak"


def test_draw_boxes_marks_the_face(astronaut):
    (face,) = faces.default_detector().detect(astronaut)
    drawn = np.asarray(faces.draw_boxes(astronaut, [face], ["happy"])).astype(int)
    x, y, w, h = (round(v) for v in face.box)
    assert tuple(drawn[y + h // 2, x]) == (255, 64, 64)  # the box's left edge
    assert np.array_equal(drawn[5, 5], np.asarray(astronaut)[5, 5])  # elsewhere untouched


def test_boxes_drawn_on_a_picture_shrunk_to_fit(astronaut):
    (face,) = faces.default_detector().detect(astronaut)
    drawn = faces.draw_boxes(astronaut, [face], ["happy"], fit=256)
    assert drawn.size == (256, 256)
    x, y, w, h = (round(v / 2) for v in face.box)  # 512 -> 256: the box is halved with the picture
    assert np.abs(np.asarray(drawn).astype(int)[y + h // 2, x] - (255, 64, 64)).sum() < 30
    assert faces.draw_boxes(astronaut, [face], fit=1024).size == (512, 512)  # never enlarged


def test_big_images_take_turns_small_ones_do_not(tmp_path, astronaut):
    import threading

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("L", (4000, 3000)).save(big)
    astronaut.save(small)
    assert isinstance(faces.one_at_a_time_if_big(small), contextlib.nullcontext)
    assert isinstance(faces.one_at_a_time_if_big(b"not an image"), contextlib.nullcontext)  # load_image says why
    assert isinstance(faces.one_at_a_time_if_big(None), contextlib.nullcontext)
    waited = []
    with faces.one_at_a_time_if_big(big):
        other = threading.Thread(target=lambda: waited.append(faces.one_at_a_time_if_big(big.read_bytes())
                                                              .acquire(timeout=0.2)))
        other.start()
        other.join()
    assert waited == [False]  # a second big image waits while the first is worked on


def test_big_endian_16_bit_tiff_loads(tmp_path):
    arr = np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)
    path = tmp_path / "be16.tif"
    Image.frombytes("I;16B", (64, 48), arr.astype(">u2").tobytes()).save(path)
    assert Image.open(path).mode == "I;16B"
    grey = np.asarray(faces.load_image(path))[..., 0]
    assert grey[0, 0] == 0 and grey[-1, -1] == 255 and grey.shape == (48, 64)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "1", "CMYK"])
def test_every_mode_reduces_in_bands_to_the_same_picture(mode, astronaut):
    """A big image of any mode is reduced band by band; the result matches reducing it whole (box filter)."""
    big = astronaut.resize((2048, 2048)).convert(mode)
    small = faces.load_image(big, work_pixels=512 * 512)
    whole = faces.to_rgb(big.convert("RGBA" if mode in ("P", "LA") else ("L" if mode == "1" else mode)).reduce(4))
    assert small.size == (512, 512)
    assert np.abs(np.asarray(small, dtype=int) - np.asarray(whole, dtype=int)).max() <= 2


def test_yunet_in_onnx_runtime_finds_the_faces_opencv_finds(astronaut, fer_tiny):
    """fermm.yunet decodes YuNet as cv2.FaceDetectorYN does: on a real photo at several sizes, and on synthetic
    scenes built around FER2013 faces (some with no face found), the same faces, to a thousandth of a pixel."""
    import cv2

    from fermm.data import to_arrays
    from fermm.serve.scenes import make_scene
    from fermm.yunet import YuNet

    ours = YuNet(faces.YUNET_PATH, 0.7, 0.3, 5000, threads=1)
    opencv = cv2.FaceDetectorYN.create(str(faces.YUNET_PATH), "", (320, 320), 0.7, 0.3, 5000)
    rng = np.random.default_rng(0)
    photos = [astronaut.resize(size) for size in ((512, 512), (333, 250), (640, 480))]
    photos += [make_scene(face, rng).image for face in to_arrays(fer_tiny["test"])[0][:12]]
    found = 0
    for photo in photos:
        bgr = np.ascontiguousarray(np.asarray(photo.convert("RGB"))[:, :, ::-1])
        opencv.setInputSize(photo.size)
        expected = opencv.detect(bgr)[1]
        expected = np.zeros((0, 15), np.float32) if expected is None else expected
        got = ours.detect(bgr)
        assert got.shape == expected.shape
        assert np.allclose(got, expected, atol=1e-3)
        found += len(got)
    assert found >= 10  # most scenes hold a face it finds: the comparison is not over empty lists
