"""fermm.training.loop / fermm.training.tasks: losses against hand computation, exact resume, the scripts end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fermm.models import load_model
from fermm.models.cnn import CNNClassifier
from fermm.training.loop import TrainConfig, Trainer
from fermm.training.tasks import ImageTask, MixConfig, blend_targets, contrastive_loss, mix_batch, soft_cross_entropy
from fermm.transforms import AugmentConfig
from tests.conftest import FER_TINY


def test_contrastive_loss_matches_hand_computation():
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    u = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    tau, lam = 0.5, 0.75
    s = [[sum(a * b for a, b in zip(v[i].tolist(), u[k].tolist())) / tau for k in range(3)] for i in range(3)]
    total = 0.0
    for i in range(3):
        v2u = -math.log(math.exp(s[i][i]) / sum(math.exp(s[i][k]) for k in range(3)))
        u2v = -math.log(math.exp(s[i][i]) / sum(math.exp(s[k][i]) for k in range(3)))
        total += lam * v2u + (1 - lam) * u2v
    assert contrastive_loss(v, u, tau, lam).item() == pytest.approx(total / 3, rel=1e-6)


def test_soft_cross_entropy_equals_torch_on_one_hot_and_weights():
    logits = torch.randn(6, 7)
    y = torch.tensor([0, 1, 2, 3, 4, 6])
    onehot = torch.nn.functional.one_hot(y, 7).float()
    assert soft_cross_entropy(logits, onehot).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    w = torch.arange(1, 8).float()
    assert soft_cross_entropy(logits, onehot, w).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, weight=w).item(), rel=1e-6)


def test_mix_batch_keeps_target_mass():
    x, t = torch.rand(16, 1, 48, 48), torch.nn.functional.one_hot(torch.arange(16) % 7, 7).float()
    for cfg in (MixConfig(mixup_alpha=0.4, prob=1.0), MixConfig(cutmix_alpha=1.0, prob=1.0)):
        xm, tm = mix_batch(x, t, cfg, torch.Generator().manual_seed(0))
        assert xm.shape == x.shape and torch.allclose(tm.sum(-1), torch.ones(16))
        assert not torch.equal(tm, t)


def test_blend_targets_mixes_one_hot_with_votes_and_keeps_unvoted_rows():
    labels = np.array([0, 3, 6])
    soft = np.array([[0.5, 0, 0, 0, 0, 0, 0.5], [0, 0, 0, 1.0, 0, 0, 0], [0] * 7], dtype=np.float32)
    t = blend_targets(labels, soft, 0.4, 7)
    assert np.allclose(t.sum(1), 1) and np.allclose(t[0, [0, 6]], [0.8, 0.2])
    assert np.array_equal(t[1], np.eye(7)[3]) and np.array_equal(t[2], np.eye(7)[6])  # agreeing / no votes
    assert np.array_equal(blend_targets(labels, soft, 0.0, 7), np.eye(7, dtype=np.float32)[labels])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        blend_targets(labels, soft, 1.5, 7)
    with pytest.raises(ValueError, match="shape"):
        blend_targets(labels, soft[:, :6], 0.5, 7)


def test_image_task_trains_on_the_targets_it_is_given(fer_tiny):
    from fermm import data

    x, y = data.to_arrays(fer_tiny["train"])
    votes = data.ferplus_fer7_targets(fer_tiny["train"])
    targets = blend_targets(y, votes, 0.5, 7)
    task = ImageTask((x, y), (x, y), 7, (0.5,), (0.25,), aug=None, targets=targets)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).numpy()
    _, t = next(task.batches(0, 8, gen))
    assert torch.allclose(t, torch.from_numpy(targets[order[:8]]))
    assert not torch.equal(t, torch.nn.functional.one_hot(torch.from_numpy(y[order[:8]]), 7).float())


def test_cosine_warmup_schedule():
    """The loop's schedule is transformers' linear warmup then cosine decay to 0."""
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.25) and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.01


def _tiny_task(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 255, (96, 48, 48), dtype=np.uint8), rng.integers(0, 7, 96)
    return ImageTask((x, y), (x[:32], y[:32]), 7, (0.5,), (0.25,), aug=AugmentConfig(),
                     mix=MixConfig(mixup_alpha=0.2))


def _run(out, fail_after_epoch=None, ema=0.0, extra=None):
    torch.manual_seed(0)
    task = _tiny_task()
    if fail_after_epoch is not None:
        validate, calls = task.validate, []

        def failing(model):
            calls.append(1)
            if len(calls) > (fail_after_epoch + 1) * (2 if ema else 1):  # with EMA: live and averaged weights
                raise KeyboardInterrupt  # the process is killed mid-run
            return validate(model)
        task.validate = failing
    cfg = TrainConfig(output_dir=str(out), epochs=3, batch_size=16, log_with="none", ema_decay=ema, extra=extra or {})
    trainer = Trainer(CNNClassifier(backbone="vgg11"), task, cfg, task.steps_per_epoch(16))
    trainer.resume()
    try:
        trainer.fit()
    except KeyboardInterrupt:
        return None
    return trainer


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
def test_resume_after_interruption_ends_in_the_same_state(tmp_path, ema):
    straight = _run(tmp_path / "a", ema=ema)
    assert _run(tmp_path / "b", fail_after_epoch=1, ema=ema) is None
    resumed = _run(tmp_path / "b", ema=ema)
    assert resumed.start_epoch == 2  # epochs 0 and 1 were not redone
    a = straight.acc.unwrap_model(straight.model).state_dict()
    b = resumed.acc.unwrap_model(resumed.model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if ema:
        ea, eb = straight.ema.state_dict(), resumed.ema.state_dict()
        assert all(torch.equal(ea[k], eb[k]) for k in ea) and int(ea["n_averaged"]) == 3 * 6
        assert not torch.equal(ea["module.classifier.weight"], a["classifier.weight"])  # an average, not a copy
    assert straight.history == [{**h, "epoch_seconds": straight.history[i]["epoch_seconds"],
                                 "images_per_second": straight.history[i]["images_per_second"]}
                                for i, h in enumerate(resumed.history)]


def test_a_run_synced_to_the_hub_resumes_on_another_machine_in_the_same_state(tmp_path, mock_hub):
    """--sync_to_hub: each epoch's state goes to the Hub (not the logs, not a half-written save; an interrupted run
    still pushes its last finished epoch); a machine without the run folder restores it and resumes from there,
    ending as an uninterrupted run does."""
    import shutil

    from fermm.training import sync

    straight = _run(tmp_path / "a")
    out, extra = tmp_path / "b", {"sync_to_hub": "me/run-state", "output_dir": str(tmp_path / "b")}
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "events.out").write_text("tensorboard")
    (out / "last.tmp").mkdir()
    (out / "last.tmp" / "half.safetensors").write_text("interrupted save")
    assert _run(out, fail_after_epoch=1, extra=extra) is None  # killed while validating epoch 2
    pushed = mock_hub.repos[("model", "me/run-state")]
    assert json.loads(pushed["last/trainer.json"])["epoch"] == 1 and "best/model.safetensors" in pushed
    assert not any(p.startswith(("logs/", "last.tmp/", "sync.tmp/")) for p in pushed)

    shutil.rmtree(out)  # another machine: no run folder, and a new process
    sync._runs.clear()
    resumed = _run(out, extra=extra)
    assert resumed.start_epoch == 2  # restored from the Hub: epochs 0 and 1 were not redone
    a = straight.acc.unwrap_model(straight.model).state_dict()
    b = resumed.acc.unwrap_model(resumed.model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(mock_hub.repos[("model", "me/run-state")]["last/trainer.json"])["epoch"] == 2


def _state(folder, stages: dict):
    for stage, epoch in stages.items():
        (folder / stage / "last").mkdir(parents=True, exist_ok=True)
        (folder / stage / "last" / "trainer.json").write_text(json.dumps({"epoch": epoch}))
        (folder / stage / "history.json").write_text(json.dumps([{"epoch": e} for e in range(epoch + 1)]))


def test_sync_restores_only_a_folder_behind_the_hub_and_refuses_a_diverged_one(tmp_path, mock_hub):
    """Progress is compared stage by stage: a folder behind the Hub (an old machine, a stage missing) is brought
    up to date, one ahead goes on and pushes, and a folder that went further in one stage and less far in another
    stops the run instead of overwriting the Hub."""
    from fermm.training.sync import RunSync, progress

    hub_side = tmp_path / "first"
    _state(hub_side, {"stage_contrastive": 4, "stage_finetune": 6})
    (hub_side / "notes.txt").write_text("not run state")
    first = RunSync("me/glove-run", hub_side)
    first.push("epoch 7")
    assert first.flush() and sorted(mock_hub.repos[("model", "me/glove-run")]) == [
        "stage_contrastive/history.json", "stage_contrastive/last/trainer.json",
        "stage_finetune/history.json", "stage_finetune/last/trainer.json"]

    behind = tmp_path / "old_machine"
    _state(behind, {"stage_contrastive": 4, "stage_finetune": 2})
    assert RunSync("me/glove-run", behind).restore()
    assert progress(behind) == {"stage_contrastive": 4, "stage_finetune": 6}
    assert not (behind / "restore.tmp").exists()

    further = tmp_path / "further"
    _state(further, {"stage_contrastive": 4, "stage_finetune": 8})
    assert not RunSync("me/glove-run", further).restore() and progress(further)["stage_finetune"] == 8

    diverged = tmp_path / "diverged"
    _state(diverged, {"stage_contrastive": 5})
    with pytest.raises(OSError, match="have diverged"):  # one line from the scripts (fermm.cli)
        RunSync("me/glove-run", diverged).restore()
    assert progress(diverged) == {"stage_contrastive": 5}  # nothing overwritten


def test_sync_failures_are_said_in_words_and_a_failed_push_does_not_stop_training(tmp_path, mock_hub, caplog):
    from fermm.training import sync

    mock_hub.fail_commits = True
    extra = {"sync_to_hub": "me/refused", "output_dir": str(tmp_path / "c")}
    with caplog.at_level("WARNING", logger="fermm.training.sync"):
        trained = _run(tmp_path / "c", extra=extra)
    assert len(trained.history) == 3 and (tmp_path / "c" / "last" / "trainer.json").exists()
    assert "sync to me/refused failed (HfHubHTTPError" in caplog.text and "the local run in" in caplog.text
    assert sync.first_line(TimeoutError()) == "TimeoutError"  # an error with no message is still one line
    mock_hub.offline()  # a fresh machine that cannot reach the Hub must not start the run afresh
    with pytest.raises(ConnectionError, match="run again when the Hub can be reached"):
        sync.RunSync("me/refused", tmp_path / "d").restore()


def test_with_ema_the_better_of_live_and_averaged_weights_is_kept(tmp_path):
    torch.manual_seed(0)
    task, saved = _tiny_task(), []
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=2, batch_size=16, log_with="none", ema_decay=0.9)
    trainer = Trainer(CNNClassifier(backbone="fast"), task, cfg, task.steps_per_epoch(16),
                      save_best=lambda model, folder, row: saved.append(model))
    # the averaged weights score 0.2, the live ones 0.6 in epoch 0 and 0.1 in epoch 1
    scores = iter([0.6, 0.2, 0.1, 0.2])
    task.validate = lambda model: {"accuracy": next(scores), "loss": 1.0}
    result = trainer.fit()
    first, second = result.history
    assert (first["val_accuracy"], first["val_accuracy_live"], first["val_accuracy_ema"], first["selected_ema"]) == \
        (0.6, 0.6, 0.2, False)
    assert (second["val_accuracy"], second["selected_ema"]) == (0.2, True)
    assert (result.best_accuracy, result.best_epoch) == (0.6, 0) and saved == [trainer.raw_model]


def _capture_finish(monkeypatch):
    from fermm.training import image as image_training

    captured = {}
    real = image_training.finish

    def finish(model, args, name):
        captured["model"], captured["name"] = model, name
        return real(model, args, name)
    monkeypatch.setattr(image_training, "finish", finish)
    return captured


@pytest.mark.parametrize("extra", [["--base"], ["--pretrain_epochs", "1", "--freeze_backbone", "--ferplus_soft", "0.5"]],
                         ids=["base", "glove"])
def test_glove_cnn_script_lands_a_checkpoint_equal_to_the_in_memory_model(tmp_path, monkeypatch, extra,
                                                                          astronaut):
    import train.glove_cnn as script

    captured = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    argv = ["--dataset", str(FER_TINY), "--output_dir", str(out), "--epochs", "2", "--batch_size", "8",
            "--log_with", "none", *extra]
    assert script.main(argv) == 0
    saved = load_model(str(out))
    in_memory = captured["model"].eval()
    # same weights; the loaded model runs in ONNX Runtime (fermm.models.runtime), hence float rounding only
    assert torch.allclose(saved.predict_proba([astronaut]), in_memory.predict_proba([astronaut]), atol=1e-5)
    card = (out / "README.md").read_text()
    assert "Out-of-scope uses" in card and "surveillance" in card and "Validation" in card
    assert captured["name"] == ("base_vgg11" if "--base" in extra else "glove_vgg11")
    assert ("FER+ vote distribution" in card) == ("--ferplus_soft" in extra)
    if "--freeze_backbone" in extra:  # only the classifier moved in stage 2
        pre = load_model(str(out / "stage_contrastive" / "best"))
        assert all(torch.equal(a, b) for a, b in zip(pre.backbone.state_dict().values(),
                                                     saved.backbone.state_dict().values()))
        assert not torch.equal(pre.classifier.weight, saved.classifier.weight)


def test_init_from_continues_a_saved_model_and_refuses_a_mismatch(tmp_path):
    """--init_from starts from the saved weights (lr 0: no parameter moves; batch-norm statistics do) and skips
    the contrastive stage."""
    import train.glove_cnn as script

    torch.manual_seed(0)
    start = CNNClassifier(backbone="mini", word_dim=300)
    start.save_pretrained(tmp_path / "start")
    common = ["--dataset", str(FER_TINY), "--epochs", "1", "--batch_size", "8", "--log_with", "none",
              "--init_from", str(tmp_path / "start")]
    out = tmp_path / "cont"
    assert script.main([*common, "--backbone", "mini", "--lr", "0", "--finetune_lr", "0", "--warmup_epochs", "0",
                        "--output_dir", str(out)]) == 0
    assert not (out / "stage_contrastive").exists() and (out / "stage_finetune" / "history.json").exists()
    (tmp_path / "start" / "training_args.json").write_text('{"lr": 0.05}')  # a run's own record, nested below
    out2 = tmp_path / "cont2"
    assert script.main([*common, "--backbone", "mini", "--epochs", "1", "--output_dir", str(out2)]) == 0
    record = json.loads((out2 / "training_args.json").read_text())
    assert record["init_from_training_args"] == {"lr": 0.05} and "init_from_training_args" in (out2 / "README.md").read_text()
    saved = dict(load_model(str(out)).named_parameters())
    assert all(torch.equal(saved[k], v) for k, v in start.named_parameters())
    with pytest.raises(ValueError, match="is a mini, whose weights do not fit --backbone vgg11: .* tensors differ"):
        script.main([*common, "--backbone", "vgg11", "--output_dir", str(tmp_path / "wrong")])
    with pytest.raises(ValueError, match="is a mini .* but this run asks for --backbone mini --stem imagenet"):
        script.main([*common, "--backbone", "mini", "--stem", "imagenet", "--output_dir", str(tmp_path / "w2")])
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="no word-vector head"):
        script.main([*common[:-1], str(tmp_path / "plain"), "--backbone", "mini", "--output_dir", str(tmp_path / "p")])


def test_init_from_moves_weights_into_another_shape_they_fit(tmp_path):
    """``fast`` warm-starts ``fast2`` (the same tensors; its first pool becomes the first conv's stride) with its
    own config (dropout, word-vector head); weights that do not fit are refused by name."""
    import argparse

    from fermm.training.image import warm_start

    torch.manual_seed(0)
    start = CNNClassifier(backbone="fast", word_dim=300, dropout=0.1)
    start.save_pretrained(tmp_path / "fast")
    model = warm_start(argparse.Namespace(init_from=str(tmp_path / "fast"), backbone="fast2", stem="small"))
    assert (model.backbone_name, model.dropout.p, model.word_dim) == ("fast2", 0.1, 300)
    assert start.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.state_dict().items())
    x = torch.rand(2, 1, 48, 48)
    conv = model.backbone[0][0]
    with torch.no_grad():  # fast2's first block is fast's conv at stride 2; fast pools its stride-1 output instead
        assert torch.allclose(model.backbone[0][:3].eval()(x), start.backbone[0][:3].eval()(x)[..., ::2, ::2])
    assert conv.stride == (2, 2) and model.eval()(x).shape == (2, 7)
    with pytest.raises(ValueError, match="is a fast, whose weights do not fit --backbone mini"):
        warm_start(argparse.Namespace(init_from=str(tmp_path / "fast"), backbone="mini", stem="small"))


def test_resnet50_script_runs_on_the_fixture(tmp_path, astronaut):
    import train.resnet50 as script

    out = tmp_path / "r50"
    assert script.main(["--dataset", str(FER_TINY), "--output_dir", str(out), "--epochs", "1", "--batch_size", "8",
                        "--stem", "imagenet", "--max_steps_per_epoch", "2", "--log_with", "none"]) == 0
    model = load_model(str(out))
    assert model.backbone_name == "resnet50" and model.predict_proba([astronaut]).shape == (1, 7)
    recorded = json.loads((out / "training_args.json").read_text())
    assert (recorded["optimizer"], recorded["lr"], recorded["weight_decay"]) == ("adamw", 1e-3, 0.01)


def test_distill_script_lands_a_student(tmp_path):
    """The distillation script runs end to end and lands a student checkpoint."""
    import train.distill as script

    torch.manual_seed(0)
    CNNClassifier(backbone="mini").save_pretrained(tmp_path / "teacher")
    out = tmp_path / "student"
    assert script.main(["--teacher", str(tmp_path / "teacher"), "--dataset", str(FER_TINY), "--output_dir",
                        str(out), "--epochs", "1", "--batch_size", "8", "--alpha", "1.0", "--log_with", "none",
                        "--rotation", "0", "--translate", "0", "--erasing", "0", "--no_flip"]) == 0
    student = load_model(str(out))
    assert student.backbone_name == "mini" and (out / "stage_distill" / "history.json").exists()
    card = (out / "README.md").read_text()
    assert f"the teacher `{tmp_path / 'teacher'}` (knowledge distillation" in card and "weight 1 on the teacher" in card
    assert f'load_model("{out}")' in card  # its example loads these weights, not a registry name


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_the_teacher_answers_with_the_views_it_was_chosen_with(tta):
    """`--teacher_tta`: the teacher's probabilities on a [0, 1] batch are its predict_proba with those views,
    in FER-7 order; with the mirror views they differ from one view's (the teacher is not mirror-symmetric)."""
    from fermm.labels import to_fer7
    from fermm.training.image import teacher_fn

    torch.manual_seed(0)
    teacher = CNNClassifier(backbone="fast", labels=("happy", "sad", "angry", "neutral", "fear", "disgust",
                                                     "surprise")).eval()
    with torch.no_grad():
        teacher.classifier.weight.mul_(100)  # an opinionated teacher: a fresh one answers nearly uniformly
    x = torch.rand(4, 1, 48, 48)
    faces = list((x[:, 0] * 255).round().to(torch.uint8).numpy())
    want = to_fer7(teacher.predict_proba(faces, tta=tta).numpy(), teacher.labels)
    got = teacher_fn(teacher, tta)(x)
    assert got.shape == (4, 7) and torch.allclose(got, torch.from_numpy(want).float(), atol=1e-6)
    other = teacher_fn(teacher, "none" if tta == "flip" else "flip")(x)
    assert not torch.allclose(got, other, atol=1e-4)


def test_distill_loss_is_zero_when_student_equals_teacher():
    from fermm.training.tasks import DistillTask

    task = DistillTask((np.zeros((4, 48, 48), np.uint8), np.zeros(4, int)), (np.zeros((4, 48, 48), np.uint8),
                       np.zeros(4, int)), 7, (0.5,), (0.25,), teacher_probs=None, alpha=1.0)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.log(torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02]])).expand(len(x), -1)
    teacher = Fixed()(torch.zeros(3)).softmax(-1)
    loss, _ = task.loss(Fixed(), (torch.zeros(3, 1, 48, 48), teacher, torch.eye(7)[[0, 1, 2]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_distill_label_term_uses_the_tasks_smoothing_and_class_weights():
    """With alpha = 0 the distillation loss is the plain task's loss, smoothing and class weights included."""
    from fermm.training.tasks import DistillTask

    rng = np.random.default_rng(0)
    train = (np.zeros((21, 48, 48), np.uint8), np.repeat(np.arange(7), [9, 1, 3, 2, 2, 2, 2]))
    kw = dict(label_smoothing=0.2, weighted=True)
    plain = ImageTask(train, train, 7, (0.5,), (0.25,), **kw)
    distill = DistillTask(train, train, 7, (0.5,), (0.25,), teacher_probs=None, alpha=0.0, **kw)
    logits = torch.from_numpy(rng.normal(size=(5, 7)).astype(np.float32))

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits
    t = torch.eye(7)[[0, 1, 1, 3, 6]]
    teacher = torch.full((5, 7), 1 / 7)
    want, _ = plain.loss(Fixed(), (torch.zeros(5, 1, 48, 48), t))
    got, _ = distill.loss(Fixed(), (torch.zeros(5, 1, 48, 48), teacher, t))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert want.item() != pytest.approx(soft_cross_entropy(logits, t).item(), rel=1e-3)  # the options do act


def test_contrastive_logits_are_fp32_under_bf16_autocast():
    gen = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(32, 64, generator=gen), dim=-1).bfloat16()
    u = torch.nn.functional.normalize(torch.randn(32, 64, generator=gen), dim=-1).bfloat16()
    exact = contrastive_loss(v.float(), u.float(), 0.1, 0.75)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = contrastive_loss(v, u, 0.1, 0.75)
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(exact.item(), rel=1e-6)


def test_seed_sets_the_initial_weights():
    import argparse

    from fermm.training.image import new_model

    def weights(seed):
        args = argparse.Namespace(seed=seed, backbone="mini", stem="small", dropout=0.3)
        return new_model(args).state_dict()["classifier.weight"]
    assert torch.equal(weights(0), weights(0)) and not torch.equal(weights(0), weights(1))


def test_live_weights_are_validated_in_fp32_under_bf16_training(tmp_path):
    """Validation scores the weights as evaluation does (fp32), not through prepare()'s autocast forward."""
    torch.manual_seed(0)
    task = _tiny_task()
    model = CNNClassifier(backbone="vgg11")
    reference = CNNClassifier(backbone="vgg11")
    reference.load_state_dict(model.state_dict())
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=1, batch_size=16, log_with="none", mixed_precision="bf16")
    trainer = Trainer(model, task, cfg, task.steps_per_epoch(16))
    got = task.predict_logits(trainer.model, task.val_x)
    assert got.dtype == torch.float32
    assert torch.allclose(got, task.predict_logits(reference, task.val_x), atol=1e-5)  # bf16 is ~1e-2 off
