"""fermm.models: every backbone's forward, save/load round trips, the registry loader."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fermm.labels import FER7, FERPLUS8
from fermm.models import CLASSES, load_model, model_class
from fermm.models.cnn import BACKBONES, CNNClassifier


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_shape_and_finite(backbone):
    torch.manual_seed(0)
    model = CNNClassifier(backbone=backbone).eval()
    logits = model(torch.randn(2, 1, 48, 48))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fresh_models_loss_falls_on_one_batch(backbone):
    # without zero-initialised residual branches a fresh ResNet50's loss rose under SGD (2.15 -> 2.71 here) and
    # the real run stayed at chance for a whole epoch; every backbone must be trainable from its initialisation
    torch.manual_seed(0)
    model = CNNClassifier(backbone=backbone).train()
    x, y = torch.rand(16, 1, 48, 48) * 4 - 2, torch.arange(16) % 7
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] < 2.6 and losses[-1] < losses[0] - 0.2, losses


def test_resnet_residual_branches_start_at_zero():
    for backbone, last_bn in (("resnet18", "bn2"), ("resnet50", "bn3")):
        net = CNNClassifier(backbone=backbone).backbone
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        assert blocks and all(getattr(b, last_bn).weight.abs().sum() == 0 for b in blocks)


def test_imagenet_stem_option_and_bad_names():
    model = CNNClassifier(backbone="resnet18", stem="imagenet").eval()
    assert model(torch.randn(1, 1, 48, 48)).shape == (1, 7)
    with pytest.raises(ValueError, match="unknown backbone 'vgg19'"):
        CNNClassifier(backbone="vgg19")
    with pytest.raises(ValueError, match="unknown stem"):
        CNNClassifier(backbone="resnet18", stem="tiny")


def test_save_load_round_trip_is_exact(tmp_path, astronaut):
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11", word_dim=300, labels=FERPLUS8).eval()
    model.label_vectors.normal_()
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["fermm_class"] == "CNNClassifier" and cfg["labels"] == list(FERPLUS8) and cfg["input_size"] == 48
    loaded = load_model(str(tmp_path / "m"))
    assert isinstance(loaded, CNNClassifier) and loaded.labels == FERPLUS8
    assert torch.equal(loaded.label_vectors, model.label_vectors)
    p1, p2 = model.predict_proba([astronaut]), loaded.predict_proba([astronaut])
    assert p1.shape == (1, 8) and torch.allclose(p1.sum(-1), torch.ones(1))
    assert torch.allclose(p1, p2, atol=1e-6)  # same weights; loaded in another memory layout (below)
    conv = loaded.backbone[0][4].weight  # loaded for inference: channels_last, the faster layout on CPU
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    loaded.save_pretrained(tmp_path / "again")  # and it still saves as usual
    assert torch.equal(load_model(str(tmp_path / "again")).predict_proba([astronaut]), p2)


@pytest.mark.parametrize("backbone", ["fast", "resnet18"])
def test_onnx_runtime_matches_pytorch_and_can_be_turned_off(tmp_path, monkeypatch, astronaut, backbone):
    """Loaded for inference, a CNN predicts through ONNX Runtime with PyTorch's outputs (every TTA view,
    any batch size); FERMM_RUNTIME=torch keeps PyTorch; a bad value is refused."""
    from fermm.models.runtime import OnnxForward

    torch.manual_seed(0)
    CNNClassifier(backbone=backbone, word_dim=300).save_pretrained(tmp_path / "m")
    monkeypatch.setenv("FERMM_RUNTIME", "onnx")
    fast = load_model(str(tmp_path / "m"))
    assert isinstance(fast.fast_forward, OnnxForward)
    monkeypatch.setenv("FERMM_RUNTIME", "torch")
    plain = load_model(str(tmp_path / "m"))
    assert plain.fast_forward is None
    x = torch.rand(5, 1, 48, 48)
    for tta in ("none", "tencrop"):
        assert torch.allclose(fast.proba_from_tensor(x, tta), plain.proba_from_tensor(x, tta), atol=1e-5)
    calls = []
    numpy_proba = OnnxForward.proba
    monkeypatch.setattr(OnnxForward, "proba", lambda self, x, tta: calls.append(tta) or numpy_proba(self, x, tta))
    faces = [astronaut, astronaut.convert("L").resize((30, 40)), np.zeros((48, 48), np.uint8)]
    for tta in ("none", "flip", "tencrop"):  # face + mirror run in numpy from crop to probabilities
        got = fast.predict_proba(faces, tta=tta, batch_size=2)
        assert got.dtype == torch.float32 and torch.allclose(got, plain.predict_proba(faces, tta=tta), atol=1e-5)
    assert calls == ["none", "none", "flip", "flip"]
    with pytest.raises(ValueError, match="numpy views are none and flip, not 'tencrop'"):
        fast.fast_forward.proba(fast.preprocess_array(faces), "tencrop")
    as64 = fast.preprocess_array(faces).astype(np.float64)  # any float array: cast, made contiguous
    assert torch.allclose(fast.fast_forward.proba(as64, "flip"), plain.predict_proba(faces, tta="flip"), atol=1e-5)
    monkeypatch.setenv("FERMM_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="expected 'auto', 'torch' or 'onnx'"):
        load_model(str(tmp_path / "m"))


def test_onnx_graph_never_serves_changed_weights_copies_or_pickles(tmp_path, monkeypatch):
    """The exported graph is a snapshot: once the weights change (load_state_dict, a copy for EMA), PyTorch
    answers instead; copies and pickles carry no session."""
    import copy
    import pickle

    torch.manual_seed(0)
    monkeypatch.setenv("FERMM_RUNTIME", "onnx")
    model = CNNClassifier(backbone="fast").for_inference()
    x = torch.rand(3, 1, 48, 48)
    assert model.fast_forward.serves(model, x)
    other = CNNClassifier(backbone="fast").eval()
    model.load_state_dict(other.state_dict())
    assert not model.fast_forward.serves(model, x)
    assert torch.allclose(model.proba_from_tensor(x), other.proba_from_tensor(x), atol=1e-6)
    assert copy.deepcopy(model).fast_forward is None
    assert pickle.loads(pickle.dumps(model)).fast_forward is None


@pytest.mark.parametrize("change", ["in_place", "assign_state", "new_layer", "new_parameter", "new_buffer",
                                    "dict_write", "delete_and_set", "to_double"])
def test_onnx_graph_stops_serving_once_tensors_change_or_are_replaced(monkeypatch, change):
    """The graph keeps the dicts holding the module's tensors (walking the module costs ~0.15 ms a call) and walks
    again after any registration, so changing tensors in place and replacing them must both hand the forward back
    to PyTorch. Every replacement is built before the graph's first check, so its own registration cannot help."""
    torch.manual_seed(0)
    monkeypatch.setenv("FERMM_RUNTIME", "onnx")
    model = CNNClassifier(backbone="fast").for_inference()
    state, layer = CNNClassifier(backbone="fast").state_dict(), torch.nn.Linear(model.classifier.in_features, 7)
    bias, running_mean = torch.nn.Parameter(torch.zeros(7)), torch.ones_like(model.backbone[0][1].running_mean)
    x = torch.rand(2, 1, 48, 48)
    assert model.fast_forward.serves(model, x)
    if change == "in_place":
        with torch.no_grad():
            model.classifier.weight.add_(1)
    elif change == "assign_state":
        model.load_state_dict(state, assign=True)
    elif change == "new_layer":
        model.classifier = layer
    elif change == "new_parameter":
        model.classifier.bias = bias
    elif change == "new_buffer":
        model.backbone[0][1].running_mean = running_mean
    elif change == "dict_write":  # as accelerate's set_module_tensor_to_device does: no registration hook
        model.classifier._parameters["bias"] = bias
    elif change == "delete_and_set":
        del model.classifier.bias
        model.classifier.bias = bias
    else:
        model.double()
    x = x.to(next(model.parameters()).dtype)
    assert not model.fast_forward.serves(model, x)
    with torch.no_grad():
        want = model(x).softmax(-1).float()
    assert torch.allclose(model.proba_from_tensor(x), want, atol=1e-6)


def test_without_onnxruntime_the_model_runs_in_pytorch(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ort)
    monkeypatch.setenv("FERMM_RUNTIME", "onnx")
    with caplog.at_level("WARNING", logger="fermm.models.runtime"):
        model = CNNClassifier(backbone="fast").for_inference()
    assert model.fast_forward is None and "running in PyTorch" in caplog.text
    assert model.predict_proba([np.zeros((48, 48), np.uint8)]).shape == (1, 7)


def test_fp16_save_is_close_and_keeps_the_model_fp32(tmp_path, astronaut):
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()
    model.save_with_card(tmp_path / "m", card="# card", training_args={"lr": 0.1}, fp16=True)
    assert next(model.parameters()).dtype == torch.float32
    loaded = load_model(str(tmp_path / "m"))
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.allclose(model.predict_proba([astronaut]), loaded.predict_proba([astronaut]), atol=2e-3)
    assert (tmp_path / "m" / "README.md").read_text() == "# card"
    assert json.loads((tmp_path / "m" / "training_args.json").read_text()) == {"lr": 0.1}


def test_load_validates(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text(json.dumps({"fermm_class": "Mystery"}))
    with pytest.raises(ValueError, match="names model class 'Mystery'"):
        model_class(tmp_path / "x")
    # weights of another architecture do not load silently
    CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / "v")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    cfg["backbone"] = "resnet18"
    (tmp_path / "v" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        load_model(str(tmp_path / "v"))
    assert "CNNClassifier" in CLASSES


def test_predict_proba_batches_and_empty(astronaut):
    model = CNNClassifier(backbone="vgg11").eval()
    p = model.predict_proba([astronaut] * 5, batch_size=2)
    assert p.shape == (5, 7) and torch.allclose(p[0], p[4])
    assert model.predict_proba([]).shape == (0, 7)
    flip = model.predict_proba([astronaut], tta="flip")
    assert torch.allclose(flip.sum(-1), torch.ones(1))


def test_zero_shot_scores_unseen_labels():
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11", word_dim=16, labels=FER7).eval()
    x = torch.randn(3, 1, 48, 48)
    assert model.zero_shot_logits(x).shape == (3, 7)
    extra = torch.randn(8, 16)  # e.g. FER+ labels incl. contempt
    logits = model.zero_shot_logits(x, extra)
    assert logits.shape == (3, 8) and logits.abs().max() <= 1 / model.tau + 1e-4  # cosine / tau


def test_ensemble_averages_members_and_round_trips(tmp_path, astronaut):
    from fermm.models.ensemble import EnsembleClassifier

    torch.manual_seed(0)
    for name in ("a", "b"):
        CNNClassifier(backbone="vgg11").save_pretrained(tmp_path / name)
    members = [str(tmp_path / "a"), str(tmp_path / "b")]
    ens = EnsembleClassifier(members=members, weights=[3, 1])
    pa, pb = (load_model(m).predict_proba([astronaut]) for m in members)
    assert torch.allclose(ens.predict_proba([astronaut]), 0.75 * pa + 0.25 * pb, atol=1e-6)
    ens.save_pretrained(tmp_path / "ens")
    assert not (tmp_path / "ens" / "model.safetensors").exists()
    again = load_model(str(tmp_path / "ens"))
    assert torch.allclose(again.predict_proba([astronaut]), ens.predict_proba([astronaut]))
    with pytest.raises(ValueError, match="2 members but 1 weights"):
        EnsembleClassifier(members=members, weights=[1])


def test_ensemble_refuses_a_member_that_changed_since_selection(tmp_path):
    """A member path that now holds another model (e.g. a bundle replaced by a student) is refused on load."""
    import json

    from fermm.models import fingerprint
    from fermm.models.ensemble import EnsembleClassifier

    torch.manual_seed(0)
    for name in ("a", "b"):
        CNNClassifier(backbone="mini").save_pretrained(tmp_path / name)
    members = [str(tmp_path / "a"), str(tmp_path / "b")]
    EnsembleClassifier(members=members).save_pretrained(tmp_path / "ens")
    recorded = json.loads((tmp_path / "ens" / "config.json").read_text())["member_sha256"]
    assert recorded == [fingerprint(m) for m in members] and recorded[0] != recorded[1]
    load_model(str(tmp_path / "ens"))  # unchanged: loads
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "b")  # new weights at the same path
    with pytest.raises(ValueError, match=f"member\\(s\\) {tmp_path / 'b'} no longer hold"):
        load_model(str(tmp_path / "ens"))


def test_greedy_selection_picks_what_helps_on_held_out_data():
    import numpy as np

    from fermm.models.ensemble import greedy_weights

    y = np.array([0, 0, 1, 1])
    good = np.eye(7)[[0, 0, 1, 1]] * 0.9 + 0.01  # right everywhere
    half = np.eye(7)[[0, 0, 2, 2]] * 0.9 + 0.01  # right on the first two only
    wrong = np.eye(7)[[3, 3, 3, 3]] * 0.9 + 0.01
    assert greedy_weights([wrong, half, good], y, rounds=5) == [0, 0, 1]  # more picks never beat 100%
    # complementary members: together right where each alone is half right
    left, right = np.eye(7)[[0, 0, 2, 2]] * 0.6 + 0.01, np.eye(7)[[3, 3, 1, 1]] * 0.6 + 0.01
    left[:, 3], right[:, 0] = 0.2, 0.3
    left[2:, 1] = 0.5
    assert greedy_weights([left, right], y, rounds=6) == [1, 1]
    with pytest.raises(ValueError, match="no member"):
        greedy_weights([], y)


def test_ensemble_script_selects_on_validation_and_saves_a_loadable_ensemble(tmp_path, astronaut):
    from conftest import FER_TINY

    import eval.ensemble as script

    torch.manual_seed(0)
    for name in ("a", "b"):
        CNNClassifier(backbone="mini").save_pretrained(tmp_path / name)
    members = [str(tmp_path / "a"), str(tmp_path / "b")]
    out = tmp_path / "ens"
    assert script.main(["--members", *members, "--output_dir", str(out), "--dataset", str(FER_TINY),
                        "--rounds", "4"]) == 0
    record = json.loads((out / "selection.json").read_text())
    assert 1 <= sum(record["members"].values()) <= 4 and set(record["member_validation_accuracy"]) == set(members)
    assert record["validation_accuracy"] >= max(record["member_validation_accuracy"].values())
    assert record["member_precision"] == {m: "torch fp32" for m in members}  # no int8 graph in these folders
    ens = load_model(str(out))
    assert ens.predict_proba([astronaut]).shape == (1, 7)
    assert ens.member_sources == [m for m in members if record["members"][m]]


def test_bundle_writes_fp16_checkpoint_with_card(tmp_path, astronaut):
    from fermm.__main__ import main

    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()
    model.save_with_card(tmp_path / "run", training_args={"epochs": 3})
    assert main(["bundle", str(tmp_path / "run"), "--name", "base_cnn", "--checkpoints", str(tmp_path / "ck")]) == 0
    folder = tmp_path / "ck" / "base_cnn"
    size = (folder / "model.safetensors").stat().st_size
    assert size < (tmp_path / "run" / "model.safetensors").stat().st_size * 0.6  # fp16
    assert "Out-of-scope uses" in (folder / "README.md").read_text()
    assert torch.allclose(load_model(str(folder)).predict_proba([astronaut]), model.predict_proba([astronaut]),
                          atol=2e-3)


def test_bundle_card_shows_only_this_models_results_and_replaces_the_folder_whole(tmp_path, monkeypatch):
    """A result named like the bundle but measured on another model stays out of the card (the run's
    validation history is shown instead); a result fingerprinted as this run goes in; nothing of the old
    bundle lingers."""
    import json

    from fermm.__main__ import main
    from fermm.evaluation import cards
    from fermm.models import fingerprint

    monkeypatch.setattr(cards, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "results").mkdir()
    torch.manual_seed(0)
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "run")
    (tmp_path / "run" / "stage_ce").mkdir()
    (tmp_path / "run" / "stage_ce" / "history.json").write_text(json.dumps([{"epoch": 0, "val_accuracy": 0.4321}]))
    old = tmp_path / "ck" / "base_cnn"
    CNNClassifier(backbone="mini").save_with_card(old, training_args={"epochs": 99})
    result = {"model": "base_cnn", "dataset": "fer", "split": "test", "tta": "none", "n": 10, "accuracy": 0.9876,
              "model_sha256": fingerprint(old), "per_class": {}}
    (tmp_path / "results" / "base_cnn.json").write_text(json.dumps(result))
    args = ["bundle", str(tmp_path / "run"), "--name", "base_cnn", "--checkpoints", str(tmp_path / "ck")]
    assert main(args) == 0
    card = (old / "README.md").read_text()
    assert "0.9876" not in card and "during training: 0.4321 at epoch 1" in card
    assert not (old / "training_args.json").exists()  # the old bundle's, describing another model
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["base_cnn"]  # no .tmp / .old left
    bundled = {**result, "accuracy": 0.5555, "model_sha256": fingerprint(old)}  # the new bundle evaluated (fp16)
    (tmp_path / "results" / "base_cnn.json").write_text(json.dumps(bundled))
    assert main(args) == 0  # bundling again writes the same bytes, so the bundle's own result is its card's
    assert "- accuracy: 0.5555" in (old / "README.md").read_text()
    result["model_sha256"] = fingerprint(tmp_path / "run")
    (tmp_path / "results" / "run.json").write_text(json.dumps(result))
    assert main(args) == 0
    assert "- accuracy: 0.9876" in (old / "README.md").read_text()


def test_bundle_min_gain_gates_on_validation_and_keeps_the_incumbent(tmp_path, capsys):
    from fermm.__main__ import main
    from tests.conftest import FER_TINY

    torch.manual_seed(0)
    CNNClassifier(backbone="mini").eval().save_with_card(tmp_path / "old")
    torch.manual_seed(1)
    CNNClassifier(backbone="mini").eval().save_with_card(tmp_path / "new")
    ck = ["--name", "base_cnn", "--checkpoints", str(tmp_path / "ck")]
    assert main(["bundle", str(tmp_path / "old"), *ck, "--min_gain", "0.3", "--dataset", str(FER_TINY)]) == 0
    assert "holds no model yet" in capsys.readouterr().out  # nothing bundled yet: nothing to gate against
    before = (tmp_path / "ck" / "base_cnn" / "model.safetensors").read_bytes()

    # the same weights again: a gain of exactly zero, under any positive margin
    assert main(["bundle", str(tmp_path / "old"), *ck, "--min_gain", "0.3", "--dataset", str(FER_TINY)]) == 1
    out = capsys.readouterr()
    assert "+0.00 points, +0 of" in out.out and "not bundled" in out.err
    assert f"{tmp_path / 'ck' / 'base_cnn'} is unchanged" in out.err
    assert (tmp_path / "ck" / "base_cnn" / "model.safetensors").read_bytes() == before

    # another label set: refused whatever the accuracies, as the app's labels would change under it
    torch.manual_seed(2)
    CNNClassifier(backbone="mini", labels=FERPLUS8).eval().save_with_card(tmp_path / "plus")
    assert main(["bundle", str(tmp_path / "plus"), *ck, "--min_gain", "-100", "--dataset", str(FER_TINY)]) == 1
    assert "would change label set" in capsys.readouterr().err
    assert (tmp_path / "ck" / "base_cnn" / "model.safetensors").read_bytes() == before

    # a margin of -100 points lets any run through, and the new weights replace the old
    assert main(["bundle", str(tmp_path / "new"), *ck, "--min_gain", "-100", "--dataset", str(FER_TINY)]) == 0
    assert (tmp_path / "ck" / "base_cnn" / "model.safetensors").read_bytes() != before


def test_validation_gain_matches_direct_accuracies(tmp_path):
    from fermm.evaluation.evaluator import labels_for, load_split, predict_split, validation_gain
    from tests.conftest import FER_TINY

    torch.manual_seed(0)
    a = CNNClassifier(backbone="mini").eval()
    torch.manual_seed(1)
    b = CNNClassifier(backbone="mini").eval()
    split = load_split(str(FER_TINY), "validation")
    acc = {m: float((predict_split(m, split["images"], "none")[0].argmax(1) == labels_for(m, split["labels"])).mean())
           for m in (a, b)}
    g = validation_gain(a, b, str(FER_TINY), fp16=False)
    assert g["n"] == len(split["labels"]) and g["candidate"] == pytest.approx(acc[a])
    assert g["incumbent"] == pytest.approx(acc[b])
    assert g["gain_points"] == pytest.approx(100 * (acc[a] - acc[b]))
    assert g["gain_images"] == round((acc[a] - acc[b]) * g["n"])
    # as shipped: the candidate's weights rounded to fp16 give the accuracy of its fp16 bundle
    a.save_with_card(tmp_path / "a16", fp16=True)
    assert validation_gain(a, b, str(FER_TINY))["candidate"] == pytest.approx(
        validation_gain(load_model(str(tmp_path / "a16")), b, str(FER_TINY), fp16=False)["candidate"])


@pytest.mark.parametrize("name", ["glove_cnn", "fast_cnn"])
def test_bundled_checkpoints_load_offline_and_predict(name, astronaut, monkeypatch):
    """What `python app.py` serves on a fresh machine: the shipped fp16 folders, found by registry name."""
    from fermm.models.registry import CHECKPOINTS, resolve

    monkeypatch.delenv(f"FERMM_MODEL_{name.upper()}", raising=False)
    assert resolve(name) == str(CHECKPOINTS / name)
    model = load_model(name)
    assert list(model.labels) == list(FER7)
    p = model.predict_proba([astronaut, astronaut.convert("L")])
    assert p.shape == (2, 7) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(p[0], p[1], atol=1e-4)  # grey models: a colour photo reads as its grey version
    assert float(p.max()) > 0.3  # a trained decision, not a near-uniform output


def test_resolution_order_explicit_then_environment_then_sources_file_then_checkpoints(tmp_path, monkeypatch):
    from fermm.models import registry

    monkeypatch.setattr(registry, "CHECKPOINTS", tmp_path / "ck")
    monkeypatch.setenv("FERMM_SOURCES", str(tmp_path / "model_sources.json"))
    monkeypatch.delenv("FERMM_MODEL_BASE_CNN", raising=False)
    with pytest.raises(FileNotFoundError, match="no bundled checkpoint and no source configured"):
        registry.resolve("base_cnn")  # fermm owns no Hub namespace: nothing is guessed
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "ck" / "base_cnn")
    assert registry.resolve("base_cnn") == str(tmp_path / "ck" / "base_cnn")  # the bundled folder
    (tmp_path / "model_sources.json").write_text(json.dumps({"base_cnn": "me/file-cnn@abc123"}))
    assert registry.resolve("base_cnn") == "me/file-cnn@abc123"  # the sources file beats the bundle
    monkeypatch.setenv("FERMM_MODEL_BASE_CNN", "me/my-cnn")
    assert registry.resolve("base_cnn") == "me/my-cnn"  # the environment beats the file
    assert registry.resolve("base_cnn", "runs/x") == "runs/x"  # an explicit source beats everything
    (tmp_path / "model_sources.json").write_text("[1, 2]")
    monkeypatch.delenv("FERMM_MODEL_BASE_CNN")
    with pytest.raises(ValueError, match="expected"):
        registry.resolve("base_cnn")


def test_a_source_is_pinned_to_its_revision(monkeypatch, tmp_path):
    from fermm import hub

    calls = []
    monkeypatch.setattr(hub, "snapshot_download", lambda repo, **kw: calls.append((repo, kw["revision"])) or tmp_path)
    assert hub.fetch_folder("me/cnn@0123abc") == tmp_path and hub.fetch_folder("me/cnn") == tmp_path
    assert calls == [("me/cnn", "0123abc"), ("me/cnn", None)]
    assert hub.split_revision("me/cnn@v1.0") == ("me/cnn", "v1.0")


def test_no_pickle_is_ever_read(monkeypatch, astronaut):
    """Every bundled model loads and predicts with pickle and torch.load made to fail: safetensors only."""
    import pickle

    from fermm.models import list_models
    from fermm.paths import CHECKPOINTS

    def refuse(*a, **k):
        raise AssertionError("a pickle was read")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    bundled = [n for n in list_models() + list_models("text") if (CHECKPOINTS / n / "config.json").exists()]
    assert {"glove_cnn", "fast_cnn", "text_gru", "text_minilm"} <= set(bundled)
    for name in bundled:
        if name == "clip_zeroshot":
            continue  # its weights are pretrained CLIP's, from the Hub
        model = load_model(name)
        out = model.predict_text(["so happy"]) if name.startswith("text") else model.predict_proba([astronaut])
        assert torch.isfinite(out).all()




@pytest.mark.parametrize("backbone", ["wrn16_4", "xception"])
def test_new_families_save_and_load_to_the_same_outputs(backbone, tmp_path):
    from fermm.models import load_model

    torch.manual_seed(0)
    model = CNNClassifier(backbone=backbone).eval()
    model.save_with_card(tmp_path / backbone, card="# test", training_args={"backbone": backbone})
    again = load_model(str(tmp_path / backbone)).eval()
    x = torch.rand(3, 1, 48, 48)
    with torch.inference_mode():
        assert torch.allclose(model(x), again(x), atol=1e-6)


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if not b.startswith("resnet")])
def test_grad_cam_hooks_the_last_feature_map_not_the_first_conv(backbone):
    model = CNNClassifier(backbone=backbone).eval()
    seen = []
    handle = model.cam_layer().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.rand(1, 1, 48, 48))
    handle.remove()
    assert len(seen) == 1 and seen[0][-1] <= 6  # a coarse map (3x3 or 6x6), not the 48x48 stem
