"""The Gradio app, driven through gradio_client against a real local launch."""
from __future__ import annotations

import json
import os
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from fermm.labels import FER7
from tests.conftest import ASTRONAUT


@pytest.fixture(scope="module")
def app_client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _table(result):
    return result[1]["data"]


def test_predict_real_photo_returns_probabilities_per_model(app_client):
    from gradio_client import handle_file

    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    rows = _table(result)
    assert [r[:2] for r in rows] == [[1, "glove_cnn"], [1, "fused"]]
    for row in rows:
        assert sum(row[3:10]) == pytest.approx(1.0, abs=0.01) and row[2] == FER7[int(np.argmax(row[3:10]))]
    assert "Found 1 face(s)" in result[3]
    top = rows[-1][2]
    shown = re.search(rf"face 1: \*\*{top} (\d+)%\*\*", result[3])  # the answer and its confidence
    assert shown and abs(int(shown.group(1)) - 100 * rows[-1][3 + FER7.index(top)]) <= 1
    assert result[0] is not None  # the boxed image
    _assert_chart_matches(result[2], {"face 1": rows[-1][3:10]})


def _assert_chart_matches(plot, bars: dict):
    """The chart is a valid plotly figure whose bars are the given probabilities (FER-7 order)."""
    import json

    import plotly.graph_objects as go

    assert plot["type"] == "plotly"
    fig = go.Figure(json.loads(plot["plot"]))  # plotly validates every property here
    assert {t.name: list(t.x) for t in fig.data} == {name: list(FER7) for name in bars}
    for trace in fig.data:
        assert list(trace.y) == pytest.approx(bars[trace.name], abs=1e-3)
    assert fig.layout.barmode == "group" and tuple(fig.layout.yaxis.range) == (0, 1)


def test_unavailable_model_is_reported_with_its_reason(app_client):
    rows = app_client.predict(api_name="/model_status")["data"]
    by_name = {r[0]: r for r in rows}
    assert by_name["glove_cnn"][1] == "yes"
    assert by_name["resnet50"][1] == "no" and by_name["resnet50"][3] == "its model folder is missing or incomplete"
    text = str(rows)
    assert "Error" not in text and "/tmp" not in text and "/work" not in text  # no exception names, no server paths


def test_no_face_and_whole_image_mode(app_client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    result = app_client.predict(handle_file(str(blank)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    assert _table(result) == [] and "No face found" in result[3]
    result = app_client.predict(handle_file(str(blank)), "", ["glove_cnn"], True, False, "text_gru", api_name="/predict")
    assert len(_table(result)) == 2 and "whole image" in result[3]


def test_bad_file_gives_a_clear_error_and_the_app_keeps_serving(app_client, tmp_path, capfd, caplog):
    import logging

    from gradio_client import handle_file

    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture")
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="fermm"), pytest.raises(Exception, match="cannot be used: this is not an image"):
        app_client.predict(handle_file(str(fake)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    out = capfd.readouterr()
    assert "Traceback" not in out.err + out.out  # an expected refusal is one log line, not a stack trace
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == [
        "request refused: This file cannot be used: this is not an image fermm can read (JPEG, PNG, GIF, BMP, WebP or TIFF)."]
    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    assert len(_table(result)) == 2


def test_accuracy_tab_shows_measured_and_published_figures(app_client):
    served, table, bars, f1 = app_client.predict(api_name="/accuracy")
    assert "| `glove_cnn` | **served here** | the face | fp32 | 60." in table and "Published, not measured here" in table
    assert "All runs" not in table
    assert "As served" in served and "| `glove_cnn` | 190 of 200 (95.0%) | 69.0% | 70.0% | 68.0% / 68.5% |" in served
    assert bars is not None and f1 is not None


def _zip(tmp_path, fer_tiny):
    import io
    import zipfile

    from fermm.labels import FER7

    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(fer_tiny["test"]):
            buf = io.BytesIO()
            item["image"].save(buf, format="PNG")
            z.writestr(f"myset/{FER7[item['label']]}/face{i}.png", buf.getvalue())
        z.writestr("myset/happy/readme.txt", "not an image")
        z.writestr("myset/happy/broken.jpg", b"garbage bytes")
        z.writestr("../../evil/happy/escape.png", buf.getvalue())  # zip-slip name: read in memory only
        z.writestr("myset/happy/bomb.png", b"\0" * (15 * 1024 * 1024))  # compresses ~1000x
        z.writestr("myset/bored/face.png", buf.getvalue())  # not a FER label
    return path


def test_evaluate_tab_on_a_small_zip(app_client, tmp_path, fer_tiny):
    import csv

    from gradio_client import handle_file

    summary, table, heat, download = app_client.predict(handle_file(str(_zip(tmp_path, fer_tiny))),
                                                        ["glove_cnn"], False, api_name="/evaluate")
    assert "Evaluated 15 images" in summary  # 14 fixture faces + the zip-slip-named copy (read, never written)
    assert "skipped 1: not an image file" in summary and "skipped 1: unreadable image" in summary
    assert "possible zip bomb" in summary and "no FER label" in summary
    assert "`myset/happy/broken.jpg`: unreadable image" in summary and "`myset/bored/face.png`: no FER label" in summary
    figure = json.loads(heat["plot"])
    assert "your labels" in figure["layout"]["title"]["text"] and len(figure["data"]) == 1  # one matrix per model
    (row,) = table["data"]
    assert row[0] == "glove_cnn" and row[4] == 15
    rows = list(csv.DictReader(open(download)))
    assert len(rows) == 15 and {"file", "label", "glove_cnn:prediction", "glove_cnn:confidence"} <= set(rows[0])
    assert not (tmp_path.parent.parent / "evil").exists()


def test_a_zip_of_only_unusable_images_says_why():
    import io
    import zipfile

    from fermm.evaluation.userset import ZipError, read_zip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("happy/bomb.png", b"\0" * (15 * 1024 * 1024))
    with pytest.raises(ZipError, match=r"none of its images could be used \(1 suspicious compression ratio "
                                       r"\(possible zip bomb\); for example happy/bomb.png\)"):
        read_zip(buf.getvalue())


def test_labelled_zip_images_are_shrunk_and_their_decoded_pixels_capped():
    """A plain 3000 px PNG is a few KB zipped but 27 MB decoded: each is shrunk, and the total is capped."""
    import io
    import zipfile

    from PIL import Image

    from fermm.evaluation import userset

    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000), (128, 128, 128)).save(buf, format="PNG")
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(3):
            z.writestr(f"happy/{i}.png", buf.getvalue())
    small = userset.read_zip(raw.getvalue())
    assert [im.size for im in small.images] == [(1024, 1024)] * 3 and small.pixels == 3 * 1024 * 1024
    with pytest.raises(userset.ZipError, match="more than 2 megapixels in all"):
        userset.read_zip(raw.getvalue(), userset.Limits(max_total_pixels=2_000_000))


def test_downloads_are_removed_once_old(monkeypatch):
    import os
    import time

    from fermm.serve import tabs

    first = tabs.export_path("predictions.csv")
    first.write_text("file,label\n")
    os.utime(first, (time.time() - tabs.EXPORT_MAX_AGE - 1,) * 2)
    second = tabs.export_path("predictions.csv")
    assert second.parent == first.parent and second != first and not first.exists()


def test_evaluate_tab_rejects_a_non_zip(app_client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "set.zip"
    fake.write_text("not a zip")
    with pytest.raises(Exception, match="not a zip archive"):
        app_client.predict(handle_file(str(fake)), ["glove_cnn"], False, api_name="/evaluate")


def test_privacy_no_run_history_no_analytics(app_url):
    import os

    import httpx

    config = httpx.get(app_url.rstrip("/") + "/config", timeout=10).json()
    assert config["run_history"] is False and config["analytics_enabled"] is False
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and os.environ["HF_HUB_DISABLE_TELEMETRY"].lower() in ("1", "true")


def test_explain_returns_an_overlay_per_face_and_model(app_client):
    from gradio_client import handle_file

    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, True, "text_gru", api_name="/predict")
    assert result[4]["visible"] is True
    (item,) = result[4]["value"]
    top = _table(result)[0][2]  # the glove_cnn row's top class: the overlay explains that class
    assert item["caption"] == f"face 1, glove_cnn: {top}"
    plain = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    assert plain[4]["visible"] is False and not plain[4]["value"]  # no explanations asked: no empty box


def _bad_files(tmp_path, astronaut):
    """name -> (path, expected: an error message pattern, or None for 'a correct result')."""
    import io

    import numpy as np
    from PIL import Image

    from tests.test_faces import _png_header_only

    def save(name, im, fmt, **kw):
        p = tmp_path / name
        im.save(p, format=fmt, **kw)
        return p

    def raw(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return p

    jpeg = io.BytesIO()
    astronaut.save(jpeg, format="JPEG")
    png = io.BytesIO()
    astronaut.save(png, format="PNG")
    frames = [astronaut.convert("P"), astronaut.convert("L").convert("P")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    return {
        "zero-byte": (raw("empty.jpg", b""), "empty"),
        "text as jpg": (raw("notes.jpg", b"dear diary"), "not an image"),
        "truncated jpeg": (raw("cut.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2]), "damaged or truncated"),
        "truncated png": (raw("cut.png", png.getvalue()[: len(png.getvalue()) // 2]), "damaged or truncated"),
        "bomb": (raw("bomb.png", _png_header_only(100_000, 100_000)), "decompression bomb|too large"),
        "svg": (raw("x.svg.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'), "not an image"),
        "html": (raw("page.png", b"<html><body><script>alert(1)</script></body></html>"), "not an image"),
        "animated gif": (gif, None),
        "16-bit png": (save("deep.png", Image.fromarray(np.asarray(astronaut.convert("L"), np.uint16) * 257), "PNG"), None),
        "cmyk jpeg": (save("cmyk.jpg", astronaut.convert("CMYK"), "JPEG"), None),
        "rgba png": (save("rgba.png", astronaut.convert("RGBA"), "PNG"), None),
        "1x1": (save("dot.png", Image.new("RGB", (1, 1)), "PNG"), "no-face"),
        "8000x6000": (save("big.jpg", astronaut.resize((8000, 6000)), "JPEG", quality=60), None),
    }


def test_every_bad_input_gets_a_message_or_a_result_and_the_app_keeps_serving(app_client, tmp_path, astronaut):
    from gradio_client import handle_file

    for name, (path, expected) in _bad_files(tmp_path, astronaut).items():
        if expected in (None, "no-face"):
            result = app_client.predict(handle_file(str(path)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
            want = "No face found" if expected == "no-face" else "Found 1 face(s)"
            assert want in result[3], name
        else:
            with pytest.raises(Exception, match=expected):
                app_client.predict(handle_file(str(path)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    result = app_client.predict(handle_file(str(ASTRONAUT)), "", ["glove_cnn"], False, False, "text_gru", api_name="/predict")
    assert "Found 1 face(s)" in result[3]  # still serving



def _predict(app_client, image, text, whole=False):
    from gradio_client import handle_file

    return app_client.predict(handle_file(str(image)) if image else None, text, ["glove_cnn"], whole, False,
                              "text_gru", api_name="/predict")


def test_text_fuses_with_the_face_and_no_text_changes_nothing(app_client):
    without = _predict(app_client, ASTRONAUT, "")
    again = _predict(app_client, ASTRONAUT, "   ")
    assert _table(without) == _table(again)  # no usable text: the image result exactly
    with_text = _predict(app_client, ASTRONAUT, "i feel so happy and loved today")
    rows = {r[1]: r for r in _table(with_text)}
    assert set(rows) == {"text_gru (text)", "glove_cnn", "fused"}
    image_only = {r[1]: r for r in _table(without)}["fused"]
    assert rows["glove_cnn"][3:10] == {r[1]: r for r in _table(without)}["glove_cnn"][3:10]
    assert rows["fused"][3:10] != image_only[3:10] and sum(rows["fused"][3:10]) == pytest.approx(1, abs=0.01)
    assert "Text (text_gru)" in with_text[3] and "weighs the text at" in with_text[3]
    _assert_chart_matches(with_text[2], {"text (text_gru)": rows["text_gru (text)"][3:10],
                                         "face 1": rows["fused"][3:10]})


def test_text_only_and_text_with_no_face(app_client, tmp_path):
    from PIL import Image

    only = _predict(app_client, None, "why did this happen to me, i am so sad")
    assert [r[1] for r in _table(only)] == ["text_gru (text)"] and "Text-only result" in only[3]
    assert "No face found" not in only[3]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    unread = _predict(app_client, None, "😀😀 今日")
    assert _table(unread) == [] and "could not be read" in unread[3] and "English" in unread[3]
    noface = _predict(app_client, blank, "wow what a surprise")
    assert [r[1] for r in _table(noface)] == ["text_gru (text)"] and "Text-only result" in noface[3]
    assert "No face found" in noface[3]
    with pytest.raises(Exception, match="upload a photo .* or type a sentence"):
        _predict(app_client, None, "")


@pytest.mark.parametrize("text,note", [
    ("x" * 12_000, "only the first 2,000 were used"),
    ("<script>alert('hi')</script> i am angry", "HTML tags in the text were ignored"),
    ("😀😀😀", None),
    ("je suis très heureux aujourd'hui", None),
    ("\n\t  ", None),
])
def test_awkward_text_is_handled(app_client, text, note):
    result = _predict(app_client, ASTRONAUT, text)
    assert "Found 1 face(s)" in result[3]
    if note:
        assert note in result[3]
    assert "<script>" not in result[3]  # never echoed as markup


def test_about_tab_shows_model_cards(tmp_path):
    from fermm.models.cnn import CNNClassifier
    from fermm.serve.predict import ModelPool
    from fermm.serve.tabs import _card

    CNNClassifier(backbone="vgg11").save_with_card(tmp_path / "m", card="---\nlicense: mit\n---\n# My card\nper class")
    pool = ModelPool(names=["base_cnn", "resnet50"], sources={"base_cnn": str(tmp_path / "m"),
                                                             "resnet50": str(tmp_path / "none")})
    assert _card(pool, "base_cnn").strip() == "# My card\nper class"
    assert "No model card found for `resnet50`" in _card(pool, "resnet50")


def test_refresh_retries_a_model_that_failed_to_load(tmp_path):
    from fermm.models.cnn import CNNClassifier
    from fermm.serve.predict import ModelPool
    from fermm.serve.ui import _refreshed_status

    pool = ModelPool(names=["base_cnn"], sources={"base_cnn": str(tmp_path / "m")})
    assert pool.get("base_cnn") is None and "no such model folder" in pool.error("base_cnn")
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "m")  # the checkpoint (or the Hub) is back
    assert pool.get("base_cnn") is None  # the failure is remembered, so requests stay fast ...
    (row,) = _refreshed_status(pool)  # ... until Refresh
    assert row[:2] == ["base_cnn", "yes"] and pool.get("base_cnn") is not None


def test_refresh_offers_models_that_became_available(tmp_path):
    import gradio as gr

    from fermm.models.cnn import CNNClassifier
    from fermm.serve.components import ModelBoxes
    from fermm.serve.predict import ModelPool
    from fermm.serve.ui import _offered, _page_load

    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "a")
    pool = ModelPool(names=["base_cnn", "glove_cnn", "resnet50"],
                     sources={"base_cnn": str(tmp_path / "a"), "glove_cnn": str(tmp_path / "a"),
                              "resnet50": str(tmp_path / "b")})
    text = ModelPool(names=["text_gru"], sources={"text_gru": str(tmp_path / "none")})
    started = {"image": pool.available(), "text": text.available(), "declined": [[], []]}
    assert started["image"] == ["base_cnn", "glove_cnn"] and started["text"] == []
    assert _offered(pool, text, started, [], None, []) == (started, gr.skip(), gr.skip(), gr.skip())  # unchanged
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "b")
    pool.retry_failed()
    # the user had unticked base_cnn: that stays; resnet50 was never offered, so it is ticked
    offered, models, text_model, evaluate = _offered(pool, text, started, ["glove_cnn"], "text_gru", ["base_cnn"])
    assert offered == {"image": ["base_cnn", "glove_cnn", "resnet50"], "text": [],
                       "declined": [["base_cnn"], ["glove_cnn"]]}
    assert models["choices"] == offered["image"] and models["value"] == ["glove_cnn", "resnet50"]
    assert evaluate["value"] == ["base_cnn", "resnet50"]
    assert text_model == {"__type__": "update", "choices": [], "value": None, "visible": False}
    # base_cnn goes away: the user's untick of resnet50 (offered by the first Refresh) stays ...
    gone = ModelPool(names=["glove_cnn", "resnet50"], sources={"glove_cnn": str(tmp_path / "b"),
                                                              "resnet50": str(tmp_path / "b")})
    offered, models, _, evaluate = _offered(gone, text, offered, ["glove_cnn"], None, ["base_cnn", "resnet50"])
    assert models["value"] == ["glove_cnn"] and evaluate["value"] == ["resnet50"]
    # ... and when base_cnn comes back it stays unticked in Predict (declined there) but ticked in Evaluate
    offered, models, _, evaluate = _offered(pool, text, offered, ["glove_cnn"], None, ["resnet50"])
    assert models["value"] == ["glove_cnn"] and evaluate["value"] == ["base_cnn", "resnet50"]
    # a model the user ticks again is no longer declined: it stays ticked through the next change
    offered, models, _, _ = _offered(gone, text, offered, ["glove_cnn", "resnet50"], None, [])
    assert models["value"] == ["glove_cnn", "resnet50"]
    # a page load: the status table and the choices from the same pass; nothing changed, so nothing is sent
    rows, *unchanged = _page_load(gone, text, offered, ["glove_cnn"], None, [])
    assert [r[:2] for r in rows] == [["glove_cnn", "yes"], ["resnet50", "yes"], ["text_gru", "no"]]
    assert unchanged == [offered, gr.skip(), gr.skip(), gr.skip()]
    # submitted names are checked against the registry, not the session's (forgettable) choices
    boxes = ModelBoxes(started["image"], value=started["image"], label="Models")
    assert boxes.get_config()["label"] == "Models" and boxes.get_config()["value"] == started["image"]
    assert boxes.preprocess(["resnet50"]) == ["resnet50"]
    with pytest.raises(gr.Error, match="Unknown model 'vgg99': the image models are .*base_cnn.*resnet50"):
        boxes.preprocess(["vgg99"])


def test_sessions_kept_in_memory_are_capped(app_demo, astronaut, tmp_path):
    """Each HTTP API call is a new Gradio session holding a copy of the app's config; without a cap, memory
    grows with every request (bench/load.py --soak: +900 MB in 5 minutes at Gradio's default cap of 10,000 sessions)."""
    from bench.common import HttpClient
    from fermm.serve.ui import launch_options

    assert launch_options()["state_session_capacity"] <= 500  # what app.py launches with
    photo = tmp_path / "face.jpg"
    astronaut.save(photo)
    c = HttpClient(app_demo.app_url)
    try:
        for _ in range(5):  # 5 sessions against a capacity of 3
            c.predict(photo, ["glove_cnn"])
    finally:
        c.close()
    assert len(app_demo.state_holder.session_data) <= 3


def test_a_client_that_keeps_its_session_adds_one_and_the_queue_keeps_no_summary(app_demo, astronaut, tmp_path):
    """A browser tab's calls share one session (bench.latency's client does the same), and Gradio's per-request
    pandas summary for its monitoring page, which this app does not enable, is never computed."""
    from bench.common import HttpClient

    photo = tmp_path / "face.jpg"
    astronaut.save(photo)
    before = set(app_demo.state_holder.session_data)
    c = HttpClient(app_demo.app_url, session=True)
    try:
        for _ in range(3):
            c.predict(photo, ["glove_cnn"])
    finally:
        c.close()
    assert set(app_demo.state_holder.session_data) - before == {c.session_hash}
    queue = app_demo._queue
    assert queue.ANALYTICS_MAX_EVENTS <= 1000 and queue.events_recorded >= 3
    assert queue.cached_event_analytics_summary == {"functions": {}}


def test_inline_data_url_images_are_decoded_in_memory_and_capped(app_demo):
    """API clients may send an image inline as a data: URL, which skips the upload cap; it is decoded in
    memory, capped, and leaves no copy in Gradio's cache (only the boxed result image is written)."""
    import base64
    import textwrap
    from pathlib import Path

    import gradio as gr

    from bench.common import HttpClient
    from fermm.serve.components import MAX_UPLOAD_MB, data_url_bytes

    raw = ASTRONAUT.read_bytes()
    b64 = base64.b64encode(raw).decode()
    inline = "data:image/jpeg;base64," + b64
    assert data_url_bytes(inline) == raw
    assert data_url_bytes("data:image/jpeg;BASE64," + "\n".join(textwrap.wrap(b64, 76))) == raw  # MIME-wrapped
    assert data_url_bytes("data:;base64," + base64.b64encode(b"ab").decode().rstrip("=")) == b"ab"  # unpadded
    with pytest.raises(gr.Error, match="25 MB upload limit"):
        data_url_bytes("data:image/png;base64," + "A" * (MAX_UPLOAD_MB * 1024 * 1024 * 4 // 3 + 8))
    with pytest.raises(gr.Error, match="not valid base64"):
        data_url_bytes("data:image/png;base64,!!!")
    with pytest.raises(gr.Error, match="only base64"):
        data_url_bytes("data:image/svg+xml,<svg/>")

    client = HttpClient(app_demo.app_url)

    def call(url: str) -> list:
        return client.call([{"url": url, "meta": {"_type": "gradio.FileData"}}, "", ["glove_cnn"], False, False, None])

    cache = Path(gr.utils.get_upload_folder())
    before = {p for p in cache.rglob("*") if p.is_file()}
    boxed, _, _, status = call(inline.replace("data:", "DATA:"))[:4]
    assert "Found 1 face(s)" in status
    # the boxed result may already be cached (files are named by content hash), the input never is
    assert {p for p in cache.rglob("*") if p.is_file()} - before <= {Path(boxed["path"])}
    with pytest.raises(RuntimeError, match="This image cannot be used: its data URL is not valid base64."):
        call("data:image/png;base64,!!!")
    client.close()


def test_request_bodies_over_the_cap_are_refused_and_the_app_keeps_serving(app_demo):
    """Gradio caps uploads, not JSON bodies: an inline image of any size would be read into memory whole."""
    import httpx

    from fermm.serve.ui import MAX_BODY

    url = app_demo.app_url + "gradio_api/call/predict"
    huge = b'{"data": [{"url": "data:image/png;base64,' + b"A" * MAX_BODY + b'"}]}'
    r = httpx.post(url, content=huge, headers={"content-type": "application/json"}, timeout=120)
    assert r.status_code == 413 and "larger than this app accepts (35 MB)" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield huge[:1000]
        yield huge[1000:]

    r = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=120)
    assert r.status_code == 413 and "larger than this app accepts" in r.text
    r = httpx.post(app_demo.app_url + "gradio_api/upload", content=chunks(), timeout=120)
    assert r.status_code == 411 and "must declare their size" in r.json()["detail"]
    assert httpx.get(app_demo.app_url + "gradio_api/info").status_code == 200  # still serving


def test_accuracy_chart_has_one_bar_per_name_and_no_value_above_one():
    from fermm.evaluation import plots
    from fermm.serve.tabs import shown_results

    def row(model, split, tta, acc):
        return {"model": model, "split": split, "tta": tta, "accuracy": acc, "accuracy_ci95": [acc - 0.01, acc + 0.01]}

    results = [row("glove_cnn", "test", "none", 0.71), row("glove_cnn", "validation", "none", 0.70),
               row("glove_cnn", "test", "flip", 0.714), row("glove_vgg11_bakd2_s0", "validation", "none", 0.69),
               row("base26_resnet18_s0", "test", "none", 0.61), row("fer_peer", "test", "none", 0.658)]
    for research in (False, True):
        shown = shown_results(results, research)
        fig = plots.accuracy_bars(shown, published=())
        names = [y for bar in fig.data for y in bar.y]
        assert len(names) == len(set(names)) and max(x for bar in fig.data for x in bar.x) <= 1
        assert all(r["split"] == "test" for r in shown)
    assert {r["model"] for r in shown_results(results, False)} == {"glove_cnn", "fer_peer"}
    assert "base26_resnet18_s0" in {r["model"] for r in shown_results(results, True)}


def test_the_default_accuracy_view_is_one_row_per_served_model_as_served():
    """Each served model once, for the weights it serves, in the views the app serves (else without TTA), marked, with
    its best measured TTA beside it; a registry model the app does not serve, results of other weights and research
    runs stay behind the toggle; a served model with no result says so; a precision that differs here is named."""
    from fermm.serve.tabs import served_markdown, shown_results

    def row(model, tta, acc, split="test", **extra):
        return {"model": model, "split": split, "tta": tta, "accuracy": acc, "accuracy_ci95": [acc - 0.01, acc + 0.01],
                "per_class": {"happy": {"f1": 0.6, "support": 10}}, "commit": "abc", "date": "2026-12-06T00:00:00Z",
                **extra}

    results = [row("glove_cnn", "none", 0.708, model_sha256="g1", precision="onnx int8"),
               row("glove_cnn", "flip", 0.715, model_sha256="g1", precision="onnx int8"),
               row("glove_cnn", "tencrop", 0.72), row("glove_cnn", "flip", 0.74, model_sha256="OTHER"),
               row("glove_cnn", "none", 0.70, "validation"), row("fast_cnn", "none", 0.677),
               row("base_cnn", "flip", 0.68), row("fer_peer", "none", 0.658), row("x_s0", "none", 0.6)]
    served = {"glove_cnn": {"sha256": "g1", "precision": "onnx int8"},
              "fast_cnn": {"sha256": None, "precision": "onnx int8"}, "coop": {"sha256": None, "precision": "x"}}
    shown = shown_results(results, False, served=served, served_tta="flip")
    assert [(r["model"], r["tta"], r["best_tta"], r["served_here"]) for r in shown] == [
        ("glove_cnn", "flip", "tencrop", True), ("fast_cnn", "none", "none", True), ("fer_peer", "none", "none", False)]
    table = served_markdown(shown, ["coop"])
    assert "| `glove_cnn` | **served here** | face + mirror | int8 (ONNX) | 71.50%" in table
    assert "72.00% (tencrop, fp32)" in table and "74.00%" not in table  # the other weights' row is not theirs
    assert "| `fast_cnn` | **served here** | the face | fp32 (measured); int8 (ONNX) here | 67.70%" in table
    assert "| `fer_peer` | peer | the face |" in table and "base_cnn" not in table and "x_s0" not in table
    assert "| `coop` | **served here** | not measured yet" in table
    assert {r["model"] for r in shown_results(results, True)} >= {"base_cnn", "x_s0"}
    assert not any(r["served_here"] for r in shown_results(results, False))  # served unknown: nothing is marked


def test_availability_reasons_are_plain_words():
    from fermm.serve.ui import plain_reason, plain_source

    assert plain_reason("coop", "OSError: We couldn't connect to 'https://huggingface.co'") == (
        "downloads pretrained CLIP weights from the Hugging Face Hub; not available offline")
    why = plain_reason("resnet50", "FileNotFoundError: resnet50: no bundled checkpoint and no source configured")
    assert "FERMM_MODEL_RESNET50" in why and "Error" not in why
    assert plain_reason("x", "RuntimeError: /srv/a/b exploded") == "could not be loaded (details in the server log)"
    assert plain_source("me/my-cnn@v1") == "Hugging Face Hub: me/my-cnn@v1"
    assert plain_source("/srv/secret/runs/cnn") == "local folder cnn"


def test_confusion_tab_opens_on_the_best_served_model_with_its_accuracy():
    from fermm.serve.tabs import confusion_choices

    def r(model, split, acc, tta="none"):
        return {"model": model, "split": split, "tta": tta, "accuracy": acc}

    results = [r("base26_resnet18_s0", "test", 0.61), r("fast_cnn", "test", 0.6773), r("glove_cnn", "validation", 0.70),
               r("glove_cnn", "test", 0.7086), r("glove_cnn", "test", 0.7208, "tencrop"), r("text_minilm", "test", 0.68)]
    labels = [label for label, _ in confusion_choices(results)]
    assert labels[:3] == ["glove_cnn · test · tencrop · 72.1%", "glove_cnn · test · 70.9%", "text_minilm · test · 68.0%"]
    assert labels[-1] == "base26_resnet18_s0 · test · 61.0%"  # research runs last
    assert confusion_choices(results)[1][1] == "glove_cnn"  # the value is the result's file stem


def test_the_app_configures_glibc_malloc_before_anything_else(tmp_path):
    """app.py's first statement limits malloc's arenas and maps big buffers apart (bench.session: the app's
    high-water mark); on glibc both settings are accepted, and trimming is safe to call at any time."""
    import ast
    import subprocess
    import sys

    tree = ast.parse((Path(__file__).resolve().parent.parent / "app.py").read_text())
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert ast.unparse(calls[0]) == "memory.configure_malloc()"
    assert tree.body.index(calls[0]) < min(i for i, n in enumerate(tree.body) if isinstance(n, ast.ImportFrom)
                                           and n.module == "fermm.serve.ui")
    code = "from fermm.serve import memory; print(memory.configure_malloc()); memory.trim()"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_the_app_sets_one_thread_per_request_before_models_load_and_says_what_a_bad_setting_is():
    """app.py sets the thread count (FERMM_THREADS, default 1) before fermm.serve.ui builds anything; PyTorch and
    OpenCV both take it; a value that is not a positive whole number is refused in words."""
    import ast
    import subprocess
    import sys

    tree = ast.parse((Path(__file__).resolve().parent.parent / "app.py").read_text())
    calls = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert calls[:2] == ["memory.configure_malloc()", "threads.configure_threads()"]
    code = ("import cv2, torch; from fermm.serve import threads; n = threads.configure_threads(); "
            "print(n, torch.get_num_threads(), cv2.getNumThreads())")
    run = partial(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True)
    assert run(env={**os.environ, "FERMM_THREADS": "1"}).stdout.split() == ["1", "1", "1"]
    assert run(env={k: v for k, v in os.environ.items() if k != "FERMM_THREADS"}).stdout.split() == ["1", "1", "1"]
    assert run(env={**os.environ, "FERMM_THREADS": "2"}).stdout.split() == ["2", "2", "2"]
    bad = run(env={**os.environ, "FERMM_THREADS": "many"})
    assert bad.returncode != 0 and "FERMM_THREADS='many': expected a whole number of threads" in bad.stderr
    zero = run(env={**os.environ, "FERMM_THREADS": "0"})
    assert zero.returncode != 0 and "FERMM_THREADS=0: expected at least 1" in zero.stderr
