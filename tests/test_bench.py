"""bench/report.py renders saved bench figures into BENCHMARKS.md (the benches themselves are not tests)."""
from __future__ import annotations

import json

import numpy as np


def _write(folder, name, figures):
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    info = {"command": f"python bench/{name}.py", "commit": "abc1234", "date": "2026-11-23", "hardware": "2 cores"}
    (folder / "bench" / f"{name}.json").write_text(json.dumps({**info, **figures}))


def _render(results, tmp_path) -> str:
    """BENCHMARKS.md as bench/report.py writes it from ``results``."""
    import bench.report as report

    out = tmp_path / "B.md"
    assert report.main(["--results", str(results), "--output", str(out)]) == 0
    return out.read_text()


def test_report_renders_targets_ratios_and_missing_sections(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for model, acc in (("fast", 0.71), ("slow", 0.60), ("fer_peer", 0.658)):
        (res / f"{model}.json").write_text(json.dumps({"model": model, "split": "test", "tta": "none",
                                                       "accuracy": acc, "images_per_second": 4000.0}))
    (res / "run.history.json").write_text(json.dumps([{"epoch": 0, "val_accuracy": 0.5}]))  # not a result: skipped
    _write(res, "latency", {"models": {"fast": {"batch1": {"p50": 0.8, "p95": 1.0}, "batch32": {"p50": 0.1, "p95": 0.2},
                                                "runtime": "onnxruntime"},
                                       "slow": {"batch1": {"p50": 3.0, "p95": 4.0}, "batch32": {"p50": 1.0, "p95": 1.0}}},
                            "unavailable": {"coop": "OSError: no CLIP"},
                            "app": {"models": ["fast"], "unavailable": {}, "cold_start": [{"ready_s": 9.0, "first_answer_s": 11.0}],
                                    "request_ms": {"1_face": {"p50": 200.0, "p95": 300.0, "server_cpu_ms": 61.0,
                                                               "client_cpu_ms": 20.4}},
                                    "memory_mb": {"after_all_requests": {"rss": 900.0, "peak": 950.0}}}})
    _write(res, "clip_cost", {"rows": [{"method": m, "trainable_params": n, "batch": 32, "seconds_per_step": s,
                                        "peak_rss_mb": 800.0}
                                       for m, n, s in (("coop_cached", 8192, 0.01), ("coop_reencode", 8192, 2.0))]})
    _write(res, "load", {"models": ["fast"], "clients": 16, "faces": 1, "requests": 400, "ok": 400, "errors": 0,
                         "seconds": 40.0, "requests_per_second": 10.0, "latency_ms": {"p50": 900.0, "p95": 1100.0, "p99": 1200.0},
                         "server_cpu_ms_per_request": 110.2, "client_cpu_ms_per_request": 50.0})
    _write(res, "breakdown", {"models": {"fast b1": {"runtime": "pytorch", "batch": 1, "ms_per_face": {
        "preprocess": 0.2, "network": 1.4, "predict_proba": 1.8}, "top_operators_pytorch": [
        {"op": "aten::_slow_conv2d_forward", "ms_per_face": 1.05, "share": 0.79, "calls_per_forward": 6}],
        "pytorch_forward_ms_per_face": {"fp32": 1.3, "bf16": 1.1}, "bf16_max_prob_diff": 0.0014}},
        "unavailable": {"coop": "OSError: no CLIP"}})
    text = _render(res, tmp_path)
    assert "| one-face request p50, all bundled models | <= 100 ms | 200.0 ms | missed by 100.0 ms |" in text
    assert "| app RSS with the bundled models (highest seen by any bench) | <= 1536 MB | 900.0 MB | met |" in text
    assert "python -m bench.session --json results/bench/session.json" in text  # not measured yet: its command
    _write(res, "session", {"phases": [{"phase": "start", "seconds": 0.0, "rss_mb_sampled_max": 1000.0,
                                        "rss_mb_after": 1000.0, "peak_mb_so_far": 1100.0}],
                            "rss_mb_max": 1600.0, "rss_mb_end": 1200.0, "target_mb": 1536})
    text = _render(res, tmp_path)  # the session's high-water mark is the worst memory seen
    assert "| app RSS with the bundled models (highest seen by any bench) | <= 1536 MB | 1600.0 MB | missed by 64.0 MB |" in text
    assert "| start | 0.0 | 1000 MB | 1000 MB | 1100 MB |" in text and "High-water mark 1600 MB, 1200 MB at the end" in text
    assert ("`fast b1` (pytorch): 1.80 ms per face = preprocessing 0.20 + network 1.40 + the rest 0.20 (medians "
            "timed apart). PyTorch's top operators: aten::_slow_conv2d_forward 79%. Bare PyTorch forward: fp32 1.30, "
            "bf16 1.10 ms per face (bf16 probabilities within 0.0014 of fp32 on this face)") in text
    assert "- `coop` unavailable: OSError: no CLIP" in text
    # `slow` (60%) is within 1 ms at batch 32 too, but `fast` is the more accurate
    assert "the most accurate model within 1 ms per face is `fast` at 71.0% (0.10 ms per face)" in text
    assert "| fastest model >= 70% accuracy, ms per face (batch 1) | <= 1.0 ms | 0.8 ms | met |" in text
    assert "| `fast` | onnxruntime | face | 71.0% | 0.80 / 1.00 | 0.100 | 3.2x |" in text  # peer: 1000 / 4000 = 0.25 ms
    # a model timed in its mirror views counts with the accuracy of those views (69% alone, 70.5% with its mirror)
    for tta, acc, suffix in (("none", 0.69, ""), ("flip", 0.705, ".flip")):
        (res / f"mirror{suffix}.json").write_text(json.dumps({"model": "mirror", "split": "test", "tta": tta,
                                                              "accuracy": acc}))
    latency = json.loads((res / "bench" / "latency.json").read_text())
    latency["models"]["mirror"] = {"batch1": {"p50": 0.7, "p95": 0.9}, "batch32": {"p50": 0.2, "p95": 0.2},
                                   "runtime": "onnx int8", "tta": "flip"}
    _write(res, "latency", latency)
    text = _render(res, tmp_path)
    assert "| `mirror` | onnx int8 | face + mirror | 70.5% | 0.70 / 0.90 | 0.200 | 2.8x |" in text
    assert "| fastest model >= 70% accuracy, ms per face (batch 1) | <= 1.0 ms | 0.7 ms | met |" in text
    assert "**200x** faster" in text and "`coop` unavailable: OSError: no CLIP" in text
    assert "| 1 face | 200 | 300 | 61 | 20 |" in text
    assert "| 16 x 25 load test p95 (gradio_client) | <= 1000 ms | 1100.0 ms | missed by 100.0 ms |" in text
    assert "CPU per request: the app 110 ms, the clients 50 ms" in text
    assert "python bench/soak" not in text and "--soak 300" in text  # the soak is not measured yet: its command
    # a precision that keeps `slow` over 70% and runs it faster is the fastest model that qualifies
    _write(res, "precision", {"calibration_images": 512, "models": {"slow": {
        "torch fp32": {"validation": 0.69, "test": 0.60, "test_not_in_train": 0.59, "batch1_ms": {"p50": 3.0}},
        "onnx int8": {"validation": 0.71, "test": 0.72, "test_not_in_train": 0.70, "batch1_ms": {"p50": 0.5}}}}})
    text = _render(res, tmp_path)
    assert "| fastest model >= 70% accuracy, ms per face (batch 1) | <= 1.0 ms | 0.5 ms | met |" in text
    assert "| `slow` | onnx int8 | 71.00% | 72.00% | 70.00% | 0.50 |" in text and "calibrated on 512 train images" in text


def test_cpu_seconds_reads_a_process_from_proc():
    import os
    import time

    from bench.common import cpu_seconds

    before, p0 = cpu_seconds(), time.process_time()
    while time.process_time() - p0 < 0.3:  # burn 0.3 s of CPU, whatever else runs on the machine
        sum(range(1000))
    assert abs((cpu_seconds() - before) - (time.process_time() - p0)) < 0.05
    assert abs(cpu_seconds(os.getpid()) - cpu_seconds()) < 0.05  # /proc and os.times agree on this process


def test_load_reports_the_median_round_and_totals_errors_over_all_rounds(tmp_path):
    import bench.load as load

    def round_(p95, errors=0):
        return {"requests": 400, "ok": 400 - errors, "errors": errors, "error_messages": {"HTTP 500": errors} if errors else {},
                "seconds": 20.0, "requests_per_second": 20.0 + p95 / 1000, "server_cpu_ms_per_request": 75.0,
                "client_cpu_ms_per_request": 4.0, "latency_ms": {"p50": p95 - 200, "p95": p95, "p99": p95 + 100}}
    rounds = [round_(1100.0), round_(950.0, errors=2), round_(980.0), round_(1001.0), round_(940.0)]
    shown = load.median_round(rounds)
    assert shown["latency_ms"]["p95"] == 980.0 and shown["requests_per_second"] == 20.98
    assert (shown["requests"], shown["errors"]) == (400, 0)  # the shown round's own counts
    assert (shown["total_requests"], shown["total_errors"], shown["error_messages"]) == (2000, 2, {"HTTP 500": 2})
    assert [r["p95"] for r in shown["rounds"]] == [1100.0, 950.0, 980.0, 1001.0, 940.0]
    assert load.median_round([round_(900.0)]) == round_(900.0)  # one round: as measured, nothing added
    dead = {**round_(0.0, errors=400), "latency_ms": {"p50": None, "p95": None, "p99": None}}
    assert load.median_round([round_(900.0), dead])["latency_ms"]["p95"] is None  # upper median: the failed round
    assert load.median_round([dead, round_(900.0), round_(950.0)])["latency_ms"]["p95"] == 950.0
    res = tmp_path / "results"
    _write(res, "load", {"models": ["fast"], "clients": 16, "faces": 1, "client": "http", "sessions": "tab", **shown})
    _write(res, "load_request_sessions", {"models": ["fast"], "clients": 16, "faces": 1, "client": "http",
                                          "sessions": "request", **round_(1200.0)})
    text = _render(res, tmp_path)
    assert "5 rounds against the same app, p95 1100, 950, 980, 1001, 940 ms" in text
    assert "**2 errors** in 2000 requests over all rounds" in text
    assert "| 16 x 25 load test p95 (plain HTTP API, one session each) | <= 1000 ms | 980.0 ms | met |" in text
    assert "| 16 x 25 load test p95 (plain HTTP API, a new session per request) | <= 1000 ms | 1200.0 ms | missed" in text
    fresh = text.split("## Load, a new session per request", 1)[1]  # the worst case has a section and a row
    assert "16 clients (plain HTTP API, a new session per request)" in fresh and "p95 1200 ms" in fresh


def test_bench_arguments_that_cannot_work_are_refused(capsys):
    import pytest

    import bench.latency as latency
    import bench.load as load

    for parse, argv, message in ((latency.parse_args, ["--cold_starts", "0"], "--cold_starts must be at least 1"),
                                 (load.parse_args, ["--repeats", "0"], "--repeats must be at least 1"),
                                 (load.parse_args, ["--soak", "60", "--repeats", "3"], "1 with --soak"),
                                 (load.parse_args, ["--client", "gradio", "--sessions", "request"], "needs --client http")):
        with pytest.raises(SystemExit):
            parse(argv)
        assert message in capsys.readouterr().err


def test_breakdown_counts_the_fast_nets_six_convolutions_per_face():
    import torch

    from bench.breakdown import top_operators
    from fermm.models.cnn import CNNClassifier

    model = CNNClassifier("fast").eval()
    one = top_operators(model, torch.zeros(1, 1, 48, 48), calls=3, top=50)
    four = top_operators(model, torch.zeros(4, 1, 48, 48), calls=3, top=50)
    for ops in (one, four):
        convs = [o for o in ops if o["op"] == "aten::convolution"]
        assert len(convs) == 1 and convs[0]["calls_per_forward"] == 6  # "fast": 6 conv layers, per forward
        assert abs(sum(o["share"] for o in ops) - 1) < 0.02  # every operator listed: shares add up
    assert one[0]["share"] >= one[-1]["share"]


def test_breakdown_refuses_arguments_that_cannot_work(capsys):
    import pytest

    from bench.breakdown import parse_args

    for argv in (["--batch", "0"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert "must be at least 1" in capsys.readouterr().err


def _stage(folder, history, planned=None, precision="bf16", init_from=None):
    folder.mkdir(parents=True)
    if history is not None:
        (folder / "history.json").write_text(json.dumps(history))
    (folder / "training_args.json").write_text(json.dumps({
        "epochs": planned or len(history), "mixed_precision": precision, "channels_last": precision == "bf16",
        "extra": {"init_from": init_from}}))


def _row(epoch: int, secs: float, acc: float) -> dict:
    return {"epoch": epoch, "epoch_seconds": secs, "images_per_second": 28709 / secs, "val_accuracy": acc}


def test_train_cost_reads_stage_histories_and_reports_time_to_best(tmp_path, capsys):
    import os

    import bench.train_cost as train_cost

    run = tmp_path / "glove_run"
    _stage(run / "stage_contrastive", [_row(0, 200.0, 0.40), _row(1, 100.0, 0.50)])
    # the best accuracy twice: the first counts, as the Trainer keeps it; the 900 s epoch was paused
    _stage(run / "stage_finetune", [_row(0, 100.0, 0.60), _row(1, 900.0, 0.66), _row(2, 100.0, 0.66)])
    os.utime(run / "stage_finetune" / "history.json", (1, 1))  # file times do not decide the order
    cycle = tmp_path / "cycle2"
    _stage(cycle / "stage_ce", [_row(0, 50.0, 0.7)], planned=3, precision="no", init_from=str(run))
    out = tmp_path / "results" / "bench" / "train_cost.json"
    assert train_cost.main(["--runs", str(run), str(cycle), "--json", str(out)]) == 0
    glove, warm = json.loads(out.read_text())["runs"]
    pre, ft = glove["stages"]
    assert (pre["stage"], ft["stage"]) == ("stage_contrastive", "stage_finetune")
    assert (ft["best_epoch"], ft["best_val_accuracy"], ft["median_epoch_seconds"]) == (2, 0.66, 100.0)
    assert ft["to_best_seconds_recorded"] == 1000.0  # the paused epoch counts as recorded ...
    assert ft["to_best_seconds_median"] == 200.0  # ... but not in the estimate
    assert glove["total_to_best_seconds_median"] == 150.0 * 2 + 200.0  # the whole first stage, then to the best
    assert glove["total_to_best_seconds_recorded"] == 300.0 + 1000.0
    assert (warm["init_from"], warm["in_progress"], glove["in_progress"]) == (str(run), True, False)
    printed = capsys.readouterr().out
    assert "cycle2 (from glove_run) -- in progress" in printed and "stage_ce (fp32)" in printed
    # a later session's runs, measured into a file of their own, get a table of their own under the same heading
    assert train_cost.main(["--runs", str(cycle), "--json", str(out.with_name("train_cost_later.json"))]) == 0
    text = _render(tmp_path / "results", tmp_path)
    assert text.count("## Training cost of the runs") == 1
    assert text.count("| run / stage |") == 2 and "train_cost_later.json` (commit" in text
    assert "| glove_run / stage_finetune | bf16, channels_last | 3/3 | 100 | 287 | 66.00% (2) | 3 / 17 min |" in text
    assert "| glove_run, whole run | | | | | | 8 / 22 min |" in text
    assert "| cycle2 (from glove_run) / stage_ce, in progress | fp32, contiguous | 1/3 |" in text
    assert "cycle2, whole run" not in text  # one stage: its own row is the whole run


def test_train_cost_lists_a_stage_before_its_first_epoch(tmp_path):
    import bench.train_cost as train_cost

    _stage(tmp_path / "stage_contrastive", [_row(0, 100.0, 0.5)])
    _stage(tmp_path / "stage_finetune", None, planned=30)
    r = train_cost.run_cost(tmp_path)
    assert [s["epochs"] for s in r["stages"]] == [1, 0] and r["in_progress"]
    assert "total_to_best_seconds_median" not in r


def test_train_cost_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    import pytest

    import bench.train_cost as train_cost

    for folder, why in ((tmp_path / "nope", "no such folder"), (tmp_path, "no stage folder with a training_args.json")):
        with pytest.raises(SystemExit):
            train_cost.main(["--runs", str(folder)])
        assert why in capsys.readouterr().err


def test_precision_variants_serve_the_same_model_closely_and_int8_shrinks_it():
    """bench.precision's int8 graph and bf16 forward stand in for the model's own forward through the same
    predict_proba and give nearly its logits (a constant or shuffled output would not); the int8 graph stores
    int8 weights and is smaller than the fp32 one."""
    import onnx
    import torch

    from bench.precision import Bf16Forward, forwards
    from fermm.models.quantize import int8_graph
    from fermm.models.cnn import CNNClassifier
    from fermm.models.runtime import export

    torch.manual_seed(0)
    model = CNNClassifier(backbone="fast").eval()
    faces = np.random.default_rng(0).integers(0, 256, (40, 48, 48), dtype=np.uint8)
    x = model.preprocess(list(faces))
    with torch.no_grad():
        reference = model(x)
    spread = reference.std()
    graph = int8_graph(model, faces[:32])
    assert any(t.data_type == onnx.TensorProto.INT8 for t in onnx.load_from_string(graph).graph.initializer)
    assert len(graph) < 0.5 * len(export(model, x[:1]))
    built = forwards(model, faces[:32])
    assert list(built) == ["torch fp32", "torch bf16", "onnx fp32", "onnx int8"] and built["torch fp32"]() is None
    for precision, tolerance in (("torch bf16", 0.1), ("onnx fp32", 1e-4), ("onnx int8", 0.1)):
        model.fast_forward = built[precision]()
        assert model.fast_forward.serves(model, x)
        logits = model.fast_forward(x).float()
        assert logits.shape == reference.shape
        assert (logits - reference).abs().max() < tolerance * spread, precision  # close relative to their spread
        probs = model.predict_proba(list(faces))  # the path the bench times and scores
        assert torch.allclose(probs, logits.softmax(-1), atol=1e-4), precision
    assert not Bf16Forward(model).serves(CNNClassifier(backbone="fast"), x)
    stored = built["onnx int8"]()  # a model loaded with its stored graph is timed and scored on that very graph
    assert forwards(model, faces[:32], stored)["onnx int8"]() is stored
