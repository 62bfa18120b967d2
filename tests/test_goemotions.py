"""GoEmotions (Ekman = FER-7 labels): the loader, multi-label training, calibration, reading user text, and
fusion that respects what the text says."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from fermm.data.goemotions import dair_as_fer7, load_goemotions, multi_hot, single_label
from fermm.evaluation.calibration import fit_temperature, fit_thresholds, multilabel_macro_f1
from fermm.labels import FER7, TEXT6
from fermm.models import load_model
from fermm.models.text import TextGRU
from fermm.paths import SHARED_DATA
from fermm.serve import fusion
from tests.conftest import FIXTURES

GO_TINY = FIXTURES / "goemotions_tiny"
GO_FULL = SHARED_DATA / "goemotions_ekman"
EMOTION_TINY = FIXTURES / "emotion_tiny"


def test_loader_reads_the_fixture_with_fer7_names():
    ds = load_goemotions(GO_TINY)
    assert {s: len(ds[s]) for s in ds} == {"train": 37, "validation": 23, "test": 23}
    assert ds["train"].features["labels"].feature.names == list(FER7)
    one = single_label(ds["test"])
    assert Counter(one["label"]) == {c: 3 for c in range(7)}  # 3 rows a class, named the FER way
    first = ds["test"][0]
    assert first["text"] == "Men are the worst." and FER7[first["labels"][0]] == "angry"  # GoEmotions' 0 = anger


def test_multilabel_rows_round_trip_through_parquet(tmp_path):
    from datasets import load_dataset

    ds = load_goemotions(GO_TINY)
    multi = [(r["id"], r["labels"]) for r in ds["train"] if len(r["labels"]) > 1]
    assert len(multi) == 2
    ds["train"].to_parquet(str(tmp_path / "train.parquet"))
    for s in ("validation", "test"):
        ds[s].to_parquet(str(tmp_path / f"{s}.parquet"))
    again = load_goemotions(tmp_path)
    assert [(r["id"], r["labels"]) for r in again["train"] if len(r["labels"]) > 1] == multi
    assert load_dataset("parquet", data_files=str(tmp_path / "train.parquet"))["train"]["labels"] == ds["train"]["labels"]


@pytest.mark.skipif(not GO_FULL.exists(), reason="the GoEmotions data is not beside this checkout")
def test_full_counts_equal_the_data_readme():
    ds = load_goemotions(GO_FULL)
    assert {s: len(ds[s]) for s in ds} == {"train": 43_410, "validation": 5_426, "test": 5_427}
    assert {s: sum(len(x) > 1 for x in ds[s]["labels"]) for s in ds} == {"train": 3_855, "validation": 480, "test": 459}
    readme = {"angry": (4293, 555, 572), "disgust": (498, 61, 76), "fear": (541, 72, 80), "happy": (15216, 1941, 1863),
              "neutral": (12823, 1592, 1606), "sad": (2326, 266, 283), "surprise": (3858, 459, 488)}
    for k, s in enumerate(("train", "validation", "test")):
        counts = Counter(FER7[c] for c in single_label(ds[s])["label"])
        assert counts == {lab: n[k] for lab, n in readme.items()}


def test_loader_errors_name_the_problem(tmp_path):
    from fermm.data import DataError

    (tmp_path / "labels.txt").write_text("anger\njoy\n")
    with pytest.raises(DataError, match="missing train.tsv"):
        load_goemotions(tmp_path)
    (tmp_path / "train.tsv").write_text("fine text\t7\tid1\n")
    with pytest.raises(DataError, match="line 1: expected"):
        load_goemotions(tmp_path)
    (tmp_path / "labels.txt").write_text("anger\nlove\n")
    with pytest.raises(DataError, match="not Ekman's"):
        load_goemotions(tmp_path)


def test_dair_rows_are_partial_labels():
    targets, mask = dair_as_fer7(np.array([TEXT6.index("love"), TEXT6.index("anger")]))
    assert targets[0, FER7.index("happy")] == 1 and targets[1, FER7.index("angry")] == 1 and targets.sum() == 2
    assert mask[:, FER7.index("neutral")].tolist() == [0, 0] and mask[:, FER7.index("disgust")].tolist() == [0, 0]
    assert mask.sum() == 2 * 5  # every other label is a real "no"
    assert multi_hot([[0, 6], []]).tolist() == [[1, 0, 0, 0, 0, 0, 1], [0] * 7]


def test_temperature_and_thresholds_are_recovered():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 4000)
    true_logits = rng.normal(size=(4000, 7)) + 3 * np.eye(7)[y]
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    drawn = np.array([rng.choice(7, p=row) for row in p])  # labels drawn from softmax(true_logits)
    assert fit_temperature(2.5 * true_logits, drawn) == pytest.approx(2.5, rel=0.1)  # over-confident by 2.5
    multi = (rng.random((2000, 3)) < 0.3).astype(float)
    logits = np.where(multi > 0, 0.5, -0.5) + rng.normal(scale=0.3, size=multi.shape) - 1.0  # sigmoid < 0.5 for all
    thresholds = fit_thresholds(multi, logits)
    assert all(t < 0.5 for t in thresholds)
    assert multilabel_macro_f1(multi, logits, thresholds) > multilabel_macro_f1(multi, logits, 0.5) + 0.3


def test_reading_user_text_empty_unreadable_and_english():
    torch.manual_seed(0)
    model = TextGRU(vocab=["happy", "meeting", "noon", "the", "is", "at"], embed_dim=8, hidden=4, labels=FER7,
                    multi_label=True).eval()
    assert model.read("") is None and model.read("   ") is None  # no text: no result, not a guess
    for text in ("😀😀😀", "今日はとても嬉しいです", "أنا سعيد جدا", "zxqv wpfk"):
        reading = model.read(text)
        assert reading is not None and not reading.readable and reading.probs is None
        assert "could not be read" in reading.notes[-1] and "English" in reading.notes[-1]
    reading = model.read("The meeting is at noon. 😀")
    assert reading.readable and set(reading.probs) == set(FER7) and sum(reading.probs.values()) == pytest.approx(1)


def test_minilm_reads_whole_english_words_only():
    from fermm.models.text import TextMiniLM

    model = TextMiniLM(labels=FER7, mode="lora", multi_label=True)
    assert model.known_words("The meeting is at noon.") == ["the", "meeting", "is", "at", "noon"]
    assert model.read("🙂🙂") is not None and not model.read("🙂🙂").readable
    assert not model.read("الاجتماع ظهرا").readable


def test_calibration_is_saved_and_applied(tmp_path):
    torch.manual_seed(0)
    model = TextGRU(vocab=["happy", "sad"], embed_dim=8, hidden=4, labels=FER7, multi_label=True).eval()
    logits = model.logits_text(["happy happy"])
    model.calibrate(2.0, [0.3] * 7)
    model.save_pretrained(tmp_path / "m")
    again = load_model(str(tmp_path / "m"))
    assert again.temperature == 2.0 and again.thresholds == (0.3,) * 7 and again.multi_label
    assert torch.allclose(again.predict_text(["happy happy"]), (logits / 2).softmax(-1), atol=1e-6)
    assert torch.allclose(again.predict_multilabel(["happy happy"]), logits.sigmoid(), atol=1e-6)
    with pytest.raises(ValueError, match="single-label"):
        TextGRU(vocab=["a"], embed_dim=4, hidden=2).predict_multilabel(["a"])


def _face(label: str, p: float) -> np.ndarray:
    row = np.full(7, (1 - p) / 6)
    row[FER7.index(label)] = p
    return row[None]


def test_neutral_text_leaves_a_confident_face_and_emotional_text_moves_an_uncertain_one():
    neutral_text = _face("neutral", 0.95)[0]
    for w in (0.3, 0.6, 0.9):
        assert FER7[fusion.fuse(_face("happy", 0.8), neutral_text, w).argmax()] == "happy"
        flat = np.full(7, 1 / 7)  # an uncertain text adds even mass: it cannot overturn the face
        assert FER7[fusion.fuse(_face("sad", 0.4), flat, w).argmax()] == "sad"
    uncertain_face = np.array([[0.2, 0.05, 0.15, 0.25, 0.1, 0.05, 0.2]])  # happy by a hair
    sad_text = _face("sad", 0.9)[0]
    for w in (0.25, 0.5):  # 0.25: the weight fitted on validation pairs (results/fusion.json)
        assert FER7[fusion.fuse(uncertain_face, sad_text, w).argmax()] == "sad"
    assert np.allclose(fusion.fuse(uncertain_face, sad_text, 0.5).sum(), 1)


def test_text_evidence_of_a_dair_model_has_no_neutral():
    p = fusion.as_fer7(np.eye(6)[[TEXT6.index("joy")]], TEXT6)
    q, strength = fusion.text_evidence(p)
    assert strength[0] == 1.0 and q[0, FER7.index("happy")] == 1.0
    assert fusion.as_fer7(_face("sad", 0.5), FER7) is not None


def test_goemotions_training_is_multilabel_and_calibrated(tmp_path):
    import train.text as script

    out = tmp_path / "run"
    assert script.main(["--model", "gru", "--word_vectors", "", "--goemotions", str(GO_TINY), "--dataset",
                        str(EMOTION_TINY), "--output_dir", str(out), "--epochs", "2", "--batch_size", "8",
                        "--log_with", "none"]) == 0
    model = load_model(str(out))
    assert model.labels == FER7 and model.multi_label and len(model.thresholds) == 7 and model.temperature > 0
    history = (out / "stage_text" / "history.json").read_text()
    assert "val_macro_f1" in history
    card = (out / "README.md").read_text()
    assert "GoEmotions" in card and "DAIR-AI" in card and "English" in card


def test_per_label_f1_is_the_positive_class_f1():
    from fermm.evaluation.text_scores import per_label_f1

    y = np.zeros((10, 7))
    y[:2, 1] = 1  # 2 disgust rows
    logits = np.full((10, 7), -5.0)
    logits[0, 1] = 5.0  # one of them found, no false alarm: precision 1, recall 0.5
    f1 = per_label_f1(y, logits, [0.5] * 7)
    assert f1["disgust"] == pytest.approx(2 / 3) and f1["angry"] == 0.0  # never present, never predicted: 0, not 1


def test_apostrophe_words_are_read():
    model = TextGRU(vocab=["don't"], embed_dim=4, hidden=2, labels=FER7).eval()  # the GRU's words keep apostrophes
    assert model.read("Don't!").readable
    from fermm.models.text import TextMiniLM

    assert TextMiniLM(labels=FER7, mode="lora").read("Don't!").readable


def test_text_card_names_its_data_and_puts_macro_f1_on_the_hub_page():
    from huggingface_hub import ModelCard

    from fermm.evaluation import cards

    model = TextGRU(vocab=["a"], embed_dim=4, hidden=2, labels=FER7, multi_label=True)
    model.calibrate(1.5, [0.3] * 7)
    measured = {"dataset": "goemotions_ekman", "split": "test", "n": 4968, "accuracy": 0.7071, "macro_f1": 0.649,
                "per_class": {}, "n_all_rows": 5427, "multilabel_macro_f1": 0.6403, "multilabel_macro_f1_at_0.3": 0.6419,
                "dair_fer7": {"split": "test", "accuracy": 0.952}}
    card = ModelCard(cards.text_model_card("text_gru", model, training={"data": "goemotions+dair"}, measured=measured))
    got = [(e.metric_type, e.metric_name, e.metric_value) for e in card.data.eval_results]
    assert got == [("accuracy", "accuracy", 0.7071), ("f1", "multi-label macro-F1", 0.6403)]
    assert card.data.datasets == ["google-research-datasets/go_emotions", "dair-ai/emotion"]
    assert "GoEmotions" in card.text and "partial labels" in card.text and "English only" in card.text
    assert "0.6403 (validation thresholds)" in card.text and "DAIR-AI emotion `test` on FER labels: 0.9520" in card.text
    dair = TextGRU(vocab=["a"], embed_dim=4, hidden=2)
    assert ModelCard(cards.text_model_card("old", dair, training={"data": "dair"})).data.datasets == ["dair-ai/emotion"]
