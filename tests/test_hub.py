"""Hub publishing and loading, against a local mock Hub endpoint and a pre-filled cache (offline)."""
from __future__ import annotations

import logging

import pytest
import torch

from fermm.data.__main__ import main as data_cli
from fermm.hub import push_model_folder
from fermm.models import load_model
from fermm.models.cnn import CNNClassifier
from tests.conftest import FER_TINY, FIXTURES


def _data_cli(mock_hub, tmp_path, *args: str):
    """``python -m fermm.data ARGS`` against the mock Hub (a subprocess: `datasets` reads HF_ENDPOINT at import;
    LFS uploads, xet off, which the mock does not speak)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "HF_ENDPOINT": mock_hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "home"),
           "HF_HUB_DISABLE_XET": "1"}
    return subprocess.run([sys.executable, "-m", "fermm.data", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_prepare_pushes_the_splits_and_card_and_the_repo_is_a_source(mock_hub, tmp_path):
    out = tmp_path / "out"
    run = _data_cli(mock_hub, tmp_path, "prepare", "--source", str(FER_TINY), "--output_dir", str(out),
                    "--push_to_hub", "me/fer-tiny")
    assert run.returncode == 0, run.stderr[-2000:]
    pushed = mock_hub.repos[("dataset", "me/fer-tiny")]  # DatasetDict.push_to_hub's shards and the card
    assert sorted(pushed) == ["README.md", *(f"data/{s}-00000-of-00001.parquet" for s in ("test", "train", "validation"))]
    card = pushed["README.md"].decode()
    assert "path: data/train-*" in card and "# FER2013 facial expressions" in card and "license: other" in card
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "test.parquet", "train.parquet", "validation.parquet"]
    assert "path: train.parquet" in (out / "README.md").read_text()  # the local card points at the local files
    run = _data_cli(mock_hub, tmp_path, "report", "--source", "me/fer-tiny")  # read back by repo id
    assert run.returncode == 0, run.stderr[-2000:]
    assert "train: 0 groups holding 0 images; 35 distinct" in run.stdout
    assert "validation: 0 groups holding 0 images; 14 distinct" in run.stdout


def test_failed_dataset_push_keeps_local_files_and_says_how_to_retry(mock_hub, tmp_path):
    mock_hub.fail_commits = True
    out = tmp_path / "out"
    run = _data_cli(mock_hub, tmp_path, "prepare", "--source", str(FER_TINY), "--output_dir", str(out),
                    "--push_to_hub", "me/fer-tiny")
    assert run.returncode == 1
    assert "push to me/fer-tiny failed" in run.stderr and f"Retry with: hf upload --repo-type dataset me/fer-tiny {out} ." in run.stderr
    assert "hf_fake_test_token" not in run.stderr
    assert (out / "train.parquet").exists() and (out / "README.md").exists()


def test_model_pushed_then_loaded_by_repo_id_from_the_cache_offline(mock_hub, tmp_path, astronaut):
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()
    model.save_with_card(tmp_path / "m", card="---\nlicense: mit\n---\n# test model\n")
    (tmp_path / "m" / "last").mkdir()  # run state next to the model is not published
    assert push_model_folder(tmp_path / "m", "me/tiny-cnn") is not None
    assert sorted(mock_hub.repos[("model", "me/tiny-cnn")]) == ["README.md", "config.json", "model.safetensors"]
    online = load_model("me/tiny-cnn")  # downloads into the (empty) cache
    mock_hub.offline()
    offline = load_model("me/tiny-cnn")  # served from the cache, no network
    expected = model.predict_proba([astronaut])
    # same weights; loaded models run in ONNX Runtime (fermm.models.runtime), hence float rounding only
    assert torch.allclose(online.predict_proba([astronaut]), expected, atol=1e-5)
    assert torch.allclose(offline.predict_proba([astronaut]), expected, atol=1e-5)


def test_a_new_push_replaces_the_files_of_the_previous_one(mock_hub, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "old.safetensors").write_bytes(b"old")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert push_model_folder(tmp_path / "m", "me/tiny-cnn") is not None
    (tmp_path / "m" / "old.safetensors").unlink()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"new")
    assert push_model_folder(tmp_path / "m", "me/tiny-cnn") is not None
    assert sorted(mock_hub.repos[("model", "me/tiny-cnn")]) == ["config.json", "model.safetensors"]


def test_failed_model_push_is_logged_not_raised(mock_hub, tmp_path, caplog):
    mock_hub.fail_commits = True
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "m")
    with caplog.at_level(logging.ERROR):
        assert push_model_folder(tmp_path / "m", "me/tiny-cnn") is None
    assert "push to me/tiny-cnn failed" in caplog.text and "is intact" in caplog.text
    assert "hf upload me/tiny-cnn" in caplog.text  # a retry command the installed huggingface_hub has
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_failed_push_after_training_exits_with_status_1_and_keeps_the_run(mock_hub, tmp_path):
    import train.resnet50 as script

    mock_hub.fail_commits = True
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        script.main(["--dataset", str(FER_TINY), "--output_dir", str(out), "--epochs", "1", "--batch_size", "8",
                     "--backbone", "mini", "--log_with", "none", "--push_to_hub", "me/tiny-cnn"])
    assert e.value.code == 1
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
    assert 'load_model("me/tiny-cnn")' in (out / "README.md").read_text()  # the card shows where it is published


def test_unreachable_hub_switches_to_offline(monkeypatch, mock_hub):
    from huggingface_hub import constants

    from fermm.hub import offline_if_unreachable

    assert offline_if_unreachable() is False  # the mock Hub answers
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline_if_unreachable(timeout=1.0) is True
    assert constants.is_offline_mode()


def test_text_dataset_push_and_read_back(mock_hub, tmp_path):
    """GoEmotions through ``DatasetDict.push_to_hub`` + ``DatasetCard`` to the mock Hub (LFS uploads; xet off,
    which the mock does not speak), then read back by repo id, multi-label rows intact."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "HF_ENDPOINT": mock_hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "home"),
           "HF_HUB_DISABLE_XET": "1"}
    run = subprocess.run([sys.executable, "-m", "fermm.data", "prepare-text", "--which", "goemotions", "--source",
                          str(FIXTURES / "goemotions_tiny"), "--output_dir", str(tmp_path / "out"),
                          "--push_to_hub", "me/go-tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    repo = mock_hub.repos[("dataset", "me/go-tiny")]
    assert sorted(repo) == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet",
                            "data/validation-00000-of-00001.parquet"]
    card = repo["README.md"].decode()
    assert "path: data/train-*" in card and "license: apache-2.0" in card and "| train | 37 |" in card
    read = subprocess.run([sys.executable, "-c", "from fermm.data.goemotions import load_goemotions; "
                           "ds = load_goemotions('me/go-tiny'); print(len(ds['train']), "
                           "sum(len(x) > 1 for x in ds['train']['labels']), ds['train'].features['labels'].feature.names)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split("\n")[-2] == "37 2 ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral']"
    assert (tmp_path / "out" / "train.parquet").exists()


def test_text_dataset_failed_push_keeps_the_files(tmp_path, capsys):
    assert data_cli(["prepare-text", "--which", "goemotions", "--source", str(FIXTURES / "goemotions_tiny"),
                     "--output_dir", str(tmp_path / "out"), "--push_to_hub", "me/go-tiny"]) == 1  # offline
    err = capsys.readouterr().err
    assert "push to me/go-tiny failed" in err and "intact" in err and "hf upload --repo-type dataset me/go-tiny" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "test.parquet", "train.parquet",
                                                                   "validation.parquet"]
