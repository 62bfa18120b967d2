"""The served crop frames faces as FER2013 does: the measured framing, its inverse, scenes, close-ups,
and one crop function behind the app, the command line and Evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fermm import data, faces, framing
from fermm.serve import scenes
from tests.conftest import FER_TINY


@pytest.fixture(scope="module")
def fixture_faces() -> np.ndarray:
    ds = data.load_fer(FER_TINY)
    return np.concatenate([data.to_arrays(ds[s])[0] for s in ds])  # (63, 48, 48) real FER2013 faces


def test_the_framing_json_is_reproduced_by_its_script(tmp_path):
    import eval.framing as script

    out = tmp_path / "framing.json"
    assert script.main(["--dataset", str(FER_TINY), "--n", "0", "--output", str(out)]) == 0
    sample, shipped = json.loads(out.read_text()), json.loads(framing.FRAMING_PATH.read_text())
    assert sample["n"] == 35 and sample["detected"] >= 33 and sample["command"].startswith("python eval/framing.py")
    for key, tol in (("box_w", 0.03), ("box_h", 0.03), ("dx", 0.02), ("dy", 0.02), ("eye_y", 0.03)):
        assert abs(sample["median"][key] - shipped["median"][key]) < tol, key
    assert shipped["n"] >= 4000 and shipped["split"] == "train"  # measured on train, never on test


def test_frame_inverts_the_measured_box_position():
    f = framing.fer2013_framing()
    left, top, side = 100.0, 50.0, 192.0  # a FER frame in a photo, and the box the median face has in it
    w, h = f.box_w * side, f.box_h * side
    box = (left + side / 2 + f.dx * side - w / 2, top + side / 2 + f.dy * side - h / 2, w, h)
    cx, cy, got = f.frame(box)
    assert (cx, cy, got) == pytest.approx((left + side / 2, top + side / 2, side))
    assert f.frame(box, scale=1.3)[2] == pytest.approx(side * 1.3)


def test_crop_recovers_the_original_frame_in_synthetic_scenes(fixture_faces):
    ious, old = [], []
    for i, face48 in enumerate(fixture_faces):
        scene = scenes.make_scene(face48, np.random.default_rng([0, i]))
        found = faces.default_detector().detect(scene.image)
        ious.append(max((scenes.square_iou(faces.face_frame(f), scene.frame) for f in found), default=0.0))
        old.append(max((scenes.square_iou(faces.face_frame(f, margin=0.25), scene.frame) for f in found), default=0.0))
    assert sum(v > 0 for v in ious) >= 60  # found
    assert np.median(ious) >= 0.8  # FER2013's own framing varies (5-95%: box 0.60-1.03 of the side): not every face
    assert np.median(old) < 0.5  # the old 25% margin framed the face in a frame 1.5x too wide


def test_scenes_are_seeded_and_hold_the_face_where_they_say(fixture_faces):
    a = scenes.make_scene(fixture_faces[1], np.random.default_rng([3, 1]))
    b = scenes.make_scene(fixture_faces[1], np.random.default_rng([3, 1]))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.frame == b.frame
    cx, cy, side = a.frame
    assert 96 <= side <= 320 and abs(a.angle) <= 8 and 60 <= a.quality <= 95
    patch = a.image.crop((round(cx - side / 4), round(cy - side / 4), round(cx + side / 4), round(cy + side / 4)))
    centre = np.asarray(Image.fromarray(fixture_faces[1]).crop((12, 12, 36, 36)).resize(patch.size), dtype=float)
    assert np.corrcoef(np.asarray(patch.convert("L"), dtype=float).ravel(), centre.ravel())[0, 1] > 0.7


def test_square_iou():
    assert scenes.square_iou((0, 0, 2), (0, 0, 2)) == 1.0
    assert scenes.square_iou((0, 0, 2), (10, 0, 2)) == 0.0
    assert scenes.square_iou((0, 0, 2), (0, 0, 1)) == pytest.approx(0.25)


def test_close_ups_are_found_on_a_padded_retry(fixture_faces):
    for face48 in fixture_faces[:6]:
        small = Image.fromarray(face48).convert("RGB")
        for im in (small, small.resize((192, 192), Image.BICUBIC)):
            found = faces.default_detector().detect(im)
            assert len(found) == 1
            x, y, w, h = found[0].box
            assert 0 <= x and 0 <= y and x + w <= im.size[0] + 1e-6 and y + h <= im.size[1] + 1e-6
    assert faces.default_detector().detect(Image.new("RGB", (48, 48), (90, 90, 90))) == []


def test_the_padded_retry_stays_small_whatever_the_shape(monkeypatch):
    detector = faces.FaceDetector()
    sizes = []
    real = detector._detect
    monkeypatch.setattr(detector, "_detect", lambda im: sizes.append(im.size) or real(im))
    shapes = ((34, 42235), (5000, 40), (48, 48), (3000, 2000))
    for size in shapes:
        assert detector.detect(Image.new("RGB", size, (90, 90, 90))) == []
    padded = [s for s in sizes if s not in shapes]
    assert len(padded) == len(shapes) and max(max(s) for s in padded) <= detector.max_side  # one bounded retry each


def test_a_face_cut_by_the_edge_keeps_its_full_frame(fixture_faces):
    scene, _ = framing.scene_of(Image.fromarray(fixture_faces[2]))
    (whole,) = faces.default_detector().detect(scene)
    x, y, w, h = whole.box
    cut = scene.crop((round(x + w * 0.3), 0, scene.size[0], scene.size[1]))  # the left third of the face is gone
    (face,) = faces.default_detector().detect(cut)
    assert face.box[0] == 0.0 and face.detected_box[0] < 0  # shown clipped, framed whole
    clipped_only = faces.Face(face.box, face.score, face.landmarks)
    assert faces.face_frame(face)[2] > faces.face_frame(clipped_only)[2]


def test_app_cli_and_evaluate_share_one_crop_function(monkeypatch, tmp_path, astronaut):
    """Every serving path goes through faces.crop_face, with FER2013's framing by default."""
    from fermm import __main__ as cli
    from fermm.evaluation import evaluator, userset
    from fermm.serve.predict import ModelPool
    from fermm.serve.ui import make_predict_fn

    calls = []
    real = faces.crop_face
    monkeypatch.setattr(faces, "crop_face", lambda image, face, margin=None, *a, **k:
                        calls.append(margin) or real(image, face, margin, *a, **k))
    pool = ModelPool(["glove_cnn"])
    astronaut.save(tmp_path / "a.jpg")
    make_predict_fn(pool, ModelPool([]), 0.5)(str(tmp_path / "a.jpg"), "", ["glove_cnn"], False)
    assert calls == [None]
    assert cli.main(["predict", str(tmp_path / "a.jpg"), "--models", "glove_cnn",
                     "--output", str(tmp_path / "p.csv")]) == 0
    assert calls == [None, None]
    labelled = userset.LabelledSet(names=["a.jpg"], images=[astronaut], labels=[3])
    evaluator.evaluate_set(pool, ["glove_cnn"], labelled, detect_faces=True)
    assert calls == [None, None, None]
    cli.main(["predict", str(tmp_path / "a.jpg"), "--models", "glove_cnn", "--margin", "0.25",
              "--output", str(tmp_path / "q.csv")])
    assert calls[-1] == 0.25  # the old framing stays available


def test_framing_jitter_spans_the_measured_framing():
    from fermm.training.image import framing_jitter
    from fermm.transforms import AugmentConfig

    aug = framing_jitter(AugmentConfig(rotation=10))
    f = json.loads(framing.FRAMING_PATH.read_text())
    assert aug.scale_min == pytest.approx(f["q05"]["box_w"] / f["median"]["box_w"], abs=1e-3)
    assert aug.scale_max == pytest.approx(f["q95"]["box_w"] / f["median"]["box_w"], abs=1e-3)
    assert aug.scale_min < 0.85 and aug.scale_max > 1.15 and aug.padding_mode == "border" and aug.rotation == 10


def test_a_clean_teacher_view_sees_the_unaugmented_images():
    import torch

    from fermm.training.tasks import DistillTask, MixConfig
    from fermm.transforms import AugmentConfig

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (8, 48, 48), dtype=np.uint8), rng.integers(0, 7, 8)
    seen = []
    teacher = lambda batch: seen.append(batch.clone()) or torch.full((len(batch), 7), 1 / 7)
    task = DistillTask((x, y), (x, y), 7, (0.5,), (0.25,), aug=AugmentConfig(), teacher_probs=teacher,
                       teacher_view="clean")
    (student, _, _), = list(task.batches(0, 8, torch.Generator().manual_seed(0)))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0)).numpy()
    assert torch.equal(seen[0], torch.from_numpy(x[order]).unsqueeze(1).float() / 255)
    assert not torch.allclose(student * 0.25 + 0.5, seen[0])  # the student's view was augmented
    with pytest.raises(ValueError, match="mixup and cutmix off"):
        DistillTask((x, y), (x, y), 7, (0.5,), (0.25,), mix=MixConfig(0.2, 0), teacher_probs=teacher,
                    teacher_view="clean")
