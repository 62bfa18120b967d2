"""Load: N concurrent clients x M /predict requests against the app on 127.0.0.1 (started here as
`python app.py` on a free port, or a running one given with --url): errors, p50/p95/p99 latency and
requests per second; with --soak SECONDS, the clients run until the time is up while the app's RSS is
sampled, and the report says whether memory grew (mean of the last third of samples vs the first).

    python -m bench.load --clients 16 --requests 25 --repeats 5 --json results/bench/load.json
    python -m bench.load --clients 8 --soak 300 --sessions request --json results/bench/soak.json

Each client is a thread with its own HTTP session (Gradio's plain HTTP API, as curl uses it; --client gradio
uses gradio_client, which costs the shared cores about as much CPU per request as the app does), sending a
640x480 photo with --faces faces to every model the app serves, after one untimed request. Each client keeps
one Gradio session, as a browser tab does (--sessions request: a new session per request, as API calls
without a session hash make; the worst case for the app's session store, and ~10 ms more CPU per request).
Load only ever goes to 127.0.0.1. Memory is read from /proc/<pid>/status (--pid with --url).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from bench import common


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("-m", "--requests", type=int, default=25, help="requests per client (ignored with --soak)")
    p.add_argument("--soak", type=float, default=0, help="run for this many seconds instead of M requests")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed rounds against the same app; the round with the median p95 is reported, all are listed")
    p.add_argument("--sample_every", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--growth_threshold", type=float, default=0.05,
                   help="relative RSS growth (last vs first third) reported as 'grows'")
    p.add_argument("--faces", type=int, default=1, help="faces in the photo sent")
    p.add_argument("--url", help="a running app on 127.0.0.1 (default: start python app.py here)")
    p.add_argument("--pid", type=int, help="process id of the --url app, to read its memory")
    p.add_argument("--app_model", nargs="*", default=[], metavar="NAME=PATH", help="serve a folder as a registry model")
    common.add_client_arg(p)
    p.add_argument("--sessions", choices=("tab", "request"), default="tab",
                   help="tab: one Gradio session per client; request: a new one per request (http client only)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.sessions == "request" and args.client != "http":
        p.error("--sessions request needs --client http (gradio_client always keeps its session)")
    if args.repeats < 1 or (args.soak and args.repeats > 1):
        p.error("--repeats must be at least 1, and 1 with --soak (a soak is one long round)")
    return args


def client_run(url: str, photo: Path, models: list[str], n: int, soak: float,
               start: threading.Barrier, kind: str = "http", session: bool = False) -> tuple[list[float], list[str]]:
    """One client's latencies (ms) and errors: ``n`` requests, or with ``soak`` requests for that many seconds."""
    latencies, errors = [], []
    try:
        c = common.client(url, kind, session=session)
    except Exception as e:
        c = None
        errors.append(f"connect: {type(e).__name__}: {str(e)[:200]}")
    start.wait()  # every client starts together, connected or not, so no one waits forever
    deadline = time.perf_counter() + soak
    if c is None:
        return latencies, errors
    try:
        i = 0
        while (time.perf_counter() < deadline) if soak else (i < n):
            try:
                latencies.append(common.predict(c, photo, models) * 1000)
            except Exception as e:  # every failure is counted and reported, and the client goes on
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            i += 1
    finally:
        c.close()
    return latencies, errors


class MemorySampler(threading.Thread):
    """RSS (MB) of ``pid`` every ``every`` seconds, with the seconds since start, until :meth:`stop`."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while True:
            try:
                self.samples.append((round(time.perf_counter() - t0, 1), common.memory_mb(self.pid)["rss"]))
            except (OSError, KeyError):  # the process is gone: nothing more to sample
                return
            if self._stop_event.wait(self.every):
                return

    def stop(self) -> list[tuple[float, float]]:
        self._stop_event.set()
        self.join()
        return self.samples


def memory_trend(samples: list[tuple[float, float]], threshold: float) -> dict:
    """Mean RSS of the first and last thirds of the samples and whether it grew by more than ``threshold``."""
    rss = [r for _, r in samples]
    if len(rss) < 3:
        return {"samples": samples, "verdict": "too few samples (soak longer or sample more often)"}
    k = len(rss) // 3
    first, last = float(np.mean(rss[:k])), float(np.mean(rss[-k:]))
    growth = (last - first) / first
    return {"samples": samples, "first_third_mb": round(first, 1), "last_third_mb": round(last, 1),
            "growth_mb": round(last - first, 1), "growth": round(growth, 4),
            "verdict": "grows" if growth > threshold else "flat"}


def timed_round(args: argparse.Namespace, url: str, pid: int | None, photo: Path, models: list[str]) -> dict:
    """One round: every client sends its requests (or runs for ``--soak`` seconds) at once."""
    sampler = MemorySampler(pid, args.sample_every) if pid and args.soak else None
    start = threading.Barrier(args.clients + 1, timeout=600)  # never hang on a client that died early
    with ThreadPoolExecutor(args.clients) as pool:
        futures = [pool.submit(client_run, url, photo, models, args.requests, args.soak, start, args.client,
                               args.sessions == "tab") for _ in range(args.clients)]
        start.wait()  # timing starts once every client is connected
        t0, cpu0, client0 = time.perf_counter(), common.cpu_seconds(pid) if pid else 0.0, common.cpu_seconds()
        if sampler:
            sampler.start()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
        cpu, client_cpu = (common.cpu_seconds(pid) - cpu0 if pid else None), common.cpu_seconds() - client0
    latencies = [ms for lat, _ in results for ms in lat]
    errors = Counter(e for _, errs in results for e in errs)
    out = {"requests": len(latencies) + sum(errors.values()), "ok": len(latencies),
           "errors": sum(errors.values()), "error_messages": dict(errors.most_common(5)),
           "seconds": round(wall, 2), "requests_per_second": round(len(latencies) / wall, 2),
           "latency_ms": common.percentiles(latencies, (50, 95, 99)),
           "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(latencies)), 1)}
    if cpu is not None:  # what one request costs the app; 2 cores cap it at 2000 / this requests per second
        out["server_cpu_ms_per_request"] = round(cpu * 1000 / max(1, len(latencies)), 1)
    if sampler:
        out["memory_trend"] = memory_trend(sampler.stop(), args.growth_threshold)
    return out


def median_round(rounds: list[dict]) -> dict:
    """The round with the median p95 (the upper one of an even count; a round with no answer counts as the
    worst), so one lucky or unlucky round never decides a target. With several rounds, every round's
    figures are listed and ``total_requests`` / ``total_errors`` count them all."""
    def p95(r: dict) -> tuple[bool, float]:
        return r["latency_ms"]["p95"] is None, r["latency_ms"]["p95"] or 0.0

    shown = dict(sorted(rounds, key=p95)[len(rounds) // 2])
    if len(rounds) > 1:
        errors = Counter()
        for r in rounds:
            errors.update(r["error_messages"])
        shown.update(total_requests=sum(r["requests"] for r in rounds), total_errors=sum(r["errors"] for r in rounds),
                     error_messages=dict(errors.most_common(5)),
                     rounds=[{"p50": r["latency_ms"]["p50"], "p95": r["latency_ms"]["p95"], "p99": r["latency_ms"]["p99"],
                              "requests_per_second": r["requests_per_second"], "errors": r["errors"],
                              "server_cpu_ms_per_request": r.get("server_cpu_ms_per_request")} for r in rounds])
    return shown


def run_load(args: argparse.Namespace, url: str, pid: int | None, photo: Path) -> dict:
    models, unavailable = common.served_models(url)
    warm = common.client(url, args.client)
    common.predict(warm, photo, models)  # untimed: first-request work is not load
    warm.close()
    memory_before = common.memory_mb(pid) if pid else None
    rounds = [timed_round(args, url, pid, photo, models) for _ in range(args.repeats)]
    out = {"models": models, "unavailable": unavailable, "clients": args.clients, "client": args.client,
           "sessions": args.sessions, "faces": args.faces, **median_round(rounds)}
    if pid:
        out["memory_mb"] = {"before": memory_before, "after": common.memory_mb(pid)}
    return out


def report(r: dict) -> None:
    print(f"app serving: {', '.join(r['models']) or 'no model (face detection only)'}")
    for name, why in r["unavailable"].items():
        print(f"  {name} unavailable in the app: {common.short(why)}")
    lat = r["latency_ms"]
    print(f"{r['clients']} clients ({common.client_words(r)}), {r['faces']}-face 640x480 photo: "
          f"{r['requests']} requests in {r['seconds']:.1f} s, "
          f"{r['ok']} ok, {r['errors']} errors")
    for message, count in r["error_messages"].items():
        print(f"  {count} x {message}")
    print(f"latency ms: p50 {lat['p50']}, p95 {lat['p95']}, p99 {lat['p99']}; "
          f"{r['requests_per_second']:.2f} requests/s")
    if "rounds" in r:
        print(f"{len(r['rounds'])} rounds, p95 ms: {', '.join(str(x['p95']) for x in r['rounds'])} (median round shown); "
              f"{r['total_requests']} requests, {r['total_errors']} errors in all")
    if "server_cpu_ms_per_request" in r:
        print(f"CPU per request: app {r['server_cpu_ms_per_request']} ms, clients {r['client_cpu_ms_per_request']} ms "
              f"(same machine; both share its cores)")
    if "memory_mb" in r:
        b, a = r["memory_mb"]["before"], r["memory_mb"]["after"]
        print(f"app RSS {b['rss']:.0f} MB before, {a['rss']:.0f} MB after (peak {a['peak']:.0f} MB)")
    if "memory_trend" in r:
        t = r["memory_trend"]
        if "growth" in t:
            print(f"soak RSS ({len(t['samples'])} samples): first third {t['first_third_mb']:.0f} MB, last third "
                  f"{t['last_third_mb']:.0f} MB, {t['growth_mb']:+.0f} MB ({t['growth']:+.1%}): {t['verdict']}")
        else:
            print(f"soak RSS: {t['verdict']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.provenance("-m bench.load", argv)
    common.print_header(info)
    with tempfile.TemporaryDirectory() as tmp:
        photo = common.save_photo(args.faces, tmp)
        if args.url:
            figures = run_load(args, common.check_local(args.url), args.pid, photo)
        else:
            with common.App(common.model_env(args.app_model)) as app:
                figures = run_load(args, app.url, app.pid, photo)
    report(figures)
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
