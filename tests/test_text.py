"""Text models, text cleaning and image + text fusion."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fermm.labels import FER7, TEXT6
from fermm.models import load_model
from fermm.models.text import TextGRU, TextReading
from fermm.models.textprep import clean_text
from fermm.serve import fusion
from tests.conftest import FIXTURES

EMOTION_TINY = FIXTURES / "emotion_tiny"
GO_TINY = FIXTURES / "goemotions_tiny"


@pytest.mark.parametrize("raw,clean,note", [
    ("  i feel   fine ", "i feel fine", None),
    ("", "", "the text is empty"),
    ("x" * 3000, "x" * 2000, "only the first 2,000 were used"),
    ("y" * 5_000_000, "y" * 2000, "the text was 5,000,000 characters; only the first 2,000"),  # an API client's
    ("<b>so</b> happy <script>x()</script>", "so happy x()", "HTML tags"),
    ("&lt;3 love", "<3 love", None),
    ("😀", "😀", None),
])
def test_clean_text(raw, clean, note):
    text, notes = clean_text(raw)
    assert text == clean
    assert (note is None and not notes) or any(note in n for n in notes)


def test_gru_predicts_distributions_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = TextGRU(vocab=["happy", "sad"], embed_dim=8, hidden=4).eval()
    p = model.predict_text(["i am happy", "", "unknown words only", "<p>sad</p>"])
    assert p.shape == (4, 6) and torch.allclose(p.sum(-1), torch.ones(4))
    model.save_pretrained(tmp_path / "m")
    assert torch.allclose(load_model(str(tmp_path / "m")).predict_text(["i am happy"]), p[:1], atol=1e-6)  # padding-independent


@pytest.mark.parametrize("extra", [["--model", "gru", "--word_vectors", ""], ["--model", "minilm", "--mode", "lora"]],
                         ids=["gru", "minilm-lora"])
def test_text_script_lands_a_dair_checkpoint(tmp_path, extra):
    import train.text as script

    out = tmp_path / "run"
    assert script.main(["--data", "dair", "--dataset", str(EMOTION_TINY), "--output_dir", str(out), "--epochs", "2",
                        "--batch_size", "8", "--log_with", "none", *extra]) == 0
    model = load_model(str(out))
    assert model.labels == TEXT6 and model.predict_text(["i feel great"]).shape == (1, 6)
    card = (out / "README.md").read_text()
    assert "DAIR-AI" in card and "Out-of-scope" in card
    if "minilm" in extra:  # only the adapter and the head are stored, not the 90 MB encoder
        assert (out / "model.safetensors").stat().st_size < 2_000_000


def test_text_script_with_ema_saves_the_average(tmp_path):
    from safetensors.torch import load_file

    import train.text as script

    out = tmp_path / "run"
    assert script.main(["--data", "dair", "--model", "gru", "--word_vectors", "", "--dataset", str(EMOTION_TINY), "--output_dir",
                        str(out), "--epochs", "1", "--batch_size", "8", "--log_with", "none", "--ema", "0.5"]) == 0
    last = out / "stage_text" / "last"  # one epoch: the best checkpoint is the last one
    ema = {k.removeprefix("module."): v for k, v in load_file(str(last / "ema.safetensors")).items()}
    raw = load_file(str(last / "model.safetensors"))
    saved = load_model(str(out)).state_dict()
    assert torch.allclose(saved["head.weight"], ema["head.weight"])  # what is validated and saved is the average
    assert not torch.allclose(ema["head.weight"], raw["head.weight"])


def test_fusion_math():
    p_img = np.array([[0.1, 0, 0, 0.6, 0.3, 0, 0]])
    p_txt = fusion.text_to_fer7(np.eye(6)[[TEXT6.index("love")]])
    assert p_txt[0, FER7.index("happy")] == 1.0  # love -> happy
    assert np.array_equal(fusion.fuse(p_img, None, 0.7), p_img)  # no text: unchanged
    fused = fusion.fuse(p_img, p_txt[0], 0.5)
    assert fused[0, FER7.index("happy")] == pytest.approx(0.8) and fused.sum() == pytest.approx(1)


def test_love_dropped_mapping_spreads_its_mass():
    from fermm.labels import TEXT6_TO_FER7

    love = np.eye(6)[[TEXT6.index("love"), TEXT6.index("joy")]] * 0.8 + 0.2 / 6
    dropped = fusion.text_to_fer7(love, {**TEXT6_TO_FER7, "love": None})
    assert np.allclose(dropped.sum(1), 1)
    assert np.ptp(dropped[0]) < 0.05  # a love sentence, its mass spread: it says ~nothing about the face
    assert dropped[1].argmax() == FER7.index("happy") and dropped[1, FER7.index("happy")] > 0.7


def test_fit_weight_prefers_the_better_signal():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    noisy_img = np.eye(7)[np.where(rng.random(400) < 0.4, y, rng.integers(0, 7, 400))] * 0.6 + 0.4 / 7
    good_txt = np.eye(7)[np.where(rng.random(400) < 0.9, y, rng.integers(0, 7, 400))] * 0.6 + 0.4 / 7
    w, curve = fusion.fit_weight(noisy_img, good_txt, y)
    assert w > 0.5 and curve[w] >= curve[0.0] and curve[w] >= curve[1.0]


def test_pairing_congruent_neutral_and_conflicting():
    faces = np.array([FER7.index(x) for x in ("happy", "sad", "disgust", "neutral", "angry")])
    texts = np.array([FER7.index(x) for x in ("happy", "sad", "neutral", "angry", "fear", "happy")])
    fi, si = fusion.pair_sentences(faces, texts, "congruent", seed=0)
    assert fi.tolist() == [0, 1, 3, 4] and (texts[si] == faces[fi]).all()  # no disgust sentence here
    fi, si = fusion.pair_sentences(faces, texts, "neutral", seed=0)
    assert fi.tolist() == [0, 1, 2, 3, 4] and (texts[si] == FER7.index("neutral")).all()
    fi, si = fusion.pair_sentences(faces, texts, "conflict", seed=0)
    assert len(fi) == 5 and all(t != f and t != FER7.index("neutral") for t, f in zip(texts[si], faces[fi]))
    with pytest.raises(ValueError, match="kind must be one of"):
        fusion.pair_sentences(faces, texts, "other", seed=0)


def test_fitted_weight_file(tmp_path):
    assert fusion.load_weight(tmp_path) == fusion.DEFAULT_TEXT_WEIGHT
    (tmp_path / "fusion.json").write_text(json.dumps({"text_weight": 0.35}))
    assert fusion.load_weight(tmp_path) == 0.35


def test_fusion_and_text_evaluation_scripts(tmp_path):
    import eval.evaluate as evaluate
    import eval.fusion as fusion_script
    from fermm.evaluation import metrics
    from fermm.models.cnn import CNNClassifier
    from tests.conftest import FER_TINY

    torch.manual_seed(0)
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "img")
    TextGRU(vocab=["happy", "sad", "feel", "the"], embed_dim=8, hidden=4, labels=FER7,
            multi_label=True).save_pretrained(tmp_path / "txt")
    TextGRU(vocab=["happy", "sad", "feel"], embed_dim=8, hidden=4).save_pretrained(tmp_path / "dair")
    out = tmp_path / "results"
    assert fusion_script.main(["--image_model", str(tmp_path / "img"), "--text_model", str(tmp_path / "txt"),
                               "--dataset", str(FER_TINY), "--goemotions", str(GO_TINY),
                               "--output_dir", str(out)]) == 0
    result = json.loads((out / "fusion.json").read_text())
    assert 0 <= result["text_weight"] <= 1 and result["test_neutral"]["n_pairs"] == 14  # every FER_TINY face
    assert set(result["test_conflict"]) >= {"fused", "fused_follows_text", "plain_mean_follows_text"}
    assert fusion.load_weight(out) == result["text_weight"]
    assert evaluate.main(["--models", str(tmp_path / "txt"), str(tmp_path / "dair"), "--text_dataset",
                          str(EMOTION_TINY), "--goemotions", str(GO_TINY), "--output_dir", str(out)]) == 0
    results = {r["model"]: r for r in metrics.read_results(out) if r.get("task") == "text"}
    assert results["dair"]["n"] == 18 and results["dair"]["labels"] == list(TEXT6)
    go = results["txt"]
    assert go["labels"] == list(FER7) and go["n"] == 21 and go["n_all_rows"] == 23  # single-label rows / all
    assert 0 <= go["multilabel_macro_f1"] <= 1 and go["dair_fer7"]["n"] == 18
    assert "| text model |" in metrics.markdown_table(metrics.read_results(out))


def test_bucketed_batches_cover_each_sentence_once_with_similar_lengths():
    from fermm.training.text import bucketed_batches

    lengths = np.random.default_rng(0).integers(5, 300, 1000)
    batches = bucketed_batches(lengths, 32, torch.Generator().manual_seed(0), n_batches=31)
    flat = np.concatenate(batches)
    assert len(batches) == 31 and all(len(b) == 32 for b in batches)
    assert len(set(flat.tolist())) == len(flat) == 31 * 32  # no sentence twice in an epoch
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.2 * np.ptp(lengths)  # similar lengths per batch, so little padding
    again = bucketed_batches(lengths, 32, torch.Generator().manual_seed(0), n_batches=31)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # seeded: resumable


def test_text_checkpoint_is_validated_on_load(tmp_path):
    torch.manual_seed(0)
    TextGRU(vocab=["happy", "sad"], embed_dim=8, hidden=4).half().save_pretrained(tmp_path / "m")  # an fp16 bundle
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.head.weight.dtype == torch.float32  # fp16 weights come back into the fp32 model
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "hidden": 5}))
    with pytest.raises(ValueError, match="saved shape .* != expected"):
        load_model(str(tmp_path / "m"))


def test_app_fusion_averages_models_on_fer7_then_blends_the_text(astronaut):
    """predict_image: a 7-label and an 8-label model are folded to FER-7 (contempt dropped, renormalised),
    averaged, then blended with the sentence's FER-7 reading at the given weight."""
    from fermm.labels import FERPLUS8
    from fermm.serve.fusion import text_to_fer7
    from fermm.serve.predict import ModelPool, predict_image

    class Fixed:
        family = "cnn"

        def __init__(self, labels, row):
            self.labels, self.row = labels, torch.tensor([row], dtype=torch.float32)

        def predict_proba(self, crops, **kw):
            return self.row.expand(len(crops), -1)

        def read(self, text):
            return TextReading(dict(zip(self.labels, self.row[0].tolist())), text, [])
    seven = [0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]
    eight = [0.1, 0.1, 0.1, 0.3, 0.1, 0.1, 0.0, 0.2]  # FERPLUS8: FER-7's order, then contempt
    text6 = [0.1, 0.6, 0.1, 0.1, 0.05, 0.05]
    pool, text_pool = ModelPool(["a", "b"]), ModelPool(["t"])
    pool._models = {"a": Fixed(FER7, seven), "b": Fixed(FERPLUS8, eight)}
    text_pool._models = {"t": Fixed(TEXT6, text6)}
    b7 = np.array([eight[FERPLUS8.index(lab)] for lab in FER7]) / (1 - eight[-1])
    image = (np.array(seven) + b7) / 2
    result = predict_image(astronaut, pool, ["a", "b"], whole_image=True)
    assert np.allclose([result.faces[0].fused[lab] for lab in FER7], image, atol=1e-6)
    text = text_to_fer7(np.array([text6]))[0]
    result = predict_image(astronaut, pool, ["a", "b"], whole_image=True, text="so happy", text_pool=text_pool,
                           text_model="t", text_weight=0.3)
    assert np.allclose([result.faces[0].fused[lab] for lab in FER7], 0.7 * image + 0.3 * text, atol=1e-6)


def test_lora_adapters_round_trip_through_peft_state_dicts(tmp_path):
    """Only the adapters and the head are saved, under peft's own names (get_peft_model_state_dict), and loaded
    back with set_peft_model_state_dict: the same predictions, and a wrong tensor is refused."""
    from safetensors.torch import load_file, save_file

    from fermm.models.text import TextMiniLM

    torch.manual_seed(0)
    model = TextMiniLM(labels=FER7, mode="lora", lora_r=4, multi_label=True)
    with torch.no_grad():  # peft starts lora_B at zero; make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert any(".lora_A." in k for k in saved) and not any(".default." in k for k in saved)
    assert set(saved) == {k for k in saved if "lora_" in k} | {"head.weight", "head.bias"}
    again = load_model(str(tmp_path / "m"))
    texts = ["the meeting is at noon", "i am so happy today"]
    assert torch.allclose(again.logits_text(texts), model.logits_text(texts), atol=1e-5)
    fresh = TextMiniLM(labels=FER7, mode="lora", lora_r=4, multi_label=True)
    assert not torch.allclose(fresh.logits_text(texts), model.logits_text(texts), atol=1e-3)  # the adapters count
    key = next(k for k in saved if "lora_B" in k)
    save_file({**saved, key: saved[key][:, :2].contiguous()}, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(ValueError, match="saved shape"):
        load_model(str(tmp_path / "m"))
