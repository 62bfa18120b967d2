"""The word-vector gain measurement: pairing twins, refusing non-twins, the paired interval, the script."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FER_TINY

from fermm.studies import twins

ARGS = {"backbone": "vgg11", "stem": "small", "seed": 0, "epochs": 20, "lr": 0.01, "erasing": 0.1}


def run(name, base, correct=None, **changes):
    args = {**ARGS, "base": base, **({} if base else {"pretrain_epochs": 6, "lam": 0.75}), **changes}
    return twins.TwinRun(name, args, {"test": np.asarray(correct if correct is not None else [True])})


def test_paired_interval_brackets_the_gain_and_collapses_on_constant_differences():
    rng = np.random.default_rng(1)
    g, b = rng.random(2000) < 0.70, rng.random(2000) < 0.65
    lo, hi = twins.paired_gain_ci(g, b)
    assert lo < g.mean() - b.mean() < hi and hi - lo < 0.06
    assert twins.paired_gain_ci(np.ones(50, bool), np.zeros(50, bool)) == (1.0, 1.0)
    assert twins.paired_gain_ci(g, g) == (0.0, 0.0)
    with pytest.raises(ValueError, match="different images"):
        twins.paired_gain_ci(g, b[:10])


def test_runs_pair_by_backbone_and_seed_and_the_gain_is_summarised_per_backbone():
    runs = [run("g0", False, [1, 1, 1, 0]), run("b0", True, [1, 0, 0, 0]),
            run("g1", False, [1, 1, 0, 0], seed=1), run("b1", True, [1, 1, 1, 0], seed=1),
            run("g_r18", False, backbone="resnet18")]
    pairs, alone = twins.pair_up(runs)
    assert [(g.name, b.name) for g, b in pairs] == [("g0", "b0"), ("g1", "b1")] and alone == ["g_r18"]
    table = twins.gain_table(pairs, "test")
    assert [r["gain"] for r in table["pairs"]] == [0.5, -0.25]
    s = table["by_backbone"]["vgg11"]
    assert s["seeds"] == 2 and s["mean_gain"] == pytest.approx(0.125)
    assert (s["min_gain"], s["max_gain"]) == (-0.25, 0.5) and s["std_gain"] == pytest.approx(np.std([0.5, -0.25], ddof=1))
    assert "+50.00" in twins.markdown(table) and "-25.00 to +50.00" in twins.markdown(table)


def test_runs_trained_differently_are_not_twins():
    with pytest.raises(ValueError, match="differ in erasing, lr"):
        twins.pair_up([run("g", False), run("b", True, lr=0.1, erasing=0.25)])
    with pytest.raises(ValueError, match="both base runs"):
        twins.pair_up([run("b", True), run("b2", True)])
    with pytest.raises(ValueError, match="differ in dataset"):
        twins.pair_up([run("g", False, dataset="fer2013"), run("b", True, dataset="fer_tiny")])
    plain = run("resnet50", True)
    del plain.args["base"]  # train/resnet50.py: cross-entropy, but not a GloVe-CNN twin
    with pytest.raises(ValueError, match="not a train/glove_cnn.py run"):
        twins.pair_up([plain, run("b", True)])
    # what only the GloVe arm has (its contrastive stage) does not break a pair
    assert len(twins.pair_up([run("g", False, tau=0.2), run("b", True)])[0]) == 1


def test_epoch_matched_twins_pair_on_total_epochs():
    glove = run("g", False, [1, 1])  # 6 contrastive + 20 fine-tuning epochs
    base20, base26 = run("b20", True, [1, 0]), run("b26", True, [1, 1], epochs=26)
    assert glove.total_epochs == 26 and base26.total_epochs == 26
    pairs, alone = twins.pair_up([glove, base20, base26])  # Bülbül's schedule: same fine-tuning epochs
    assert [(g.name, b.name) for g, b in pairs] == [("g", "b20")] and alone == ["b26"]
    pairs, alone = twins.pair_up([glove, base20, base26], epoch_matched=True)
    assert [(g.name, b.name) for g, b in pairs] == [("g", "b26")] and alone == ["b20"]
    assert twins.gain_table(pairs, "test")["pairs"][0]["gain"] == 0.0
    assert run("b", True, pretrain_epochs=30).total_epochs == 20  # a base run records the unused default
    warm = run("w", False, [1, 1], init_from="runs/x")  # a further cycle skips the contrastive stage
    assert warm.total_epochs == 20
    pairs, alone = twins.pair_up([glove, base20, warm], epoch_matched=True)  # warm and cold runs never share a slot
    assert pairs == [] and sorted(alone) == ["b20", "g", "w"]
    assert [(g.name, b.name) for g, b in twins.pair_up([glove, base20, warm])[0]] == [("g", "b20")]
    with pytest.raises(ValueError, match="differ in lr"):
        twins.pair_up([glove, run("b26", True, epochs=26, lr=0.1)], epoch_matched=True)


def test_stems_are_summarised_apart():
    runs = [run("g", False, [1, 1], backbone="resnet18"), run("b", True, [1, 0], backbone="resnet18"),
            run("gi", False, [0, 0], backbone="resnet18", stem="imagenet"),
            run("bi", True, [1, 0], backbone="resnet18", stem="imagenet")]
    table = twins.gain_table(twins.pair_up(runs)[0], "test")
    assert {k: (v["seeds"], v["mean_gain"]) for k, v in table["by_backbone"].items()} == {
        "resnet18": (1, 0.5), "resnet18 (imagenet stem)": (1, -0.5)}


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 3589])
def test_correctness_packs_and_unpacks_exactly(n):
    correct = np.random.default_rng(n).random(n) < 0.6
    packed = twins.pack_correct(correct)
    assert len(packed) <= 4 * ((n + 7) // 8 + 2) // 3 + 4  # base64 of n/8 bytes: compact enough for a JSON file
    assert np.array_equal(twins.unpack_correct(packed, n), correct)
    with pytest.raises(ValueError, match="bits, not"):
        twins.unpack_correct(packed, n + 8)
    if n >= 8:
        with pytest.raises(ValueError, match="bits, not"):
            twins.unpack_correct(packed, n - 8)


def test_a_run_survives_its_record():
    r = twins.TwinRun("g", {"backbone": "vgg11", "seed": 3, "base": False},
                      {"test": np.array([1, 0, 1], bool), "validation": np.array([0, 1], bool)})
    back = twins.TwinRun.from_record("g", json.loads(json.dumps(r.to_record())))
    assert back.key == r.key and not back.is_base
    assert {s: c.tolist() for s, c in back.correct.items()} == {s: c.tolist() for s, c in r.correct.items()}


def _train(out, *extra):
    import train.glove_cnn as script

    assert script.main(["--dataset", str(FER_TINY), "--output_dir", str(out), "--backbone", "mini", "--epochs", "1",
                        "--batch_size", "8", "--max_steps_per_epoch", "2", "--log_with", "none", *extra]) == 0


def test_script_scores_real_twins_on_both_splits(tmp_path, capsys, monkeypatch):
    import eval.twins as script

    _train(tmp_path / "glove_mini", "--pretrain_epochs", "1")
    _train(tmp_path / "base_mini", "--base")
    _train(tmp_path / "base_mini_lr", "--base", "--lr", "0.05")
    saved = tmp_path / "base_mini" / "training_args.json"  # as if trained before --ema existed
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items() if k != "ema"}))
    out = tmp_path / "twins.json"
    assert script.main(["--runs", str(tmp_path / "glove_mini"), str(tmp_path / "base_mini"),
                        "--dataset", str(FER_TINY), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    for split in ("validation", "test"):
        (row,) = record[split]["pairs"]
        assert row["glove"] == "glove_mini" and row["base"] == "base_mini"
        assert row["gain"] == pytest.approx(row["glove_accuracy"] - row["base_accuracy"])
        assert row["gain_ci95"][0] <= row["gain"] <= row["gain_ci95"][1]
    assert record["command"].startswith("python eval/twins.py") and record["commit"]
    assert record["n"]["test"] > 0 and record["dataset"] == str(FER_TINY)
    assert "| mini | 0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="differ in lr"):
        script.main(["--runs", str(tmp_path / "glove_mini"), str(tmp_path / "base_mini_lr"),
                     "--dataset", str(FER_TINY), "--json", str(out)])
    # the base arm's folder is gone: its record pairs it with the GloVe arm, to the same figures
    shutil.rmtree(tmp_path / "base_mini")
    again = tmp_path / "twins_again.json"
    assert script.main(["--runs", str(tmp_path / "glove_mini"), "--recorded", str(out),
                        "--dataset", str(FER_TINY), "--json", str(again)]) == 0
    assert {s: json.loads(again.read_text())[s] for s in ("validation", "test")} == {
        s: record[s] for s in ("validation", "test")}
    assert script.main(["--recorded", str(again), "--dataset", str(FER_TINY), "--json", str(again)]) == 0
    assert json.loads(again.read_text())["protocol"].startswith("Bülbül")
    with pytest.raises(SystemExit, match="no GloVe/base twins"):  # 1 + 1 epochs against 1: no epoch-matched twin
        script.main(["--recorded", str(again), "--epoch_matched", "--dataset", str(FER_TINY), "--json", str(again)])
    _train(tmp_path / "base_mini2", "--base", "--epochs", "2")
    monkeypatch.chdir(tmp_path)  # the default output file, not Bülbül's results/twins.json
    assert script.main(["--recorded", str(again), "--runs", str(tmp_path / "base_mini2"), "--epoch_matched",
                        "--dataset", str(FER_TINY)]) == 0
    matched = json.loads((tmp_path / "results" / "twins_epoch_matched.json").read_text())
    assert matched["protocol"] == "epoch-matched" and matched["unpaired"] == ["base_mini"]
    assert [(r["glove"], r["base"]) for r in matched["test"]["pairs"]] == [("glove_mini", "base_mini2")]
    assert not (tmp_path / "results" / "twins.json").exists()


DIGESTS = {"validation": "v1", "test": "t1"}


def _record_file(path, runs, digests=DIGESTS):
    path.write_text(json.dumps({"dataset": "fer", "split_digest": digests, "commit": "abc",
                                "runs": {r.name: r.to_record() for r in runs}}))
    return str(path)


def test_recorded_runs_join_fresh_ones_and_clashes_stop(tmp_path):
    import eval.twins as script

    g = run("g", False, [1, 0, 1])
    b_old = run("b", True, [0, 0, 1])
    del b_old.args["erasing"]  # recorded before --erasing existed: it takes the script's default
    one = _record_file(tmp_path / "one.json", [g, b_old])
    got = {r.name: r for r in script.gather([], [one, one], DIGESTS, "fer")}  # the same file twice is harmless
    assert set(got) == {"g", "b"} and got["b"].args["erasing"] == script.script_defaults()["erasing"]
    fresh_b = run("b", True, [1, 1, 1])
    got = {r.name: r for r in script.gather([fresh_b], [one], DIGESTS, "fer")}
    assert got["b"] is fresh_b and got["g"].source == one
    with pytest.raises(SystemExit, match="two run folders are named b"):
        script.gather([fresh_b, run("b", True)], [], DIGESTS, "fer")
    other = _record_file(tmp_path / "other.json", [run("g", False, [0, 0, 0])])
    with pytest.raises(SystemExit, match="other.json: its g has other results"):
        script.gather([], [one, other], DIGESTS, "fer")
    with pytest.raises(SystemExit, match="scored on fer, whose validation and test images"):
        script.gather([], [_record_file(tmp_path / "stale.json", [g], {"validation": "v2", "test": "t1"})],
                      DIGESTS, "fer")
    (tmp_path / "old.json").write_text(json.dumps({"dataset": "fer", "commit": "abc"}))
    with pytest.raises(SystemExit, match="no per-image results"):
        script.gather([], [str(tmp_path / "old.json")], DIGESTS, "fer")
    broken = json.loads(Path(one).read_text())
    del broken["runs"]["g"]["correct"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(SystemExit, match="broken.json: a run's record is damaged"):
        script.gather([], [str(tmp_path / "broken.json")], DIGESTS, "fer")
    with pytest.raises(SystemExit, match="cannot read it"):
        script.gather([], [str(tmp_path / "missing.json")], DIGESTS, "fer")
    with pytest.raises(SystemExit, match="give --runs"):
        script.main([])
