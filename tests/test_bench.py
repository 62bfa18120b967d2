"""bench/report.py renders saved bench figures into BENCHMARKS.md (the benches themselves are not tests)."""
from __future__ import annotations

import json


def _write(folder, name, figures):
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    info = {"command": f"python bench/{name}.py", "commit": "abc1234", "date": "2026-11-23", "hardware": "2 cores"}
    (folder / "bench" / f"{name}.json").write_text(json.dumps({**info, **figures}))


def test_report_renders_targets_ratios_and_missing_sections(tmp_path):
    import bench.report as report

    res = tmp_path / "results"
    res.mkdir()
    for model, acc in (("fast", 0.71), ("slow", 0.60), ("fer_peer", 0.658)):
        (res / f"{model}.json").write_text(json.dumps({"model": model, "split": "test", "tta": "none",
                                                       "accuracy": acc, "images_per_second": 4000.0}))
    _write(res, "latency", {"models": {"fast": {"batch1": {"p50": 0.8, "p95": 1.0}, "batch32": {"p50": 0.1, "p95": 0.2}},
                                       "slow": {"batch1": {"p50": 3.0, "p95": 4.0}, "batch32": {"p50": 1.0, "p95": 1.0}}},
                            "unavailable": {"coop": "OSError: no CLIP"},
                            "app": {"models": ["fast"], "unavailable": {}, "cold_start": [{"ready_s": 9.0, "first_answer_s": 11.0}],
                                    "request_ms": {"1_face": {"p50": 200.0, "p95": 300.0}},
                                    "memory_mb": {"after_all_requests": {"rss": 900.0, "peak": 950.0}}}})
    _write(res, "clip_cost", {"rows": [{"method": m, "trainable_params": n, "batch": 32, "seconds_per_step": s,
                                        "peak_rss_mb": 800.0}
                                       for m, n, s in (("coop_cached", 8192, 0.01), ("coop_reencode", 8192, 2.0))]})
    out = tmp_path / "B.md"
    assert report.main(["--results", str(res), "--output", str(out)]) == 0
    text = out.read_text()
    assert "| one-face request p50, all bundled models | <= 150 ms | 200.0 ms | missed by 50.0 ms |" in text
    assert "| app RSS with the bundled models | <= 1536 MB | 900.0 MB | met |" in text
    assert "| fastest model >= 70% accuracy, ms per face (batch 1) | <= 1.0 ms | 0.8 ms | met |" in text
    assert "| `fast` | 71.0% | 0.80 / 1.00 | 0.100 | 3.2x |" in text  # peer: 1000 / 4000 = 0.25 ms per face
    assert "**200x** faster" in text and "`coop` unavailable: OSError: no CLIP" in text
    assert "python bench/load.py --clients 16 --requests 25" in text  # not measured yet: the command to run
