"""Training on two processes (torchrun + accelerate, gloo on CPU): each process takes its share of every batch,
both end with identical weights, and only the main process writes the run folder."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_processes_train_to_identical_weights(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FERMM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          "-m", "tests.ddp_train", str(tmp_path / "run"), str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = sorted(p.read_text().split() for p in tmp_path.glob("rank*.txt"))
    assert [r[0] for r in reports] == ["2", "2"]  # two processes really ran
    assert reports[0][1] == reports[1][1]  # and ended with the same weights
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"README.md", "config.json", "model.safetensors", "stage_ce",
                                               "training_args.json"}
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.old"))  # no half-written or raced folders


def test_batch_prediction_shared_by_two_processes_equals_one(tmp_path, fer_tiny, astronaut):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut.save(photos / "a.jpg")
    for i in range(5):
        fer_tiny["test"][i]["image"].resize((192, 192)).save(photos / f"f{i}.png")
    (photos / "broken.jpg").write_bytes(b"not a picture")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FERMM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    args = ["-m", "fermm", "predict", str(photos), "--models", "glove_cnn", "fast_cnn", "--output"]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one.csv")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(_free_port()), *args, str(tmp_path / "two.csv")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert len((tmp_path / "one.csv").read_text().splitlines()) == 7  # a header and six faces
    assert "broken.jpg" in two.stderr and not list(tmp_path.glob("two.csv.part*"))


def test_evaluation_shared_by_two_processes_equals_one(tmp_path):
    """eval/evaluate.py under torchrun: each process scores a share, the first writes the one result file,
    with the same scores as a single process."""
    from tests.conftest import FER_TINY

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FERMM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    args = ["eval/evaluate.py", "--models", "fast_cnn", "--dataset", str(FER_TINY), "--split", "test", "--tta", "flip",
            "--output_dir"]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(_free_port()), *args, str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    (a,), (b,) = sorted((tmp_path / "one").glob("*.json")), sorted((tmp_path / "two").glob("*.json"))
    assert a.name == b.name and two.stdout.count("wrote ") == 1  # one file, reported once
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("n", "accuracy", "accuracy_ci95", "confusion_matrix", "per_class", "macro_f1", "accuracy_not_in_train"):
        assert ra.get(key) == rb.get(key), key
    assert abs(ra["ece"] - rb["ece"]) < 1e-6
