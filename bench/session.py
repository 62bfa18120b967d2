"""Session: the app's memory through what one browser session and a crowd do to it, in order: start, a photo
with text, the same with Explain, Evaluate on a labelled zip (without and with face detection), the 16 x 25
load test, then four maximum-size 16-bit images at once (the queue's limit). The app's RSS is sampled all along;
``rss_mb_max`` is its high-water mark (VmHWM, which also catches what falls between samples), ``rss_mb_end`` the
resident size at the end.

    python -m bench.session --json results/bench/session.json
    MALLOC_ARENA_MAX=2 python -m bench.session     # the app inherits the environment: try allocator settings

Load only ever goes to 127.0.0.1 (an app started here as ``python app.py`` on a free port).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from bench import common, load
from fermm.paths import SHARED_DATA

TEXT = "I just heard the news and I can't stop smiling!"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per_class", type=int, default=10, help="FER2013 test images per class in the Evaluate zip")
    p.add_argument("--dataset", default=str(SHARED_DATA / "fer2013"), help="FER2013 source for that zip")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=25)
    p.add_argument("--large", type=int, default=4, help="maximum-size 16-bit images sent at once")
    p.add_argument("--json", help="also write the figures here")
    return p.parse_args(argv)


def labelled_zip(dataset: str, per_class: int, folder: Path) -> Path:
    """The first ``per_class`` FER2013 test images of each class, one folder per class, as the Evaluate tab wants."""
    from fermm.data.sources import load_fer, to_arrays
    from fermm.labels import FER7

    images, labels = to_arrays(load_fer(dataset)["test"])
    path = folder / "labelled.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, name in enumerate(FER7):
            for i in np.flatnonzero(labels == k)[:per_class]:
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG")
                z.writestr(f"{name}/{i}.png", buf.getvalue())
    return path


def large_png(folder: Path) -> Path:
    """A 16-bit grey PNG just under the app's 64-megapixel limit (small on disk, as such files are)."""
    from fermm.faces import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) - 1
    ramp = np.linspace(0, 65535, side, dtype=np.float32)
    pixels = (ramp[None, :] * 0.5 + ramp[:, None] * 0.5).astype(np.uint16)
    path = folder / "large16.png"
    Image.fromarray(pixels).save(path, compress_level=1)
    return path


def phase(name: str, pid: int, work: Callable[[], dict | None], log: list[dict]) -> None:
    """Run one step of the session and record the app's memory over it."""
    sampler = load.MemorySampler(pid, 0.2)
    sampler.start()
    t0 = time.perf_counter()
    figures = work() or {}
    samples = [rss for _, rss in sampler.stop()]
    mem = common.memory_mb(pid)
    row = {"phase": name, "seconds": round(time.perf_counter() - t0, 1), "rss_mb_sampled_max": max(samples + [mem["rss"]]),
           "rss_mb_after": mem["rss"], "peak_mb_so_far": mem["peak"], **figures}
    log.append(row)
    print(f"{name:<22} {row['seconds']:>6.1f} s  RSS max {row['rss_mb_sampled_max']:>6.0f} MB, after "
          f"{mem['rss']:>6.0f} MB, high-water mark {mem['peak']:>6.0f} MB")


def answer(c: common.HttpClient, data: list, api: str = "predict") -> dict:
    """One call; a refused request (the app's own message) counts as answered, not as a failure of the bench."""
    try:
        c.call(data, api)
        return {"answer": "ok"}
    except RuntimeError as e:
        return {"answer": str(e)[:200]}


def session(args: argparse.Namespace, app: common.App, tmp: Path) -> list[dict]:
    c = common.HttpClient(app.url)
    models, _ = common.served_models(app.url)
    text_models = [r[0] for r in c.call([], "model_status")[0]["data"] if r[1] == "yes" and r[0].startswith("text")]
    photo = common.save_photo(1, tmp)
    text_model = text_models[0] if text_models else None
    log: list[dict] = []
    phase("start", app.pid, lambda: {"ready_seconds": round(app.ready_s, 1)}, log)
    phase("photo + text", app.pid, lambda: answer(c, [c.upload(photo), TEXT, models, False, False, text_model]), log)
    phase("Explain", app.pid, lambda: answer(c, [c.upload(photo), TEXT, models, False, True, text_model]), log)
    zipped = labelled_zip(args.dataset, args.per_class, tmp)
    for detect in (False, True):
        phase(f"Evaluate (detect {'on' if detect else 'off'})", app.pid,
              lambda: answer(c, [c.upload(zipped, "application/zip"), models, detect], "evaluate"), log)
    load_args = load.parse_args(["--clients", str(args.clients), "--requests", str(args.requests)])
    phase(f"load {args.clients} x {args.requests}", app.pid, lambda: _load(load_args, app, photo, models), log)
    big = large_png(tmp)
    phase(f"{args.large} x 64 MP 16-bit", app.pid, lambda: _large(app.url, big, models, args.large), log)
    c.close()
    return log


def _load(args: argparse.Namespace, app: common.App, photo: Path, models: list[str]) -> dict:
    r = load.timed_round(args, app.url, app.pid, photo, models)
    return {"requests": r["requests"], "errors": r["errors"], "p95_ms": r["latency_ms"]["p95"]}


def _large(url: str, path: Path, models: list[str], n: int) -> dict:
    def one(_: int) -> str:
        c = common.HttpClient(url)
        try:
            return answer(c, [c.upload(path, "image/png"), "", models, False, False, None])["answer"]
        finally:
            c.close()

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    return {"answers": sorted(set(answers))}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.provenance("-m bench.session", argv)
    common.print_header(info)
    with tempfile.TemporaryDirectory() as tmp, common.App() as app:
        log = session(args, app, Path(tmp))
        end = common.memory_mb(app.pid)
    figures = {"phases": log, "rss_mb_max": end["peak"], "rss_mb_end": end["rss"], "target_mb": 1536}
    print(f"app RSS: high-water mark {end['peak']:.0f} MB, {end['rss']:.0f} MB at the end (target <= 1536 MB)")
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
