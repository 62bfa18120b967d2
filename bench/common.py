"""Shared by the bench scripts: provenance header and JSON output, percentiles, test photos built from
the bundled example, and the app run as a local subprocess (with its memory read from /proc)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "fermm" / "assets" / "examples" / "astronaut.jpg"
EXAMPLE_FACE = (178, 63, 91, 114)  # x, y, w, h of the one face YuNet finds in the 512x512 example
# offline, no telemetry: the app must not reach the network while it is measured
QUIET_ENV = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}


# --------------------------------------------------------------------------- provenance and output


def provenance(script: str, argv: Sequence[str] | None) -> dict:
    """command, commit, date and hardware, recorded with every figure."""
    from fermm.evaluation.metrics import command_line, git_commit, hardware

    return {"command": command_line(script, argv), "commit": git_commit(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "hardware": hardware(),
            # other work on the 2 cores skews every figure (2 torch threads on busy cores: ~10x at batch 1)
            "load_average_1min": round(os.getloadavg()[0], 2)}


def start(script: str, argv: Sequence[str] | None, threads: int | None = None) -> dict:
    """A bench's opening: torch on ``threads`` threads (if given), then its provenance, printed and returned."""
    if threads is not None:
        import torch  # lazy: the app-only benches never need it here

        torch.set_num_threads(threads)
    info = provenance(script, argv)
    if threads is not None:
        info["threads"] = threads
    print_header(info)
    return info


def print_header(info: dict) -> None:
    for key in ("command", "commit", "date", "hardware", "load_average_1min", "threads"):
        if key in info:
            print(f"# {key}: {info[key]}")
    print()


def write_json(path: str | None, info: dict, figures: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({**info, **figures}, indent=2) + "\n")
        print(f"\nwrote {path}")


def short(reason: str, n: int = 160) -> str:
    """A reason cut for a report line (the JSON keeps it whole)."""
    return reason if len(reason) <= n else reason[:n - 3] + "..."


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def percentiles(values_ms: Sequence[float], qs: Sequence[int] = (50, 95)) -> dict[str, float]:
    """{"p50": ..., "p95": ...} in ms, rounded for printing and JSON."""
    arr = np.asarray(values_ms, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in qs} if len(arr) else {f"p{q}": None for q in qs}


# --------------------------------------------------------------------------- test photos


def example_face(margin: float = 0.45) -> Image.Image:
    """The example's face with a margin around it, as a square crop (so pasted copies still look like faces)."""
    x, y, w, h = EXAMPLE_FACE
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    box = tuple(round(v) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    return Image.open(EXAMPLE).convert("RGB").crop(box)


def photo(n_faces: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo of ``size`` with 1 face (the example scaled to fit) or ``n_faces`` copies of its face in a row."""
    canvas = Image.new("RGB", size, (128, 128, 128))
    w, h = size
    if n_faces == 1:
        im = ImageOps.contain(Image.open(EXAMPLE).convert("RGB"), size)  # scaled up or down to fit
        canvas.paste(im, ((w - im.size[0]) // 2, (h - im.size[1]) // 2))
        return canvas
    side = min(w // n_faces - 8, h // 2)  # n copies side by side, 8 px apart
    face = example_face().resize((side, side), Image.BILINEAR)
    for i in range(n_faces):
        canvas.paste(face, (4 + i * (side + 8), (h - side) // 2))
    return canvas


def save_photo(n_faces: int, folder: str | Path, size: tuple[int, int] = (640, 480)) -> Path:
    path = Path(folder) / f"faces{n_faces}_{size[0]}x{size[1]}.jpg"
    photo(n_faces, size).save(path, quality=90)
    return path


# --------------------------------------------------------------------------- the app as a subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_local(url: str) -> str:
    """The URL, if it points at this machine; load is never sent anywhere else."""
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to send load to {url}: only 127.0.0.1 is allowed")
    return url.rstrip("/") + "/"


def model_env(app_models: Sequence[str]) -> dict[str, str]:
    """NAME=PATH pairs -> FERMM_MODEL_<NAME> variables, so the app serves folders as registry models."""
    env = {}
    for pair in app_models:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--app_model expects NAME=PATH, got {pair!r}")
        env[f"FERMM_MODEL_{name.upper()}"] = str(Path(path).resolve())
    return env


class App:
    """``python app.py`` on a free port of 127.0.0.1; ``started`` and ``ready_s`` time its start."""

    def __init__(self, extra_env: dict[str, str] | None = None, timeout: float = 300.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, **QUIET_ENV, **(extra_env or {}), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(self.port)}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"fermm_bench_app_{self.port}.log", "w+")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.ready_s = self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> float:
        """Seconds until the page answers (models are loaded by then: build_demo loads them all)."""
        while time.perf_counter() - self.started < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app not ready after {timeout:.0f} s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process in MB: ``rss`` now and ``peak`` (VmHWM, the high-water mark)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB -> MB
    return {"rss": round(fields["VmRSS"], 1), "peak": round(fields["VmHWM"], 1)}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far, children excluded; this process by default.
    Per request it says what a request costs the server, whatever the waits."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime in clock ticks


# --------------------------------------------------------------------------- clients


def client_words(r: dict, tab: str = "one session each") -> str:
    """Which client a bench's record used and how it held Gradio sessions, in words (HTTP runs recorded before
    the "sessions" field opened a new session per request)."""
    if r.get("client") != "http":
        return "gradio_client"
    sessions = r.get("sessions", "request")
    return f"plain HTTP API, {tab if sessions == 'tab' else 'a new session per request'}"


def add_client_arg(p, how: str = "") -> None:
    """The benches' --client flag (latency and load)."""
    p.add_argument("--client", choices=("http", "gradio"), default="http",
                   help=f"http: Gradio's plain HTTP API{' ' + how if how else ''}, light on the shared cores; "
                        "gradio: gradio_client")


def client(url: str, kind: str = "gradio", session: bool = False):
    """A quiet gradio_client (no telemetry, output files not downloaded: latency is the answer's), or with
    ``kind="http"`` the lighter :class:`HttpClient` (``session``: see there; gradio_client always keeps one)."""
    if kind == "http":
        return HttpClient(url, session=session)
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def served_models(url: str) -> tuple[list[str], dict[str, str]]:
    """Image models the app can serve (the /predict model list; text models are another input, and the
    photos sent carry no text), and the reasons of the models it cannot serve."""
    from fermm.models import list_models

    c = client(url)
    try:
        rows = c.predict(api_name="/model_status")["data"]
    finally:
        c.close()
    image = set(list_models("image"))
    return [r[0] for r in rows if r[1] == "yes" and r[0] in image], {r[0]: r[3] for r in rows if r[1] != "yes"}


def predict(c, path: str | Path, models: Sequence[str]) -> float:
    """One /predict request (photo, no text, ``models``, detect faces, no explanations); seconds taken."""
    if isinstance(c, HttpClient):
        return c.predict(path, models)
    from gradio_client import handle_file

    t0 = time.perf_counter()
    c.predict(handle_file(str(path)), "", list(models), False, False, api_name="/predict")
    return time.perf_counter() - t0


class HttpClient:
    """Gradio's plain HTTP API (upload, ``POST /gradio_api/call/predict``, then its event stream), as curl
    would use it: the server does the same work as for gradio_client, the client far less, which matters
    when the load generator shares the app's two cores. By default every call is a new Gradio session (no
    session hash is sent): the worst case for the app's session store, which ``fermm.serve.ui.launch_options``
    caps, and ~10 ms of the app's CPU per call to set the session up. With ``session=True`` the calls share one
    session, as a browser tab's do."""

    def __init__(self, url: str, timeout: float = 120.0, session: bool = False):
        import httpx

        self.api = url.rstrip("/") + "/gradio_api"
        self.http = httpx.Client(timeout=timeout)
        self.session_hash = uuid.uuid4().hex[:11] if session else None

    def predict(self, path: str | Path, models: Sequence[str]) -> float:
        t0 = time.perf_counter()
        self.call([self.upload(path), "", list(models), False, False, None])
        return time.perf_counter() - t0

    def upload(self, path: str | Path, mime: str = "image/jpeg") -> dict:
        """Send a file to the app; the reference an API call takes in its place."""
        with open(path, "rb") as f:
            r = self.http.post(f"{self.api}/upload", files={"files": (Path(path).name, f, mime)})
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}

    def call(self, data: list, api_name: str = "predict") -> list:
        """One API call with these inputs; its answer (see :meth:`_result`)."""
        body = {"data": data} if self.session_hash is None else {"data": data, "session_hash": self.session_hash}
        r = self.http.post(f"{self.api}/call/{api_name}", json=body)
        r.raise_for_status()
        return self._result(r.json()["event_id"], api_name)

    def _result(self, event_id: str, api_name: str = "predict") -> list:
        """The answer's data; raises with the app's own message when the event ends in an error."""
        event = ""
        with self.http.stream("GET", f"{self.api}/call/{api_name}/{event_id}") as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    data = json.loads(line.split(":", 1)[1]) if line[5:].strip() else None
                    if event == "error":
                        raise RuntimeError(f"the app answered with an error: "
                                           f"{data.get('error') if isinstance(data, dict) else data}")
                    return data
        raise RuntimeError(f"the event stream of {event_id} ended without an answer")

    def close(self) -> None:
        self.http.close()
