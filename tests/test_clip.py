"""CLIP zero-shot, linear probe, LoRA fine-tuning and CoOp, proven on a small random CLIPModel with the
real CLIP BPE tokenizer (pretrained CLIP weights cannot be downloaded here)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fermm.labels import FER7
from fermm.models import load_model
from fermm.models.clip import BaseWeightsUnavailable, ClipFinetune, ClipLinear, ClipZeroShot, text_features
from fermm.models.coop import CoOp, class_names
from tests.helpers import make_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip"))


def _synthetic_fer(folder, n_per_class: int = 12, seed: int = 0):
    """A separable FER-shaped dataset: class c = stripes of period c + 2, plus noise; parquet splits."""
    from fermm.data import sources

    rng = np.random.default_rng(seed)
    splits = {}
    for split in sources.SPLITS:
        images, labels = [], []
        for c in range(7):
            for _ in range(n_per_class):
                stripes = ((np.arange(48) // (c + 2)) % 2 * 180 + 30).astype(np.float64)
                im = np.tile(stripes, (48, 1)) + rng.normal(0, 8, (48, 48))
                images.append(sources._png(np.clip(im, 0, 255).astype(np.uint8)))
                labels.append(c)
        splits[split] = sources._dataset({"image": images, "label": labels}, False, False)
    folder.mkdir(parents=True, exist_ok=True)
    for split, ds in splits.items():
        ds.to_parquet(str(folder / f"{split}.parquet"))
    return folder


def test_tokenizer_matches_open_clip(tiny_clip):
    import open_clip
    from transformers import CLIPTokenizer

    ours, theirs = CLIPTokenizer.from_pretrained(tiny_clip), open_clip.get_tokenizer("ViT-B-32")
    prompts = ["a photo of a happy face.", "A face showing SURPRISE!", "a close-up photo of a disgusted facial "
               "expression.", "X X X X contemptuous.", "naïve café, 1,000 emojis 😀", "   spaced   out   "]
    for text in prompts:
        ref = theirs([text])[0].tolist()
        assert ours(text)["input_ids"] == ref[:ref.index(49407) + 1], text


def test_zero_shot_probabilities(tiny_clip, astronaut):
    model = ClipZeroShot(base_model=tiny_clip)
    assert model.input_size == 32 and model.class_weights().shape == (7, 16)
    assert torch.allclose(model.class_weights().norm(dim=-1), torch.ones(7))
    p = model.predict_proba([astronaut, astronaut.convert("L")])
    assert p.shape == (2, 7) and torch.allclose(p.sum(-1), torch.ones(2))


def test_inference_sees_faces_exactly_as_training_did(tiny_clip, astronaut):
    """predict_proba's preprocessing equals the feature cache's / fine-tuning's (clip_input) on FER faces."""
    from fermm.models.clip_features import clip_input
    from fermm.transforms import uint8_batch

    model = ClipZeroShot(base_model=tiny_clip)
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    trained_on = clip_input(uint8_batch(faces), model.input_size, model.mean, model.std)
    assert torch.equal(model.preprocess(list(faces)), trained_on)
    big = model.preprocess([astronaut, astronaut.convert("L")])  # large crops shrink, grey becomes 3 channels
    assert big.shape == (2, 3, 32, 32) and torch.isfinite(big).all()


def test_coop_initialised_from_words_reproduces_zero_shot_text_features(tiny_clip):
    coop = CoOp(base_model=tiny_clip, n_ctx=4, ctx_init="a photo of a")
    reference = text_features(coop.clip, coop.tokenizer, [f"a photo of a {n}." for n in class_names(FER7)])
    assert torch.allclose(coop.class_weights(), reference, atol=1e-5)
    with pytest.raises(ValueError, match="is 4 tokens; n_ctx must equal that"):
        CoOp(base_model=tiny_clip, n_ctx=16, ctx_init="a photo of a")


@pytest.mark.parametrize("position", ["middle", "front"])
def test_coop_class_positions(tiny_clip, position):
    coop = CoOp(base_model=tiny_clip, n_ctx=4, position=position, class_specific=True)
    end = CoOp(base_model=tiny_clip, n_ctx=4, position="end", class_specific=True)
    with torch.no_grad():
        end.ctx.copy_(coop.ctx)
    p, q = coop.prompts(), end.prompts()
    assert p.shape == q.shape == (7, 77, coop.dim)
    assert torch.equal(p[:, 0], q[:, 0])  # SOS stays first
    assert not torch.allclose(p, q)  # the class token moved
    # same tokens, different order: the multiset of embeddings per prompt is unchanged
    assert torch.allclose(p.sum(1), q.sum(1), atol=1e-5)


def _train_argv(tiny_clip, dataset, out, extra=()):
    return ["--model_name_or_path", tiny_clip, "--dataset", str(dataset), "--output_dir", str(out),
            "--log_with", "none", "--feature_cache", str(out.parent / "cache"), *extra]


def test_coop_trains_only_the_context_and_fits_a_separable_task(tiny_clip, tmp_path):
    import train.coop as script
    from fermm.models.clip import load_clip

    dataset = _synthetic_fer(tmp_path / "synthetic")
    out = tmp_path / "coop"
    argv = _train_argv(tiny_clip, dataset, out, ["--n_ctx", "4", "--class_specific", "--epochs", "60",
                                                  "--batch_size", "28", "--optimizer", "adam", "--lr", "0.01"])
    assert script.main(argv) == 0
    history = json.loads((out / "stage_coop" / "history.json").read_text())
    assert history[-1]["train_accuracy"] > 0.95
    saved = load_model(str(out))
    assert isinstance(saved, CoOp) and sorted(p.name for p in out.iterdir() if p.is_file()) == \
        ["README.md", "config.json", "feature_cache_timing.json", "learned.safetensors", "training_args.json"]
    fresh, _ = load_clip(tiny_clip)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), saved.clip.state_dict().values()))
    assert (out / "learned.safetensors").stat().st_size < 20_000  # the context alone


def test_linear_probe_fits_a_separable_task_and_uses_the_feature_cache(tiny_clip, tmp_path):
    import train.clip as script

    dataset = _synthetic_fer(tmp_path / "synthetic")
    out = tmp_path / "linear"
    argv = _train_argv(tiny_clip, dataset, out, ["--method", "linear", "--epochs", "60", "--batch_size", "28",
                                                  "--lr", "0.05"])
    assert script.main(argv) == 0
    history = json.loads((out / "stage_linear" / "history.json").read_text())
    assert history[-1]["train_accuracy"] > 0.95
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # train + validation features
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert script.main(_train_argv(tiny_clip, dataset, tmp_path / "linear2", ["--method", "linear", "--epochs", "1"])) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == before  # read, not recomputed


def test_feature_cache_key_tracks_images_and_weights(tiny_clip):
    from fermm.models.clip_features import cache_key

    model = ClipLinear(base_model=tiny_clip)
    a = np.zeros((2, 48, 48), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert cache_key(model, a) == cache_key(model, a.copy()) != cache_key(model, b)
    with torch.no_grad():
        model.clip.visual_projection.weight.add_(1)
    assert cache_key(model, a) != cache_key(ClipLinear(base_model=tiny_clip), a)


def test_coop_adapter_round_trip_through_the_mock_hub_and_offline_cache(tiny_clip, tmp_path, mock_hub, astronaut):
    from fermm.hub import push_model_folder

    torch.manual_seed(0)
    coop = CoOp(base_model=tiny_clip, n_ctx=4)
    coop.save_with_card(tmp_path / "adapter", card="---\nlicense: mit\n---\n# coop\n")
    assert push_model_folder(tmp_path / "adapter", "me/coop") is not None
    load_model("me/coop")  # fills the cache
    mock_hub.offline()
    again = load_model("me/coop")
    x = again.preprocess([astronaut])
    assert torch.equal(again(x), coop(x))


def test_coop_load_validates_metadata(tiny_clip, tmp_path):
    CoOp(base_model=tiny_clip, n_ctx=4).save_pretrained(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["n_ctx"] = 8
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match this model"):
        load_model(str(tmp_path / "a"))


def test_lora_adapter_round_trip_and_merge_changes_no_logit(tiny_clip, tmp_path, mock_hub, astronaut):
    from fermm.hub import push_model_folder

    torch.manual_seed(0)
    model = ClipFinetune(base_model=tiny_clip, mode="lora", lora_r=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    with torch.no_grad():  # pretend training moved the adapters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    model.eval()
    x = model.preprocess([astronaut])
    expected = model(x)
    model.save_pretrained(tmp_path / "lora")
    assert all("lora_" in k or k.startswith("head.") for k in model.learned_state_dict())
    assert push_model_folder(tmp_path / "lora", "me/lora") is not None
    load_model("me/lora")
    mock_hub.offline()
    loaded = load_model("me/lora")
    assert torch.allclose(loaded(x), expected, atol=1e-6)
    loaded.merge_lora()
    assert torch.allclose(loaded(x), expected, atol=1e-5)


def test_missing_base_weights_say_so(tmp_path):
    with pytest.raises(BaseWeightsUnavailable, match="pretrained CLIP weights .* are not available here"):
        ClipZeroShot(base_model=str(tmp_path / "no-clip-here"))


def test_joint_image_text_scoring(tiny_clip, astronaut):
    model = ClipZeroShot(base_model=tiny_clip)
    faces = [astronaut, astronaut.convert("L")]
    image_only = model.predict_proba(faces)
    assert torch.equal(model.predict_proba(faces, texts=None), image_only)
    assert torch.allclose(model.predict_proba(faces, texts=["so happy"], text_weight=0), image_only)
    joint = model.predict_proba(faces, texts=["i am so happy today", "<b>this is awful</b>"])
    assert joint.shape == (2, 7) and torch.allclose(joint.sum(-1), torch.ones(2))
    # a product of experts: log p_joint - log p_image is the text's log-softmax, up to a per-row constant
    text = model.text_logits(["i am so happy today", "this is awful"]).log_softmax(-1)
    diff = joint.log() - image_only.log() - text
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-4)
    with pytest.raises(ValueError, match="one sentence or one per face"):
        model.predict_proba(faces, texts=["a", "b", "c"])
    long = model.predict_proba(faces, texts=[" ".join(["happy"] * 300)])  # > 77 tokens: truncated, not an error
    assert torch.allclose(long.sum(-1), torch.ones(2))
    one = model.predict_proba(faces, texts=["i am so happy today"])  # one sentence for every face
    assert torch.allclose(model.joint_proba(image_only, "i am so happy today"), one)
    assert torch.allclose(one[0], joint[0], atol=1e-6)


def test_clip_text_classifier_trains_saves_only_the_head(tiny_clip, tmp_path):
    import train.text as script
    from fermm.labels import TEXT6
    from tests.test_text import EMOTION_TINY

    out = tmp_path / "text_clip"
    assert script.main(["--data", "dair", "--model", "clip", "--model_name_or_path", tiny_clip, "--dataset", str(EMOTION_TINY),
                        "--output_dir", str(out), "--epochs", "2", "--batch_size", "8", "--log_with", "none"]) == 0
    model = load_model(str(out))
    assert model.labels == TEXT6 and model.base_model == tiny_clip
    p = model.predict_text(["i feel great", ""])
    assert p.shape == (2, 6) and torch.allclose(p.sum(-1), torch.ones(2))
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == ["head.bias", "head.weight"] and f.metadata()["base_model"] == tiny_clip
    from fermm.models.text import TextCLIP

    fresh = TextCLIP(base_model=tiny_clip)  # only the head can train; it has moved from its zero-shot start
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    assert not any(n.startswith("clip.vision") or n.startswith("clip.visual") for n, _ in fresh.named_parameters())
    assert not torch.allclose(model.head.weight, fresh.head.weight)
    long = " ".join(["happy"] * 300)  # longer than CLIP's 77 tokens: cut, not refused
    assert model.predict_text([long]).shape == (1, 6)


def test_app_prediction_shows_clip_joint_scores_only_with_text(tiny_clip, tmp_path, astronaut):
    from fermm.models.text import TextGRU
    from fermm.serve.predict import ModelPool, predict_image
    from fermm.serve.ui import _rows

    ClipZeroShot(base_model=tiny_clip).save_pretrained(tmp_path / "zs")
    TextGRU(vocab=["happy"], embed_dim=8, hidden=4).save_pretrained(tmp_path / "gru")
    pool = ModelPool(["clip_zeroshot"], sources={"clip_zeroshot": str(tmp_path / "zs")})
    text_pool = ModelPool(["text_gru"], sources={"text_gru": str(tmp_path / "gru")})
    plain = predict_image(astronaut, pool, ["clip_zeroshot"], text_pool=text_pool, text_model="text_gru")
    assert plain.faces and not plain.faces[0].joint
    with_text = predict_image(astronaut, pool, ["clip_zeroshot"], text="so happy", text_pool=text_pool,
                              text_model="text_gru")
    face = with_text.faces[0]
    assert face.probs == plain.faces[0].probs  # the image-only row is unchanged by the text
    assert sum(face.joint["clip_zeroshot"].values()) == pytest.approx(1.0, abs=1e-5)
    assert "clip_zeroshot + text (CLIP joint)" in [row[1] for row in _rows(with_text)]


def test_clip_cost_bench_reports_every_method(tiny_clip, tmp_path, capsys):
    import bench.clip_cost as clip_cost

    out = tmp_path / "cost.json"
    assert clip_cost.main(["--base", tiny_clip, "--batch", "4", "--steps", "1", "--json", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == set(clip_cost.METHODS)
    n = {m: r["trainable_params"] for m, r in rows.items()}
    # the linear head is 16x7+7; CoOp's context 16 tokens x 32; LoRA adds adapters; full trains the tower
    assert n["linear_cached"] == n["linear_reencode"] == 16 * 7 + 7 and n["coop_cached"] == 16 * 32
    assert n["linear_cached"] < n["coop_cached"] < n["lora"] < n["full"]
    assert "cached features is" in capsys.readouterr().out
