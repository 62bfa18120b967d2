"""fermm.evaluation.metrics / eval/: metrics against hand computation, the schema, the two eval scripts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fermm.evaluation import metrics
from fermm.labels import FER7
from fermm.models import fingerprint
from fermm.models.cnn import CNNClassifier
from tests.conftest import FER_TINY

# A hand-made 3-class case: true/pred pairs and the confusion matrix they give.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0, 2])
CM = [[2, 1, 0], [0, 1, 1], [1, 0, 4]]


def test_metrics_against_a_hand_computed_confusion_matrix():
    assert metrics.confusion(Y_TRUE, Y_PRED, 3) == CM
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(7 / 10)
    pc = metrics.per_class(Y_TRUE, Y_PRED, ["a", "b", "c"])
    # precision = diag / column sum, recall = diag / row sum
    assert pc["a"]["precision"] == pytest.approx(2 / 3) and pc["a"]["recall"] == pytest.approx(2 / 3)
    assert pc["b"]["precision"] == pytest.approx(1 / 2) and pc["b"]["recall"] == pytest.approx(1 / 2)
    assert pc["c"]["precision"] == pytest.approx(4 / 5) and pc["c"]["recall"] == pytest.approx(4 / 5)
    assert pc["c"]["support"] == 5
    f1 = [2 * p * r / (p + r) for p, r in ((2 / 3, 2 / 3), (1 / 2, 1 / 2), (4 / 5, 4 / 5))]
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(np.mean(f1))


def test_macro_f1_leaves_out_labels_without_true_examples():
    """An 8-label model on FER-7 data: 'contempt' (index 7) is predicted but never true, so it has no F1 to
    average in; the table's figure, recomputed from the stored per-class record, agrees."""
    y_pred = np.array([0, 1, 2, 7, 7, 2])
    y_true = np.array([0, 1, 2, 2, 1, 2])
    f1 = [1.0, 2 * 1 * 0.5 / 1.5, 2 * 1 * (2 / 3) / (1 + 2 / 3)]
    assert metrics.macro_f1(y_true, y_pred, 8) == pytest.approx(np.mean(f1))
    record = {"per_class": metrics.per_class(y_true, y_pred, list("abcdefgh"))}
    assert metrics.macro_f1_of(record) == pytest.approx(np.mean(f1))


def test_ece_hand_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5 vs 0.9 -> 0.4 * 2/4; bin 0.6: accuracy 1.0 vs 0.6 -> 0.4 * 2/4
    assert metrics.expected_calibration_error(probs, y) == pytest.approx(0.4)


def test_bootstrap_is_deterministic_with_a_seed_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    p[:300] = y[:300]
    a, b = metrics.bootstrap_ci(y, p, seed=1), metrics.bootstrap_ci(y, p, seed=1)
    c = metrics.bootstrap_ci(y, p, seed=2)
    acc = metrics.accuracy(y, p)
    assert a == b and a != c and a[0] < acc < a[1] and a[1] - a[0] < 0.1


def test_paired_comparison_hand_case():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([1, 0, 1, 1, 0, 0, 0, 1], bool)
    c = metrics.paired_comparison(a, b)
    assert (c["n"], c["only_a_right"], c["only_b_right"]) == (8, 2, 1)
    assert c["accuracy_a"] == 5 / 8 and c["accuracy_b"] == 4 / 8 and c["difference"] == pytest.approx(1 / 8)
    lo, hi = c["difference_ci95"]
    assert lo <= 1 / 8 <= hi and -1 <= lo and hi <= 1
    assert metrics.paired_comparison(a, a)["difference_ci95"] == [0.0, 0.0]  # same answers: no doubt at all
    with pytest.raises(ValueError, match="different images"):
        metrics.paired_comparison(a, b[:4])
    with pytest.raises(ValueError, match="no images"):
        metrics.paired_comparison(a[:0], b[:0])


def test_paired_script_scores_two_models_on_the_same_images(tmp_path, capsys):
    import eval.paired as paired
    from fermm.evaluation.evaluator import labels_for, load_split, predict_split
    from fermm.models import load_model
    from fermm.studies import twins

    for seed, name in ((0, "m0"), (1, "m1")):
        torch.manual_seed(seed)
        CNNClassifier(backbone="mini").eval().save_pretrained(tmp_path / name)
    out = tmp_path / "p.json"
    assert paired.main(["--a", str(tmp_path / "m0"), "--b", str(tmp_path / "m1"), "--dataset", str(FER_TINY),
                        "--splits", "validation", "test", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["splits"]) == {"validation", "test"} and record["command"].startswith("python eval/paired.py")
    split = load_split(str(FER_TINY), "validation")
    correct = [predict_split(m, split["images"], "none")[0].argmax(1) == labels_for(m, split["labels"])
               for m in (load_model(str(tmp_path / "m0")), load_model(str(tmp_path / "m1")))]
    v = record["splits"]["validation"]
    assert (v["accuracy_a"], v["accuracy_b"]) == pytest.approx([c.mean() for c in correct])
    assert v["only_a_right"] - v["only_b_right"] == round(v["difference"] * v["n"])
    assert (twins.unpack_correct(v["correct_a"], v["n"]) == correct[0]).all()  # recorded per image
    assert v["split_digest"] == twins.split_digest(split["images"], split["labels"])
    assert "| validation | `m0`" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot load"):
        paired.main(["--a", str(tmp_path / "m0"), "--b", str(tmp_path / "absent"), "--dataset", str(FER_TINY)])
    with pytest.raises(SystemExit):  # the same folder twice, however it is written
        paired.main(["--a", str(tmp_path / "m0"), "--b", str(tmp_path / "m0") + "/", "--dataset", str(FER_TINY)])
    assert "the same model" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "other" / "m0")
    with pytest.raises(SystemExit):  # two different models with one name: the output needs a name
        paired.main(["--a", str(tmp_path / "m0"), "--b", str(tmp_path / "other" / "m0"), "--dataset", str(FER_TINY)])
    assert "give --json" in capsys.readouterr().err


def test_ferplus_scores_respect_label_sets():
    from fermm.labels import FER7, FERPLUS8

    fp = np.array([3, 3, 7, -1, 6])  # happy, happy, contempt, none, neutral
    probs7 = np.eye(7)[[3, 0, 3, 3, 6]]
    seven, eight = metrics.ferplus_scores(probs7, FER7, fp, seed=0)
    assert seven["n"] == 3 and seven["accuracy"] == pytest.approx(2 / 3) and eight is None  # no contempt scoring
    probs8 = np.eye(8)[[3, 3, 7, 0, 6]]
    seven, eight = metrics.ferplus_scores(probs8, FERPLUS8, fp, seed=0)
    assert seven["accuracy"] == 1.0 and eight["n"] == 4 and eight["accuracy"] == 1.0


def test_result_schema_round_trip(tmp_path):
    probs = np.eye(3)[Y_PRED] * 0.8 + 0.2 / 3
    r = {"model": "m", "source": "x", "dataset": "d", "split": "test", "tta": "flip",
         **metrics.score(probs, Y_TRUE, ["a", "b", "c"]), "images_per_second": 10.0,
         **metrics.RunInfo("cmd", 0).as_dict(), "schema_version": metrics.SCHEMA_VERSION}
    path = metrics.write_result(r, tmp_path)
    assert path.name == "m.flip.json"
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"schema_version": 99}))
    assert metrics.read_results(tmp_path) == [json.loads(json.dumps(r))]
    with pytest.raises(ValueError, match="missing"):
        metrics.write_result({"model": "m"}, tmp_path)


def test_evaluate_and_compare_scripts_end_to_end(tmp_path, capsys, monkeypatch):
    import eval.compare as compare
    import eval.evaluate as evaluate

    torch.manual_seed(0)
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "tiny_cnn")
    out = tmp_path / "results"
    argv = ["--models", str(tmp_path / "tiny_cnn"), str(tmp_path / "absent"), "--dataset", str(FER_TINY),
            "--split", "validation", "--tta", "flip", "--output_dir", str(out)]
    assert evaluate.main(argv) == 0
    (result,) = metrics.read_results(out)
    assert result["model"] == "tiny_cnn" and result["n"] == 14 and result["tta"] == "flip"
    assert np.asarray(result["confusion_matrix"]).sum() == 14 and 0 <= result["accuracy"] <= 1
    assert result["command"].startswith("python eval/evaluate.py --models") and result["ferplus"]["n"] > 0
    assert result["model_sha256"] == fingerprint(tmp_path / "tiny_cnn")  # which weights were measured
    _results_of_other_folders_are_never_replaced(tmp_path, argv[3:], out, capsys)
    monkeypatch.setenv("FERMM_MODEL_GLOVE_CNN", str(tmp_path / "other" / "tiny_cnn"))
    (out / "glove_cnn.flip.validation.json").write_text(json.dumps({"source": "an/older/bundle"}))
    assert evaluate.main(["--models", "glove_cnn", *argv[3:]]) == 0  # a registry name replaces its own result
    assert json.loads((out / "glove_cnn.flip.validation.json").read_text())["source"] == str(tmp_path / "other" / "tiny_cnn")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{metrics.README_START}\nold\n{metrics.README_END}\nend\n")
    assert compare.main(["--results", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "`tiny_cnn` | validation | flip |" in text and "`tiny_cnn_2` |" in text and "old" not in text
    assert "`glove_cnn` |" in text and text.endswith("end\n")
    assert "published, not measured here" in text.lower()
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == ["accuracy.json", "confusion_glove_cnn.flip.validation.json", "confusion_tiny_cnn.flip.validation.json",
                    "confusion_tiny_cnn_2.flip.validation.json", "per_class_f1.json"]


def _results_of_other_folders_are_never_replaced(tmp_path, options: list[str], out, capsys) -> None:
    """A folder's result is named after its last component: another folder of that name (or another script's
    record) is refused, --name stores it beside; the same folder however written replaces its own result."""
    import eval.evaluate as evaluate

    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "other" / "tiny_cnn")
    again = ["--models", str(tmp_path / "other" / "tiny_cnn"), *options]
    capsys.readouterr()
    assert evaluate.main(again) == 1
    assert f"holds the result of {tmp_path / 'tiny_cnn'}; give --name" in capsys.readouterr().out
    assert metrics.read_results(out)[0]["model_sha256"] == fingerprint(tmp_path / "tiny_cnn")
    assert evaluate.main([*again, "--name", "tiny_cnn_2"]) == 0
    assert {r["model"] for r in metrics.read_results(out)} == {"tiny_cnn", "tiny_cnn_2"}
    assert evaluate.main(["--models", f"{tmp_path / 'tiny_cnn'}/", *options]) == 0  # the same folder, spelt otherwise
    (out / "fusion.flip.validation.json").write_text(json.dumps({"pairs": 5}))  # another script's record
    (tmp_path / "fusion").symlink_to(tmp_path / "tiny_cnn")
    assert evaluate.main(["--models", str(tmp_path / "fusion"), *options]) == 1
    assert "holds a record that is not a model's result" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--models", "a", "b", "--name", "c"])


def test_batch_predict_cli_writes_a_row_per_face_and_skips_bad_files(tmp_path, monkeypatch, capsys):
    import csv
    import shutil

    from fermm.__main__ import main
    from tests.conftest import ASTRONAUT

    torch.manual_seed(0)
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "m")
    monkeypatch.setenv("FERMM_MODEL_GLOVE_CNN", str(tmp_path / "m"))
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    shutil.copy(ASTRONAUT, photos / "a.jpg")
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "photos"), "--models", "glove_cnn", "resnet50",
                 "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["face"] == "1" and rows[0]["file"].endswith("a.jpg")
    probs = [float(rows[0][f"glove_cnn:{lab}"]) for lab in ("angry", "disgust", "fear", "happy", "sad",
                                                            "surprise", "neutral")]
    assert sum(probs) == pytest.approx(1, abs=1e-3) and rows[0]["top"] in ("angry", "disgust", "fear", "happy",
                                                                          "sad", "surprise", "neutral")
    err = capsys.readouterr().err
    assert "broken.jpg: this is not an image" in err and "model resnet50 unavailable" in err


def test_zero_shot_words_scores_an_unseen_label(tmp_path):
    import eval.zero_shot_words as script
    from fermm.labels import FERPLUS8
    from fermm.models.wordvec import default_vectors, label_vectors

    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11", word_dim=300)
    model.label_vectors.copy_(torch.from_numpy(label_vectors(model.labels, default_vectors())))
    model.save_pretrained(tmp_path / "glove")
    assert script.main(["--model", str(tmp_path / "glove"), "--dataset", str(FER_TINY), "--split", "validation",
                        "--output_dir", str(tmp_path)]) == 0
    (result,) = metrics.read_results(tmp_path)
    assert result["labels"] == list(FERPLUS8) and result["ferplus8"] is not None
    assert np.asarray(result["confusion_matrix"]).shape == (8, 8)
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="no word-vector head"):
        script.main(["--model", str(tmp_path / "base"), "--dataset", str(FER_TINY)])


def test_bar_spec_is_a_valid_plotly_figure_with_the_default_look():
    import plotly.graph_objects as go

    from fermm.evaluation.plots import grouped_bars_spec

    spec = grouped_bars_spec([("face 1", ["a", "b"], [np.float32(0.25), 0.75]), ("text", ["a", "b"], [1, 0])], "t")
    fig = go.Figure(spec)  # plotly validates every property
    assert [(t.name, list(t.y)) for t in fig.data] == [("face 1", [0.25, 0.75]), ("text", [1.0, 0.0])]
    assert fig.layout.template == go.Figure().layout.template and fig.layout.title.text == "t"
    json.dumps(spec)  # plain JSON: numpy scalars were converted


def test_accuracy_tab_charts_show_the_recorded_values():
    from fermm.evaluation import plots

    r = {"model": "m", "tta": "flip", "split": "test", "labels": ["a", "b", "c"], "accuracy": 0.7,
         "accuracy_ci95": [0.65, 0.74], "per_class": {c: {"f1": f} for c, f in zip("abc", (0.9, 0.5, 0.1))},
         "confusion_matrix": CM, "ferplus": None}
    bars = plots.accuracy_bars([r], [{"model": "paper", "accuracy": 0.6}])
    ours, pub = bars.data
    assert list(ours.y) == ["m (+flip TTA)"] and list(ours.x) == [0.7] and pub.x == (0.6,)
    assert ours.error_x.arrayminus[0] == pytest.approx(0.05) and ours.error_x.array[0] == pytest.approx(0.04)
    (f1,) = plots.per_class_f1([r]).data
    assert list(f1.x) == ["a", "b", "c"] and list(f1.y) == [0.9, 0.5, 0.1]
    (heat,) = plots.confusion_heatmap(r, normalize=True).data
    assert np.allclose(heat.z, np.asarray(CM) / np.asarray(CM).sum(1, keepdims=True))  # rows sum to 1
    assert "no FER+ labels" in plots.confusion_heatmap(r, ferplus=True).layout.title.text


def test_command_line_quotes_what_a_shell_would_split():
    from fermm.evaluation.metrics import command_line

    assert command_line("eval/x.py", ["--runs", "a b", "--tta", "flip"]) == "python eval/x.py --runs 'a b' --tta flip"
    assert command_line("eval/x.py", []) == "python eval/x.py"


def test_accuracy_on_images_not_in_train():
    from fermm import data

    y = np.array([0, 1, 2, 3])
    probs = np.eye(7)[[0, 1, 5, 5]]  # right on the first two only
    in_train = np.array([True, False, False, True])
    r = metrics.score(probs, y, [str(i) for i in range(7)], in_train=in_train)
    assert r["accuracy"] == 0.5 and r["n_not_in_train"] == 2 and r["accuracy_not_in_train"] == 0.5
    assert metrics.score(probs, y, [str(i) for i in range(7)])["accuracy_not_in_train"] is None
    train = np.zeros((3, 48, 48), np.uint8) + np.arange(3, dtype=np.uint8)[:, None, None]
    test = np.stack([train[1], train[1] + 9, train[2]])
    assert data.seen_in(test, train).tolist() == [True, False, True]


def test_model_cards_carry_eval_results_the_hub_reads():
    from huggingface_hub import ModelCard

    from fermm.evaluation import cards

    model = CNNClassifier(backbone="mini")
    measured = {"dataset": "../shared/data/fer2013", "split": "test", "n": 3589, "accuracy": 0.7086,
                "accuracy_not_in_train": 0.6898, "n_not_in_train": 3301, "macro_f1": 0.7,
                "per_class": {"happy": {"precision": 0.9, "recall": 0.9, "f1": 0.9}}}
    card = ModelCard(cards.model_card("glove_cnn", model, training={"epochs": 3}, measured=measured))
    got = [(e.metric_name, e.metric_value, e.dataset_split) for e in card.data.eval_results]
    assert got == [("accuracy", 0.7086, "test"), ("accuracy on the images not also in train", 0.6898, "test")]
    assert card.data.library_name == "fermm" and "surveillance" in card.text
    assert card.text.index("Accuracy 70.9%") < card.text.index("## Training") < card.text.index("<details>")
    ens = {"teacher": "runs/ens", "alpha": 0.9, "temperature": 2}
    lineage = {**ens, "init_from_training_args": {**ens, "init_from_training_args": {"teacher": "runs/glove"}}}
    assert cards._recipe_notes(lineage) == [  # stages with one teacher and setting: one sentence
        "Two stages of its training matched the probabilities of the teacher `runs/ens` (knowledge distillation, "
        "Hinton et al. 2015: weight 0.9 on the teacher, temperature 2).",
        "A stage of its training matched the probabilities of the teacher `runs/glove` (knowledge distillation, "
        "Hinton et al. 2015: weight 0.7 on the teacher, temperature 4)."]


def test_end_to_end_script_scores_the_served_path_and_the_models_consistency(tmp_path, capsys):
    """eval/end_to_end.py on the fixture's faces: each record holds the issue's fields, its counts add up, and the
    framing and mirror agreements are fractions; the fusion of two models gets its own record."""
    import eval.end_to_end as script

    torch.manual_seed(0)
    for name, backbone in (("tiny_a", "vgg11"), ("tiny_b", "mini")):
        CNNClassifier(backbone=backbone).save_pretrained(tmp_path / name)
    out = tmp_path / "e2e"
    argv = ["--models", str(tmp_path / "tiny_a"), str(tmp_path / "tiny_b"), "--dataset", str(FER_TINY),
            "--split", "validation", "--scales", "0.9", "1.0", "1.2", "--output_dir", str(out), "--threads", "1"]
    assert script.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fused_tiny_a+tiny_b.json", "tiny_a.json", "tiny_b.json"]
    record = json.loads((out / "tiny_a.json").read_text())
    for key in ("model", "n", "detected", "detection_rate", "accuracy_direct", "accuracy_pipeline", "command",
                "commit", "seed", "date"):
        assert key in record, key
    assert record["n"] == 14 and 0 < record["detected"] <= 14 and record["detection_rate"] == round(record["detected"] / 14, 4)
    assert set(record["framing_agreement"]) == {"0.9", "1.2"} and 0 <= record["mirror_agreement_direct"] <= 1
    assert record["command"].startswith("python eval/end_to_end.py --models")
    fused = json.loads((out / "fused_tiny_a+tiny_b.json").read_text())
    assert fused["model"] == "fused" and "mirror_agreement_direct" not in fused and fused["detected"] == record["detected"]
    assert "mirrored" in capsys.readouterr().out


def test_mirror_agreement_is_whole_on_symmetric_faces_and_counts_changed_answers():
    from fermm.serve import end_to_end
    from fermm.serve.predict import ModelPool

    class Sided:
        """Says 'happy' when the left half is brighter, else 'sad' (so mirroring flips its answer)."""
        labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

        def predict_proba(self, faces, tta="none", batch_size=256):
            assert tta == "none"  # the bare model's consistency
            out = torch.zeros(len(faces), 7)
            for i, f in enumerate(faces):
                out[i, 3 if f[:, :24].mean() > f[:, 24:].mean() else 4] = 1.0
            return out

    pool = ModelPool(["sided"])
    pool._models["sided"] = Sided()
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (6, 48, 24), dtype=np.uint8)
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    sided = rng.integers(0, 256, (4, 48, 48), dtype=np.uint8)
    sided[:, :, :24] //= 4  # darker left half: mirroring makes it the brighter one
    images = np.concatenate([symmetric, sided])
    direct = end_to_end.direct_predictions(pool, ["sided"], images, "none")
    assert end_to_end.mirror_agreement(pool, ["sided"], symmetric, {"sided": direct["sided"][:6]}) == {"sided": 1.0}
    assert end_to_end.mirror_agreement(pool, ["sided"], images, direct) == {"sided": 0.6}


def test_the_results_table_says_which_precision_computed_each_row():
    """A result computed by a stored int8 graph says so; older results (no ``precision``) were fp32."""
    y = np.arange(7).repeat(3)
    probs = np.eye(7)[y] * 0.9 + 0.1 / 7
    base = {"model": "glove_cnn", "split": "test", "tta": "flip", **metrics.score(probs, y, FER7),
            "images_per_second": 10.0, "commit": "abc", "date": "2026-12-06T00:00:00Z"}
    table = metrics.markdown_table([{**base, "precision": "onnx int8"}, {**base, "model": "old", "accuracy": 0.5}])
    assert "| `glove_cnn` | test | flip | int8 (ONNX) | 100.00%" in table
    assert "| `old` | test | flip | fp32 | 50.00%" in table
    assert all(row.count("|") == table.splitlines()[0].count("|") for row in table.splitlines()[:4])


def test_run_info_keeps_the_commit_and_date_of_when_the_run_started(monkeypatch):
    """A long evaluation must not credit a commit made while it ran: RunInfo takes both when it is made."""
    monkeypatch.setattr(metrics, "git_commit", lambda: "aaaaaaa")
    run = metrics.RunInfo("python eval/x.py", 3)
    monkeypatch.setattr(metrics, "git_commit", lambda: "bbbbbbb")
    record = run.as_dict()
    assert record["commit"] == "aaaaaaa" and record["seed"] == 3 and record["command"] == "python eval/x.py"
    assert record["date"] == run.date and len(record["date"]) == 20 and record["date"].endswith("Z")
