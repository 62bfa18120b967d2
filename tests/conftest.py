"""Shared fixtures. Tests run offline on CPU, on the tiny real FER2013 fixture in tests/fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("FERMM_NO_PROGRESS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")
        hub.offline = lambda: monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield hub
