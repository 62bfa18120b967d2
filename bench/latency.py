"""Latency: per face for every model, face detection by image size, and the app end to end (a photo with
one face, and with five) against `python app.py` started here on a free port of 127.0.0.1; with the app's
peak memory and its cold start (launch to first answer).

    python -m bench.latency --repeats 50 --json results/bench/latency.json

Models: every registry model that loads (FERMM_MODEL_<NAME>, checkpoints/<name>, or a cached Hub copy)
and any folders given with --models; the others are reported as unavailable. The app serves the
registry models; --app_model NAME=PATH makes it serve a folder under a registry name (e.g. before a
checkpoint exists). Each figure is p50/p95 over --repeats timed runs after warm-up, on the app's threads per
call (FERMM_THREADS, default one), each face read in the app's views (--tta; the face and its mirror).
End-to-end latency includes the upload, the queue and detection, not fetching the boxed image back. The
requests go through Gradio's plain HTTP API in one session, as a browser tab's do (--client gradio: through
gradio_client, which spends about as much CPU per request as the app on the same two cores).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from bench import common
from fermm.models import list_models
from fermm.serve import threads
from fermm.serve.predict import SERVED_TTA

SIZES = ("320x240", "640x480", "1280x960", "4000x3000")
# sentences of the lengths people type beside a photo (GoEmotions' median is 18 MiniLM tokens)
SENTENCES = ("The meeting is at noon.", "I can't believe we actually won the whole thing!",
             "My grandmother passed away last night and I keep thinking about her.",
             "That smell in the kitchen is absolutely revolting.", "wow", "Why would anyone do that to a dog?",
             "I'm so nervous about tomorrow's interview, what if I freeze?",
             "Honestly this is the best birthday I have ever had, thank you all so much for coming.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list_models(), help="registry names or model folders")
    p.add_argument("--text_models", nargs="*", default=list_models("text"), help="text models: ms per sentence")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per figure")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch and ONNX Runtime threads per model call (default: the app's, FERMM_THREADS or 1)")
    p.add_argument("--tta", default=SERVED_TTA, choices=("none", "flip", "tencrop"),
                   help="views each face is read in (default: the app's)")
    p.add_argument("--sizes", nargs="*", default=list(SIZES), help="photo sizes WxH for face detection")
    p.add_argument("--app_model", nargs="*", default=[], metavar="NAME=PATH", help="serve a folder as a registry model")
    common.add_client_arg(p, "in one session")
    p.add_argument("--cold_starts", type=int, default=1, help="app launches timed to their first answer")
    p.add_argument("--skip_models", action="store_true")
    p.add_argument("--skip_detection", action="store_true")
    p.add_argument("--skip_app", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    args.threads = threads.app_threads() if args.threads is None else args.threads
    if args.cold_starts < 1 and not args.skip_app:
        p.error("--cold_starts must be at least 1: the request timings run on the last launched app")
    return args


def loaded(names: Sequence[str]) -> tuple[dict, dict]:
    """({name: model} of those that load, {name: why not} of the others: never fatal)."""
    from fermm.models import load_model

    models, unavailable = {}, {}
    for name in names:
        try:
            models[name] = load_model(name)
        except Exception as e:
            unavailable[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
    return models, unavailable


def model_latency(names: Sequence[str], repeats: int, warmup: int, tta: str) -> tuple[dict, dict]:
    """ms per face at batch 1 (one call per face) and batch 32 (call time / 32), on the example's face crop, each
    face read in ``tta``'s views (the app's: fermm.serve.predict.SERVED_TTA)."""
    from fermm.faces import find_and_crop, load_image
    from fermm.models.runtime import precision_of

    _, crops = find_and_crop(load_image(common.EXAMPLE))
    models, unavailable = loaded(names)
    out = {}
    for name, model in models.items():
        b1 = common.timed(lambda: model.predict_proba(crops[:1], tta=tta, batch_size=1), repeats, warmup)
        b32 = common.timed(lambda: model.predict_proba(crops[:1] * 32, tta=tta, batch_size=32), repeats, warmup)
        out[name] = {"batch1": common.percentiles(b1),
                     "batch32": common.percentiles([t / 32 for t in b32]),
                     "runtime": precision_of(model), "tta": tta}
    return out, unavailable


def text_latency(names: Sequence[str], repeats: int, warmup: int) -> tuple[dict, dict]:
    """ms per sentence: batch 1 through ``read`` (the app's path: cleaning, the vocabulary check, the model),
    cycling over :data:`SENTENCES`, and batch 32 through ``predict_text``."""
    models, unavailable = loaded(names)
    out = {}
    for name, model in models.items():
        turn = iter(range(10**9))
        b1 = common.timed(lambda: model.read(SENTENCES[next(turn) % len(SENTENCES)]), repeats, warmup)
        b32 = common.timed(lambda: model.predict_text(list(SENTENCES) * 4), max(1, repeats // 5), 1)
        out[name] = {"batch1": common.percentiles(b1), "batch32": common.percentiles([t / 32 for t in b32])}
    return out, unavailable


def detection_latency(sizes: Sequence[str], repeats: int, warmup: int) -> dict:
    from fermm.faces import default_detector

    detector = default_detector()
    out = {}
    for size in sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        im = common.photo(1, (w, h))
        n = len(detector.detect(im))
        out[size] = {**common.percentiles(common.timed(lambda: detector.detect(im), repeats, warmup)), "faces": n}
    return out


def cold_start(env: dict[str, str], photo: Path, kind: str) -> tuple[common.App, dict]:
    """A fresh app and the seconds from launch to its page answering and to its first /predict answer."""
    app = common.App(env)
    try:
        c = common.client(app.url, kind, session=True)
        common.predict(c, photo, common.served_models(app.url)[0])
        c.close()
    except BaseException:
        app.stop()
        raise
    return app, {"ready_s": round(app.ready_s, 2), "first_answer_s": round(time.perf_counter() - app.started, 2)}


def app_latency(args: argparse.Namespace, folder: Path) -> dict:
    env = {**common.model_env(args.app_model), "FERMM_THREADS": str(args.threads)}  # the app as the models were timed
    photos = {n: common.save_photo(n, folder) for n in (1, 5)}
    starts = []
    for i in range(args.cold_starts):
        app, start = cold_start(env, photos[1], args.client)
        starts.append(start)
        if i < args.cold_starts - 1:
            app.stop()
    with app:
        first = common.memory_mb(app.pid)  # every served model is loaded before the page answers
        models, unavailable = common.served_models(app.url)
        c = common.client(app.url, args.client, session=True)
        e2e = {}
        try:
            for n, path in photos.items():
                cpu0, client0 = common.cpu_seconds(app.pid), common.cpu_seconds()
                ms = common.timed(lambda: common.predict(c, path, models), args.repeats, 1)
                cpu, client = common.cpu_seconds(app.pid) - cpu0, common.cpu_seconds() - client0
                e2e[f"{n}_face" + "s" * (n > 1)] = {
                    **common.percentiles(ms), "server_cpu_ms": round(cpu * 1000 / (args.repeats + 1), 1),
                    "client_cpu_ms": round(client * 1000 / (args.repeats + 1), 1)}
        finally:
            c.close()
        after = common.memory_mb(app.pid)
    return {"models": models, "unavailable": unavailable, "client": args.client, "sessions": "tab",
            "cold_start": starts, "request_ms": e2e,
            "memory_mb": {"after_first_answer": first, "after_all_requests": after}}


def _latency_table(kind: str, unit: str, rows: dict, unavailable: dict) -> None:
    print(f"{kind:<28} {'b1 p50':>8} {'b1 p95':>8} {'b32 p50':>8} {'b32 p95':>8}   (ms per {unit})")
    for name, m in rows.items():
        print(f"{name:<28} {m['batch1']['p50']:>8.2f} {m['batch1']['p95']:>8.2f} "
              f"{m['batch32']['p50']:>8.3f} {m['batch32']['p95']:>8.3f}")
    for name, why in unavailable.items():
        print(f"{name:<28} unavailable: {common.short(why)}")


def report(figures: dict) -> None:
    if "models" in figures:
        _latency_table("model", "face", figures["models"], figures["unavailable"])
    if "text_models" in figures:
        print()
        _latency_table("text model", "sentence", figures["text_models"], figures["text_unavailable"])
    if "detection" in figures:
        print(f"\n{'detection':<28} {'p50 ms':>8} {'p95 ms':>8} {'faces':>6}")
        for size, d in figures["detection"].items():
            print(f"{size:<28} {d['p50']:>8.2f} {d['p95']:>8.2f} {d['faces']:>6}")
    if "app" in figures:
        a = figures["app"]
        print(f"\napp serving: {', '.join(a['models']) or 'no model (face detection only)'}")
        for name, why in a["unavailable"].items():
            print(f"  {name} unavailable in the app: {common.short(why)}")
        print(f"{'request 640x480':<28} {'p50 ms':>8} {'p95 ms':>8} {'app CPU ms':>10} {'client CPU ms':>13}")
        for key, d in a["request_ms"].items():
            print(f"{key.replace('_', ' '):<28} {d['p50']:>8.1f} {d['p95']:>8.1f} "
                  f"{d.get('server_cpu_ms', float('nan')):>10.1f} {d.get('client_cpu_ms', float('nan')):>13.1f}")
        m = a["memory_mb"]
        for when, mem in m.items():
            print(f"app memory {when.replace('_', ' ')}: RSS {mem['rss']:.0f} MB, peak (VmHWM) {mem['peak']:.0f} MB")
        for i, s in enumerate(a["cold_start"], 1):
            print(f"cold start {i}: page answers after {s['ready_s']:.1f} s, first prediction after "
                  f"{s['first_answer_s']:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.start("-m bench.latency", argv, args.threads)
    figures: dict = {}
    if not args.skip_models:
        figures["models"], figures["unavailable"] = model_latency(args.models, args.repeats, args.warmup, args.tta)
        figures["text_models"], figures["text_unavailable"] = text_latency(args.text_models, args.repeats, args.warmup)
    if not args.skip_detection:
        figures["detection"] = detection_latency(args.sizes, args.repeats, args.warmup)
    if not args.skip_app:
        with tempfile.TemporaryDirectory() as tmp:
            figures["app"] = app_latency(args, Path(tmp))
    report(figures)
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
