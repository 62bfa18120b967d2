"""Shared fixtures. Tests run offline on CPU, on the tiny real FER2013 fixture in tests/fixtures."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("FERMM_NO_PROGRESS", "1")

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FER_TINY = FIXTURES / "fer_tiny"
ASTRONAUT = ROOT / "fermm" / "assets" / "examples" / "astronaut.jpg"


@pytest.fixture(scope="session")
def fer_tiny():
    from fermm import data

    return data.load_fer(FER_TINY)


@pytest.fixture(scope="session")
def astronaut():
    from fermm.faces import load_image

    return load_image(ASTRONAUT)


@pytest.fixture
def mock_hub(monkeypatch, tmp_path):
    """A running local Hub (tests/mock_hub.py) that huggingface_hub's real client talks to, with an
    empty HF cache. Yields the MockHub; ``offline()`` switches the client back to offline mode."""
    from huggingface_hub import constants

    from tests.mock_hub import MockHub

    with MockHub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the mock speaks LFS (as the Hub does too), not xet
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")
        hub.offline = lambda: monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield hub


def _write_result(folder):
    import numpy as np

    from fermm.evaluation import metrics
    from fermm.labels import FER7

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    probs = np.eye(7)[np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200))] * 0.7 + 0.3 / 7
    metrics.write_result({"model": "glove_cnn", "source": "checkpoints/glove_cnn", "dataset": "fixture",
                             "split": "test", "tta": "none",
                             **metrics.score(probs, y, FER7, 0, ferplus_label=y),
                             "images_per_second": 100.0, **metrics.RunInfo("test", 0).as_dict(),
                             "schema_version": metrics.SCHEMA_VERSION}, folder)
    metrics.save_record({"model": "glove_cnn", "n": 200, "detected": 190, "detection_rate": 0.95,
                            "accuracy_direct": 0.7, "accuracy_pipeline": 0.69, "accuracy_pipeline_not_in_train": 0.68,
                            "accuracy_direct_not_in_train": 0.685, **metrics.RunInfo("test", 0).as_dict()},
                           folder / "end_to_end" / "glove_cnn.json")


@pytest.fixture(scope="session")
def app_demo(tmp_path_factory):
    """The real app, launched once on a free local port, with a tiny random model as `glove_cnn`, a
    missing `resnet50` (to show the unavailable path) and one result file."""
    import torch

    from fermm.models.cnn import CNNClassifier
    from fermm.serve.predict import ModelPool
    from fermm.serve.ui import build_demo, launch_options

    folder = tmp_path_factory.mktemp("models") / "tiny"
    torch.manual_seed(0)
    CNNClassifier(backbone="vgg11").save_pretrained(folder)
    pool = ModelPool(names=["glove_cnn", "resnet50"], sources={"glove_cnn": str(folder),
                                                               "resnet50": str(folder.parent / "missing")})
    from fermm.models.text import TextGRU

    text_folder = folder.parent / "tiny_text"
    TextGRU(vocab=["happy", "sad", "angry", "scared", "wow", "love"], embed_dim=16, hidden=8).save_pretrained(text_folder)
    text_pool = ModelPool(names=["text_gru", "text_minilm"], sources={"text_gru": str(text_folder),
                                                                      "text_minilm": str(folder.parent / "none")})
    results = tmp_path_factory.mktemp("results")
    _write_result(results)
    demo = build_demo(pool, results_dir=results, text_pool=text_pool)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                            **launch_options(sessions=3))  # small, so a test can reach it
    demo.app_url = url
    yield demo
    demo.close()


@pytest.fixture(scope="session")
def app_url(app_demo):
    return app_demo.app_url
