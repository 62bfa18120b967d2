"""Stored int8 graphs (fermm.models.quantize, train/quantize.py): built from train faces, gated on validation,
served on load only when they match the weights and their recorded outputs, published and fetched with the model."""
from __future__ import annotations

import json
import logging

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
    assert {"command", "commit", "date", "seed"} <= set(meta) and len(meta["probe"]["probs"]) == quantize.PROBE_BATCH
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


def test_a_graph_is_refused_for_other_weights_or_outputs_and_pytorch_serves(quantized, caplog, astronaut):
    meta = json.loads((quantized / quantize.META).read_text())
    meta["probe"]["probs"][0] = [1.0] + [0.0] * 6
    (quantized / quantize.META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="fermm.models.runtime"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "differ from the recorded ones" in caplog.text
    caplog.clear()
    torch.manual_seed(1)
    CNNClassifier(backbone="fast").save_pretrained(quantized)  # new weights in the folder, the old graph beside them
    with caplog.at_level(logging.WARNING, logger="fermm.models.runtime"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "made from other weights" in caplog.text
    assert model.predict_proba([astronaut]).shape == (1, 7)


def test_a_damaged_graph_is_logged_and_pytorch_serves(quantized, caplog):
    graph = quantized / quantize.GRAPH
    graph.write_bytes(graph.read_bytes()[: len(graph.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING, logger="fermm.models.runtime"):
        model = load_model(str(quantized))
    assert precision_of(model) == "torch fp32" and "int8 graph of m not used" in caplog.text
    assert len(caplog.records) == 1 and "Traceback" not in caplog.text


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
