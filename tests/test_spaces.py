"""spaces/: the Space folder is complete, its README front matter is valid, and it pushes."""
from __future__ import annotations

import pytest
import yaml

import spaces.build as build


def test_space_readme_front_matter():
    text = (build.ROOT / "spaces" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["license"] == "mit"
    import gradio

    assert front["sdk_version"] == gradio.__version__  # the version the tests ran against
    assert "openai/clip-vit-base-patch32" in front["models"]


def test_build_and_push_to_the_mock_hub(tmp_path, mock_hub):
    out = tmp_path / "space"
    assert build.main(["--output_dir", str(out), "--push_to_hub", "me/fermm-space"]) == 0
    assert (out / "app.py").exists() and (out / "fermm" / "serve" / "ui.py").exists()
    assert (out / "fermm" / "assets" / "face_detection_yunet_2023mar.onnx").exists()
    assert not list(out.rglob("__pycache__")) and not (out / "tests").exists()
    pushed = mock_hub.repos[("space", "me/fermm-space")]
    assert pushed["README.md"] == (out / "README.md").read_bytes() and "fermm/faces.py" in pushed


def test_the_build_writes_the_users_own_model_sources(tmp_path, monkeypatch):
    from fermm.models import registry

    out = tmp_path / "space"
    assert build.main(["--output_dir", str(out), "--source", "resnet50=me/my-resnet50@v1",
                       "--source", "coop=me/my-coop"]) == 0
    monkeypatch.setenv("FERMM_SOURCES", str(out / "model_sources.json"))
    monkeypatch.delenv("FERMM_MODEL_RESNET50", raising=False)
    assert registry.resolve("resnet50") == "me/my-resnet50@v1" and registry.resolve("coop") == "me/my-coop"
    with pytest.raises(SystemExit):
        build.main(["--output_dir", str(out), "--source", "resnet50"])
