"""The Gradio app, driven through gradio_client against a real local launch."""
from __future__ import annotations

import pytest
import torch

from fermm.models.cnn import CNNClassifier
from fermm.predict import ModelPool
from tests.conftest import ASTRONAUT


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from gradio_client import Client

    from fermm.ui import build_demo

    folder = tmp_path_factory.mktemp("models") / "tiny"
    torch.manual_seed(0)
    CNNClassifier(backbone="vgg11").save_pretrained(folder)
    pool = ModelPool(names=["glove_cnn", "resnet50"], sources={"glove_cnn": str(folder),
                                                               "resnet50": str(folder.parent / "missing")})
    demo = build_demo(pool)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield Client(url, verbose=False)
    demo.close()


def _table(result):
    return result[1]["data"]


def test_predict_real_photo_returns_probabilities_per_model(app_client):
    from gradio_client import handle_file

    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, api_name="/predict")
    rows = _table(result)
    assert [r[:2] for r in rows] == [[1, "glove_cnn"], [1, "fused"]]
    for row in rows:
        assert sum(row[2:9]) == pytest.approx(1.0, abs=0.01) and row[9] in row and isinstance(row[9], str)
    assert "Found 1 face(s)" in result[3]
    assert result[0] is not None  # the boxed image


def test_unavailable_model_is_reported_with_its_reason(app_client):
    rows = app_client.predict(api_name="/model_status")["data"]
    by_name = {r[0]: r for r in rows}
    assert by_name["glove_cnn"][1] == "yes"
    assert by_name["resnet50"][1] == "no" and "no such model folder" in by_name["resnet50"][3]


def test_no_face_and_whole_image_mode(app_client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    result = app_client.predict(handle_file(str(blank)), "", ["glove_cnn"], False, api_name="/predict")
    assert _table(result) == [] and "No face found" in result[3]
    result = app_client.predict(handle_file(str(blank)), "", ["glove_cnn"], True, api_name="/predict")
    assert len(_table(result)) == 2 and "whole image" in result[3]


def test_bad_file_gives_a_clear_error_and_the_app_keeps_serving(app_client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture")
    with pytest.raises(Exception, match="cannot be used: this is not an image"):
        app_client.predict(handle_file(str(fake)), "", ["glove_cnn"], False, api_name="/predict")
    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, api_name="/predict")
    assert len(_table(result)) == 2
