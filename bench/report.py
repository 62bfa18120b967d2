"""Write BENCHMARKS.md from the figures the bench scripts saved in results/bench/*.json (and the peer's and
our accuracies in results/*.json), so every number there comes from a command recorded beside it.

    python -m bench.report            # -> BENCHMARKS.md

Sections appear for the JSON files that exist; a missing one is listed with the command that makes it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from bench.common import client_words as _client

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "latency": "python -m bench.latency --repeats 30 --json results/bench/latency.json",
    "load": "python -m bench.load --clients 16 --requests 25 --repeats 5 --json results/bench/load.json",
    "latency_gradio_client": "python -m bench.latency --repeats 30 --client gradio --skip_models --skip_detection "
                             "--json results/bench/latency_gradio_client.json",
    "load_gradio_client": "python -m bench.load --clients 16 --requests 25 --client gradio "
                          "--json results/bench/load_gradio_client.json",
    "load_request_sessions": "python -m bench.load --clients 16 --requests 25 --repeats 3 --sessions request "
                             "--json results/bench/load_request_sessions.json",
    "soak": "python -m bench.load --clients 8 --soak 300 --sessions request --json results/bench/soak.json",
    "session": "python -m bench.session --json results/bench/session.json",
    "text_latency": "python -m bench.latency --skip_detection --skip_app --models --text_models text_minilm "
                    "--repeats 200 --json results/bench/text_latency.json",
    "throughput": "python -m bench.throughput --steps 20 --json results/bench/throughput.json",
    "clip_cost": "python -m bench.clip_cost --json results/bench/clip_cost.json",
    "precision": "python -m bench.precision --models fast_cnn glove_cnn --json results/bench/precision.json",
    "breakdown": "python -m bench.breakdown --models fast_cnn glove_cnn --json results/bench/breakdown.json",
    "train_cost": "python -m bench.train_cost --runs runs/glove_vgg11_r2_s0 runs/glove_vgg11_r2c2_s0 "
                  "runs/glove_vgg11_r2c3_s0 runs/fast_distill_s0 runs/resnet50_s0 runs/resnet50_c2_s0 "
                  "runs/glove_resnet18_s0 runs/base_resnet18_s0 runs/glove_resnet18_s1 runs/base_resnet18_s1 "
                  "--json results/bench/train_cost.json",
}
# issue targets on this 2-core CPU, all "at most": (what, limit, unit)
TARGETS = {"request_p50": ("one-face request p50, all bundled models", 100, "ms"),
           "load_p95": ("16 x 25 load test p95", 1000, "ms"),
           "load_p95_fresh": ("16 x 25 load test p95", 1000, "ms"),
           "memory": ("app RSS with the bundled models (highest seen by any bench)", 1536, "MB"),
           "fast_ms": ("fastest model >= 70% accuracy, ms per face (batch 1)", 1.0, "ms"),
           "text_ms": ("the product text model, ms per sentence (batch 1, p50)", 10.0, "ms")}


def load(results: Path, name: str) -> dict | None:
    path = results / "bench" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance(r: dict) -> list[str]:
    # figures recorded before 2026-12-06 ran as `python bench/X.py`; the same script now runs as `python -m bench.X`
    command = re.sub(r"^python bench/(\w+)\.py", r"python -m bench.\1", r["command"])
    return [f"`{command}` (commit {r.get('commit', '?')}, {r.get('date', '?')}, {r.get('hardware', '?')}"
            + (f", 1-min load {r['load_average_1min']}" if "load_average_1min" in r else "")
            + (f", {r['threads']} thread(s) per model call" if "threads" in r else "") + ")", ""]


def accuracies(results: Path) -> dict[tuple[str, str], float]:
    """Test accuracy per (model, TTA views) from results/<model>[.<tta>].json."""
    out = {}
    for path in results.glob("*.json"):
        r = json.loads(path.read_text())
        if not isinstance(r, dict):  # e.g. a run's copied training history (a list of epochs)
            continue
        if r.get("split") == "test" and "accuracy" in r and r.get("task") != "text":
            out[(r["model"], r.get("tta", "none"))] = r["accuracy"]
    return out


VIEWS = {"none": "face", "flip": "face + mirror", "tencrop": "ten crops"}


def timed_accuracy(acc: dict[tuple[str, str], float], name: str, figures: dict) -> float | None:
    """The test accuracy of the views a latency figure timed (without TTA for figures recorded before
    bench.latency timed the served views)."""
    return acc.get((name, figures.get("tta", "none")))


def latency_section(r: dict, acc: dict[tuple[str, str], float], peer_ms: float | None) -> list[str]:
    lines = ["## Latency", "", *provenance(r)]
    if r.get("models"):
        lines += ["| model | runtime | views | FER test acc. | batch 1 p50 / p95 (ms per face) | batch 32 p50 (ms per "
                  "face) | x peer (b1) |", "|---|---|---|---|---|---|---|"]
        for name, m in r["models"].items():
            ratio = f"{m['batch1']['p50'] / peer_ms:.1f}x" if peer_ms else "n/a"
            a = timed_accuracy(acc, name, m)
            shown = "n/a" if a is None else f"{a:.1%}"
            lines.append(f"| `{name}` | {m.get('runtime', 'pytorch')} | {VIEWS[m.get('tta', 'none')]} | {shown} | "
                         f"{m['batch1']['p50']:.2f} / {m['batch1']['p95']:.2f} | "
                         f"{m['batch32']['p50']:.3f} | {ratio} |")
        if peer_ms:
            lines.append(f"| `fer` peer (mini-Xception; mean, preprocessing excluded) | TFLite | face | "
                         f"{acc.get(('fer_peer', 'none'), float('nan')):.1%} | {peer_ms:.3f} | n/a | 1.0x |")
        lines += [""] + [f"- `{n}` unavailable: {why[:160]}" for n, why in r.get("unavailable", {}).items()] + [""]
    if r.get("detection"):
        lines += ["Face detection (YuNet, one face):", "", "| photo | p50 ms | p95 ms |", "|---|---|---|"]
        lines += [f"| {size} | {d['p50']:.1f} | {d['p95']:.1f} |" for size, d in r["detection"].items()] + [""]
    if r.get("app"):
        a = r["app"]
        served = ", ".join(f"`{m}`" for m in a["models"])
        lines += [f"App end to end through {_client(a, 'one session')}, serving {served}:", "",
                  "| 640x480 request | p50 ms | p95 ms | app CPU ms | client CPU ms |", "|---|---|---|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {d['p50']:.0f} | {d['p95']:.0f} | {_ms(d.get('server_cpu_ms'))} | "
                  f"{_ms(d.get('client_cpu_ms'))} |" for k, d in a["request_ms"].items()]
        mem = a["memory_mb"]["after_all_requests"]
        lines += ["", f"App memory after the requests: RSS {mem['rss']:.0f} MB, peak {mem['peak']:.0f} MB. "
                  + "; ".join(f"cold start {i}: page after {s['ready_s']:.1f} s, first answer after "
                              f"{s['first_answer_s']:.1f} s" for i, s in enumerate(a["cold_start"], 1)), ""]
    return lines


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def load_section(title: str, r: dict) -> list[str]:
    lat = r["latency_ms"]
    lines = [f"## {title}", "", *provenance(r),
             f"{r['clients']} clients ({_client(r)}), {r['faces']}-face 640x480 photo, models {', '.join(r['models'])}: "
             f"{r['requests']} requests in {r['seconds']:.0f} s, **{r['errors']} errors**; latency p50 {lat['p50']:.0f} ms, "
             f"p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms; {r['requests_per_second']:.1f} requests/s."]
    if "rounds" in r:
        lines.append(f"{len(r['rounds'])} rounds against the same app, p95 "
                     f"{', '.join(_ms(x['p95']) for x in r['rounds'])} ms: the round with the median p95 is shown "
                     f"above; **{r['total_errors']} errors** in {r['total_requests']} requests over all rounds.")
    if "server_cpu_ms_per_request" in r:
        lines.append(f"CPU per request: the app {r['server_cpu_ms_per_request']:.0f} ms, the clients "
                     f"{r['client_cpu_ms_per_request']:.0f} ms (same 2 cores: throughput <= 2000 / their sum).")
    if "memory_trend" in r:
        lines.append(f"Memory over the soak: {r['memory_trend'].get('verdict', '')}.")
    return lines + [""]


def throughput_section(r: dict) -> list[str]:
    lines = ["## Throughput", "", *provenance(r)]
    if r.get("eval"):
        lines += [f"Evaluation (batch {r['eval_batch_size']}, FER2013 test faces, preprocessing included):", "",
                  "| model | img/s |", "|---|---|"]
        lines += [f"| `{n}` | {e['images_per_second']:.0f} |" for n, e in r["eval"].items()] + [""]
    if r.get("train"):
        variants = list(next(iter(r["train"].values())))
        lines += [f"Training (batch {r['train_batch_size']}, img/s; CL = channels_last):", "",
                  "| backbone | " + " | ".join(variants) + " | best / fp32 |", "|---" * (len(variants) + 2) + "|"]
        for key, row in r["train"].items():
            nums = [v for v in row.values() if isinstance(v, (int, float))]
            base = row.get("fp32") if isinstance(row.get("fp32"), (int, float)) else None
            ratio = f"{max(nums) / base:.2f}x" if nums and base else "n/a"
            cells = " | ".join(f"{v:.0f}" if isinstance(v, (int, float)) else "failed" for v in row.values())
            lines.append(f"| {key} | {cells} | {ratio} |")
        lines.append("")
    return lines


def clip_section(r: dict) -> list[str]:
    rows = {x["method"]: x for x in r["rows"]}
    lines = ["## CLIP training cost", "", *provenance(r),
             "CLIP ViT-B/32 architecture (a random-weight copy unless the command names --base; cost does not "
             f"depend on the weights), batch {r['rows'][0]['batch']}:", "", "| method | trainable parameters | s / step | peak RSS MB |", "|---|---|---|---|"]
    lines += [f"| {m} | {x['trainable_params']:,} | {x['seconds_per_step']:.3g} | {x['peak_rss_mb']:.0f} |"
              for m, x in rows.items()]
    for name in ("linear", "coop"):
        if f"{name}_cached" in rows and f"{name}_reencode" in rows:
            ratio = rows[f"{name}_reencode"]["seconds_per_step"] / rows[f"{name}_cached"]["seconds_per_step"]
            why = " (CoOp still runs the text tower on every class prompt each step)" if name == "coop" else ""
            lines.append(f"\n{name}: training on cached image features is **{ratio:,.0f}x** faster per step than "
                         f"re-encoding the images{why}.")
    return lines + [""]


def targets_section(lat: dict | None, load_r: dict | None, acc: dict[tuple[str, str], float],
                    soak: dict | None = None, text: dict | None = None, session: dict | None = None, fresh: dict | None = None,
                    precision: dict | None = None) -> list[str]:
    """The targets table; ``fresh``: the load with a new session per request; ``precision``: each model's batch-1
    time in every precision, with its accuracy in that precision."""
    seen, rss = {}, []
    if text and text.get("text_models", {}).get("text_minilm"):
        seen["text_ms"] = text["text_models"]["text_minilm"]["batch1"]["p50"]
    if lat and lat.get("app"):
        seen["request_p50"] = lat["app"]["request_ms"]["1_face"]["p50"]
        rss.append(lat["app"]["memory_mb"]["after_all_requests"]["rss"])
    if load_r:
        seen["load_p95"] = load_r["latency_ms"]["p95"]
    if fresh:
        seen["load_p95_fresh"] = fresh["latency_ms"]["p95"]
    rss += [r["memory_mb"]["after"]["rss"] for r in (load_r, soak) if r and "memory_mb" in r]
    rss += [session["rss_mb_max"]] if session else []  # its high-water mark: every point of a session counts
    if rss:  # the worst the app was seen at after serving, whichever bench saw it
        seen["memory"] = max(rss)
    if lat and lat.get("models"):
        fast = [m["batch1"]["p50"] for n, m in lat["models"].items() if (timed_accuracy(acc, n, m) or 0) >= 0.70]
        fast += [p["batch1_ms"]["p50"] for by in (precision or {}).get("models", {}).values()
                 for p in by.values() if p["test"] >= 0.70]
        seen["fast_ms"] = min(fast) if fast else None
    lines = ["## Targets", "", "| target | limit | measured | |", "|---|---|---|---|"]
    for key, (what, limit, unit) in TARGETS.items():
        what += f" ({_client(load_r)})" if key == "load_p95" and load_r else ""
        what += f" ({_client(fresh)})" if key == "load_p95_fresh" and fresh else ""
        if key == "load_p95_fresh" and not fresh:
            continue
        v = seen.get(key)
        verdict = "not measured" if key not in seen else ("no model reaches 70% yet" if v is None else
                                                          ("met" if v <= limit else f"missed by {v - limit:.1f} {unit}"))
        shown = "n/a" if v is None else f"{v:.1f} {unit}"
        lines.append(f"| {what} | <= {limit} {unit} | {shown} | {verdict} |")
    return lines + [""]


def session_section(r: dict) -> list[str]:
    lines = ["## Memory through a session", "", *provenance(r),
             "| step | seconds | RSS at most (sampled) | RSS after | high-water mark so far |", "|---|---|---|---|---|"]
    lines += [f"| {p['phase']} | {p['seconds']:.1f} | {p['rss_mb_sampled_max']:.0f} MB | {p['rss_mb_after']:.0f} MB | "
              f"{p['peak_mb_so_far']:.0f} MB |" for p in r["phases"]]
    return lines + ["", f"High-water mark {r['rss_mb_max']:.0f} MB, {r['rss_mb_end']:.0f} MB at the end "
                        f"(target <= {r['target_mb']} MB at every point).", ""]


def text_section(r: dict) -> list[str]:
    lines = ["## Text models", "", *provenance(r), "| text model | batch 1 p50 / p95 (ms per sentence, via `read`) | "
             "batch 32 p50 (ms per sentence) |", "|---|---|---|"]
    for name, m in r["text_models"].items():
        lines.append(f"| `{name}` | {m['batch1']['p50']:.2f} / {m['batch1']['p95']:.2f} | {m['batch32']['p50']:.3f} |")
    return lines + [""]


def breakdown_section(r: dict) -> list[str]:
    lines = ["## Where the time goes", "", *provenance(r)]
    for name, m in r["models"].items():
        t, fwd = m["ms_per_face"], m["pytorch_forward_ms_per_face"]
        rest = t["predict_proba"] - t["preprocess"] - t["network"]
        lines.append(f"- `{name}` ({m['runtime']}): {t['predict_proba']:.2f} ms per face = preprocessing "
                     f"{t['preprocess']:.2f} + network {t['network']:.2f} + the rest {rest:.2f} (medians timed "
                     "apart). PyTorch's top operators: "
                     + ", ".join(f"{o['op']} {o['share']:.0%}" for o in m["top_operators_pytorch"][:3])
                     + ". Bare PyTorch forward: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in fwd.items())
                     + " ms per face" + (f" (bf16 probabilities within {m['bf16_max_prob_diff']} of fp32 on this "
                                         "face)" if m.get("bf16_max_prob_diff") is not None else ""))
    lines += [f"- `{name}` unavailable: {reason}" for name, reason in r.get("unavailable", {}).items()]
    return lines + [""]


def gradio_client_lines(r: dict | None) -> list[str]:
    """The same app's requests through gradio_client, which spends CPU on the app's two cores too."""
    if not r or not r.get("app"):
        return []
    rows = ", ".join(f"{k.replace('_', ' ')} p50 {d['p50']:.0f} ms (app CPU {_ms(d.get('server_cpu_ms'))} ms, "
                     f"client CPU {_ms(d.get('client_cpu_ms'))} ms)" for k, d in r["app"]["request_ms"].items())
    return [f"Through gradio_client instead, {provenance(r)[0]}: {rows}.", ""]


def precision_section(r: dict) -> list[str]:
    lines = ["## Precision", "", *provenance(r),
             f"Each model in every precision it could be served in, accuracy in that precision (int8: ONNX Runtime, "
             f"static QDQ quantisation, activations calibrated on {r['calibration_images']} train images). Validation "
             "chooses; test reports.", "",
             "| model | precision | validation | test | test, not in train | batch 1 p50 ms per face |",
             "|---|---|---|---|---|---|"]
    for name, by in r["models"].items():
        lines += [f"| `{name}` | {p} | {m['validation']:.2%} | {m['test']:.2%} | {m['test_not_in_train']:.2%} | "
                  f"{m['batch1_ms']['p50']:.2f} |" for p, m in by.items()]
    return lines + [""]


def train_cost_section(reports: Sequence[dict]) -> list[str]:
    """One table per ``results/bench/train_cost*.json`` (runs of different sessions are measured apart)."""
    lines = ["## Training cost of the runs", "",
             "Median seconds per training epoch and the training time to the best validation checkpoint: estimated "
             "as epochs x the median epoch, and as recorded (which counts any time the run was paused or shared the "
             "CPU); validation passes are in neither. A warm-started run counts only its own epochs. Per-step speed "
             "with and without bf16 / channels_last: `bench/throughput.py`.", ""]
    for r in reports:
        lines += [*provenance(r), *train_cost_table(r)]
    return lines


def train_cost_table(r: dict) -> list[str]:
    lines = ["| run / stage | precision, layout | epochs | s/epoch | img/s | best validation (epoch) | to best: "
             "estimated / recorded |", "|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        start = f" (from {Path(run['init_from']).name})" if run.get("init_from") else ""
        note = ", in progress" if run.get("in_progress") else ""
        for s in run["stages"]:
            layout = f"{s['precision']}, {'channels_last' if s['channels_last'] else 'contiguous'}"
            figures = (f"{s['median_epoch_seconds']:.0f} | {s['median_images_per_second']:.0f} | "
                       f"{s['best_val_accuracy']:.2%} ({s['best_epoch']}) | {s['to_best_seconds_median'] / 60:.0f} / "
                       f"{s['to_best_seconds_recorded'] / 60:.0f} min" if s["epochs"] else "| | |")
            lines.append(f"| {run['run']}{start} / {s['stage']}{note} | {layout} | {s['epochs']}/{s['planned_epochs']} | "
                         f"{figures} |")
        if "total_to_best_seconds_median" in run:
            lines.append(f"| {run['run']}, whole run | | | | | | {run['total_to_best_seconds_median'] / 60:.0f} / "
                         f"{run['total_to_best_seconds_recorded'] / 60:.0f} min |")
    return lines + [""]


def fast_pick(lat: dict, acc: dict[tuple[str, str], float]) -> list[str]:
    """The most accurate model within 1 ms per face in batches of 32 (the target counts batch 1)."""
    timed = {n: timed_accuracy(acc, n, m) for n, m in lat.get("models", {}).items() if m["batch32"]["p50"] <= 1.0}
    quick = {n: a for n, a in timed.items() if a is not None}
    if not quick:
        return []
    best = max(quick, key=quick.get)
    return [f"In batches of 32, the most accurate model within 1 ms per face is `{best}` at {quick[best]:.1%} "
            f"({lat['models'][best]['batch32']['p50']:.2f} ms per face); the target asks 70% at batch 1.", ""]


def render(results: Path) -> str:
    acc = accuracies(results)
    peer = results / "fer_peer.json"
    peer_ms = 1000 / json.loads(peer.read_text())["images_per_second"] if peer.exists() else None
    lat, load_r, soak = load(results, "latency"), load(results, "load"), load(results, "soak")
    out = ["# Benchmarks", "", "Written by `python -m bench.report` from `results/bench/*.json`; each section names the "
           "command that measured it. Figures are from one 2-core CPU; other work on the cores skews them (the load "
           "average is recorded).", ""]
    text = load(results, "text_latency")
    session = load(results, "session")
    fresh, precision = load(results, "load_request_sessions"), load(results, "precision")
    out += targets_section(lat, load_r, acc, soak, text, session, fresh, precision)
    out += latency_section(lat, acc, peer_ms) + fast_pick(lat, acc) if lat else []
    out += gradio_client_lines(load(results, "latency_gradio_client"))
    out += text_section(text) if text else []
    out += load_section("Load", load_r) if load_r else []
    gradio_load = load(results, "load_gradio_client")
    out += load_section("Load through gradio_client", gradio_load) if gradio_load else []
    out += load_section("Load, a new session per request", fresh) if fresh else []
    out += load_section("Soak", soak) if soak else []
    out += session_section(session) if session else []
    tp, clip = load(results, "throughput"), load(results, "clip_cost")
    out += throughput_section(tp) if tp else []
    out += clip_section(clip) if clip else []
    out += precision_section(precision) if precision else []
    breakdown = load(results, "breakdown")
    out += breakdown_section(breakdown) if breakdown else []
    costs = [json.loads(f.read_text()) for f in sorted((results / "bench").glob("train_cost*.json"))]
    out += train_cost_section(costs) if costs else []
    missing = [f"- {name}: `{cmd}`" for name, cmd in COMMANDS.items() if load(results, name) is None]
    if missing:
        out += ["## Not measured yet", "", *missing, ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "results"))
    p.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    Path(args.output).write_text(render(Path(args.results)))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
