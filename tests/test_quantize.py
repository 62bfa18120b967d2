"""Stored int8 graphs (fermm.models.quantize, train/quantize.py): built from train faces, gated on validation,
served on load only when they match the weights and their recorded outputs, published and fetched with the model."""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from fermm.evaluation import cards
from fermm.models import load_model, quantize
from fermm.models.cnn import CNNClassifier
from fermm.models.runtime import precision_of
from fermm.training.quantize import quantize_folder
from tests.conftest import FER_TINY
from train.quantize import main as quantize_main


@pytest.fixture
def quantized(tmp_path):
    """A small CNN saved with a card, then quantised by the script on the FER2013 fixture."""
    torch.manual_seed(0)
    CNNClassifier(backbone="fast").save_with_card(tmp_path / "m", card="# m\n\n## Intended use\n\nresearch\n")
    assert quantize_main(["--model", str(tmp_path / "m"), "--dataset", str(FER_TINY), "--calibration", "16",
                          "--max_drop", "100", "--threads", "1"]) == 0
    return tmp_path / "m"


def test_the_script_stores_a_graph_with_its_record_and_card_section(quantized):
    meta = json.loads((quantized / quantize.META).read_text())
    assert meta["format"] == quantize.FORMAT and meta["calibration"] == {
        "split": "train", "n": 16, "seed": 0, "dataset": str(FER_TINY)}
    v = meta["validation"]
    assert v["n"] == 14 and 0 <= v["accuracy_int8"] <= 1 and 0.5 <= v["agreement"] <= 1
    assert {"command", "commit", "date", "seed", "graph_sha256"} <= set(meta)
    assert meta["probe"]["batch"] == quantize.PROBE_BATCH
    card = (quantized / "README.md").read_text()
    assert card.index(cards.INT8_HEADING) < card.index("## Intended use")
    assert f"{v['accuracy_int8']:.2%}" in card
    cards.write_int8_section(quantized, meta)  # run again: one section, not two
    assert (quantized / "README.md").read_text().count(cards.INT8_HEADING) == 1


def test_a_loaded_model_serves_its_int8_graph_close_to_pytorch(quantized, monkeypatch, astronaut):
    served = load_model(str(quantized))
    assert precision_of(served) == "onnx int8"
    monkeypatch.setenv("FERMM_RUNTIME", "torch")
    plain = load_model(str(quantized))
    assert precision_of(plain) == "torch fp32"
    x = quantize.probe(1, 48)
    p_int8, p_fp32 = served.proba_from_tensor(x, "flip"), plain.proba_from_tensor(x, "flip")
    assert p_int8.shape == (4, 7) and torch.allclose(p_int8.sum(1), torch.ones(4))
    assert (p_int8 - p_fp32).abs().max() < 0.1 and not torch.equal(p_int8, p_fp32)  # int8: close, not identical
    assert (served.predict_proba([astronaut]) - plain.predict_proba([astronaut])).abs().max() < 0.1


def test_the_graph_of_other_weights_is_refused_by_its_answers_alone(quantized, tmp_path, caplog):
    """Another model's graph, with every record about it in order (hash updated, this folder's fingerprint and gap),
    still fails the probe: the recorded gap plus the slack does not cover a different model's answers."""
    torch.manual_seed(7)
    other = CNNClassifier(backbone="fast")
    with torch.no_grad():  # fresh nets answer near-uniformly alike; a trained one has opinions (glove vs fast: 0.54)
        other.classifier.bias[0] = 6.0
    other.save_pretrained(tmp_path / "other")
    assert quantize_main(["--model", str(tmp_path / "other"), "--dataset", str(FER_TINY), "--calibration", "16",
                          "--max_drop", "100", "--threads", "1"]) == 0
    foreign = (tmp_path / "other" / quantize.GRAPH).read_bytes()
    (quantized / quantize.GRAPH).write_bytes(foreign)
    meta = json.loads((quantized / quantize.META).read_text())
    meta["graph_sha256"] = hashlib.sha256(foreign).hexdigest()
    (quantized / quantize.META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="fermm.models.quantize"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "on the probe batch it differs from the model by" in caplog.text


def test_a_graph_is_refused_for_other_weights_or_outputs_and_pytorch_serves(quantized, caplog, astronaut):
    meta = json.loads((quantized / quantize.META).read_text())
    assert 0 < meta["probe"]["max_gap_fp32"] < 0.1
    meta["probe"]["max_gap_fp32"] = -1.0  # as if the graph had answered far closer to PyTorch when it was made
    (quantized / quantize.META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="fermm.models.quantize"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "on the probe batch it differs from the model by" in caplog.text
    caplog.clear()
    torch.manual_seed(1)
    CNNClassifier(backbone="fast").save_pretrained(quantized)  # new weights in the folder, the old graph beside them
    with caplog.at_level(logging.WARNING, logger="fermm.models.quantize"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "made from other weights" in caplog.text
    assert model.predict_proba([astronaut]).shape == (1, 7)


@pytest.mark.parametrize("damaged", [quantize.GRAPH, quantize.META])
def test_a_damaged_graph_or_metadata_is_logged_and_pytorch_serves(quantized, caplog, damaged):
    """A file cut short (an interrupted copy or download) costs speed, never the model: one log line, PyTorch."""
    path = quantized / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING, logger="fermm.models.quantize"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "int8 graph of m not used" in caplog.text
    assert len(caplog.records) == 1 and "Traceback" not in caplog.text
    assert model.predict_proba([np.zeros((48, 48), np.uint8)]).shape == (1, 7)


def test_saving_leaves_no_temporary_files_and_replaces_an_older_pair(quantized):
    """Saved by rename: nothing half-written stays beside the model; saving again replaces both files."""
    model = load_model(str(quantized))
    before = json.loads((quantized / quantize.META).read_text())
    graph = (quantized / quantize.GRAPH).read_bytes()
    quantize.save_int8(model, quantized, graph, {"note": "again"})
    after = json.loads((quantized / quantize.META).read_text())
    assert after["note"] == "again" and after["graph_sha256"] == before["graph_sha256"]
    assert not list(quantized.glob("*.tmp"))


def test_the_validation_gate_writes_nothing(tmp_path):
    torch.manual_seed(0)
    CNNClassifier(backbone="fast").save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="validation points"):  # a gate no graph can pass: -100 points
        quantize_folder(tmp_path / "m", str(FER_TINY), 16, 0, -100.0, 1, _run())
    assert not (tmp_path / "m" / quantize.GRAPH).exists() and not (tmp_path / "m" / quantize.META).exists()


def test_the_graph_is_published_and_served_from_the_hub_cache_offline(quantized, mock_hub):
    from fermm.hub import push_model_folder

    assert push_model_folder(quantized, "me/tiny-int8") is not None
    assert {quantize.GRAPH, quantize.META} <= set(mock_hub.repos[("model", "me/tiny-int8")])
    load_model("me/tiny-int8")  # downloads into the (empty) cache
    mock_hub.offline()
    assert precision_of(load_model("me/tiny-int8")) == "onnx int8"


def _run():
    from fermm.evaluation.metrics import RunInfo

    return RunInfo("test", 0)


def test_the_card_command_rewrites_the_card_from_the_int8_result_of_these_weights(quantized, tmp_path):
    """``python -m fermm card FOLDER``: the summary and metrics come from the test result recorded for exactly these
    weights (found by fingerprint; it says int8), the int8 section stays, once; a result of other weights is
    ignored."""
    from fermm.__main__ import main as fermm_main
    from fermm.models import fingerprint

    results = tmp_path / "results"
    results.mkdir()
    base = {"model": "m", "dataset": "fer", "split": "test", "tta": "none", "n": 100, "accuracy": 0.6543,
            "accuracy_ci95": [0.6, 0.7], "n_not_in_train": 90, "accuracy_not_in_train": 0.6321, "macro_f1": 0.6,
            "per_class": {"happy": {"precision": 0.9, "recall": 0.8, "f1": 0.85}}, "command": "python eval/evaluate.py",
            "commit": "abc1234", "date": "2026-12-06T00:00:00Z"}
    (results / "m.json").write_text(json.dumps({**base, "precision": "onnx int8",
                                                "model_sha256": fingerprint(quantized)}))
    (results / "other.json").write_text(json.dumps({**base, "accuracy": 0.99, "model_sha256": "0" * 64}))
    assert fermm_main(["card", str(quantized), "--name", "tiny_int8", "--results", str(results)]) == 0
    card = (quantized / "README.md").read_text()
    assert "# fermm `tiny_int8`" in card and "Accuracy 65.4%" in card and "0.9900" not in card
    assert "TTA none, int8 (ONNX), commit abc1234" in card and "(63.2% on the images not also in train)" in card
    assert card.count(cards.INT8_HEADING) == 1 and card.index(cards.INT8_HEADING) < card.index("## Intended use")
    assert "surveillance" in card


def test_an_ensemble_reports_its_members_precision(quantized, tmp_path):
    from fermm.models.ensemble import EnsembleClassifier

    torch.manual_seed(2)
    CNNClassifier(backbone="fast").save_pretrained(tmp_path / "plain")
    assert precision_of(EnsembleClassifier(members=[str(quantized)])) == "onnx int8"
    assert precision_of(EnsembleClassifier(members=[str(quantized), str(tmp_path / "plain")])) == "mixed"
    assert precision_of(CNNClassifier(backbone="fast")) == "torch fp32"


def test_bundling_the_same_weights_again_keeps_the_int8_graph_and_new_weights_drop_it(tmp_path, capsys):
    from fermm.__main__ import main as fermm_main

    torch.manual_seed(0)
    CNNClassifier(backbone="fast").save_pretrained(tmp_path / "run")
    bundle = ["bundle", str(tmp_path / "run"), "--name", "tiny", "--checkpoints", str(tmp_path / "ck")]
    assert fermm_main(bundle) == 0
    out = tmp_path / "ck" / "tiny"
    assert quantize_main(["--model", str(out), "--dataset", str(FER_TINY), "--calibration", "16", "--max_drop", "100",
                          "--threads", "1"]) == 0
    assert fermm_main(bundle) == 0  # the same run again: same weights, the graph still fits them
    assert precision_of(load_model(str(out))) == "onnx int8"
    assert (out / "README.md").read_text().count(cards.INT8_HEADING) == 1
    torch.manual_seed(1)
    CNNClassifier(backbone="fast").save_pretrained(tmp_path / "run")  # retrained: other weights
    capsys.readouterr()
    assert fermm_main(bundle) == 0
    assert "its int8 graph is gone" in capsys.readouterr().out and not (out / quantize.GRAPH).exists()
    assert precision_of(load_model(str(out))) == "torch fp32"
