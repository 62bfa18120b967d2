"""A local stand-in for the Hugging Face Hub HTTP API, enough for huggingface_hub's real client to
create repos, upload folders (regular, non-LFS commits) and download snapshots. Point the client at it
with ``HF_ENDPOINT=http://127.0.0.1:PORT``. Repos live in memory: ``hub.repos[(type, id)][path] = bytes``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class MockHub:
    def __init__(self, fail_commits: bool = False):
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: dict[tuple[str, str], str] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes of LFS uploads
        self.fail_commits = fail_commits
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                hub._dispatch(self, "POST")

            def do_GET(self):
                hub._dispatch(self, "GET")

            def do_HEAD(self):
                hub._dispatch(self, "HEAD")

            def do_PUT(self):
                hub._dispatch(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "MockHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routing

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{method} {path}")
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
        routes = [
            ("POST", r"^/api/repos/create$", self._create),
            ("POST", r"^/api/validate-yaml$", lambda h, m, b: self._json(h, {"errors": [], "warnings": []})),
            ("POST", r"^/api/(model|dataset|space)s/(.+?)/preupload/(.+)$", self._preupload),
            ("POST", r"^/api/(model|dataset|space)s/(.+?)/commit/(.+)$", self._commit),
            ("POST", r"^/(datasets/|spaces/)?(.+?)\.git/info/lfs/objects/batch$", self._lfs_batch),
            ("PUT", r"^/lfs-upload/([0-9a-f]{64})$", self._lfs_put),
            ("GET", r"^/api/(model|dataset|space)s/(.+?)/tree/([^/]+)(/.*)?$", self._tree),
            ("GET", r"^/api/(model|dataset|space)s/(.+?)/revision/(.+)$", self._info),
            ("GET", r"^/api/(model|dataset|space)s/(.+?)$", self._info),
            ("GET|HEAD", r"^/(datasets/|spaces/)?(.+?)/resolve/([^/]+)/(.+)$", self._resolve),
        ]
        for verb, pattern, fn in routes:
            m = re.match(pattern, path)
            if method in verb.split("|") and m:
                return fn(h, m, body)
        self._json(h, {"error": f"mock hub: no route for {method} {path}"}, status=404)

    def _json(self, h, obj, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    # ------------------------------------------------------------------ API

    def _create(self, h, m, body) -> None:
        req = json.loads(body or b"{}")
        repo_type = req.get("type") or "model"
        repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
        self.repos.setdefault((repo_type, repo_id), {})
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
        self._json(h, {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id})

    def _preupload(self, h, m, body) -> None:
        """Parquet files go through LFS, as on the Hub; the rest inline in the commit."""
        files = json.loads(body).get("files", [])
        self._json(h, {"files": [{"path": f["path"], "shouldIgnore": False,
                                  "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular"}
                                 for f in files]})

    def _lfs_batch(self, h, m, body) -> None:
        objects = json.loads(body).get("objects", [])
        self._json(h, {"transfer": "basic", "objects": [
            {"oid": o["oid"], "size": o["size"], "authenticated": True,
             "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}} for o in objects]})

    def _lfs_put(self, h, m, body) -> None:
        if hashlib.sha256(body).hexdigest() != m.group(1):
            return self._json(h, {"error": "mock hub: LFS object does not match its oid"}, status=400)
        self.lfs[m.group(1)] = body
        self._json(h, {})

    def _commit(self, h, m, body) -> None:
        if self.fail_commits:
            return self._json(h, {"error": "mock hub: you have no write access here (simulated refusal)"}, status=403)
        repo = self.repos.setdefault((m.group(1), m.group(2)), {})
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item.get("key") == "file":
                value = item["value"]
                repo[value["path"]] = base64.b64decode(value["content"])
            elif item.get("key") == "lfsFile":
                repo[item["value"]["path"]] = self.lfs[item["value"]["oid"]]
            elif item.get("key") == "deletedFile":
                repo.pop(item["value"]["path"], None)
        oid = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in repo.items()))
                           .encode()).hexdigest()
        self.commits[(m.group(1), m.group(2))] = oid
        self._json(h, {"commitUrl": f"{self.url}/{m.group(2)}/commit/{oid}", "commitOid": oid,
                       "pullRequestUrl": None})

    def _info(self, h, m, body) -> None:
        key = (m.group(1), m.group(2))
        if key not in self.repos:
            return self._json(h, {"error": "Repository not found"}, status=404,
                              headers={"X-Error-Code": "RepoNotFound"})
        files = self.repos[key]
        self._json(h, {"id": m.group(2), "sha": self.commits.get(key, "0" * 40), "private": False,
                       "siblings": [{"rfilename": p, "size": len(b)} for p, b in files.items()]})

    def _tree(self, h, m, body) -> None:
        key = (m.group(1), m.group(2))
        if key not in self.repos:
            return self._json(h, {"error": "Repository not found"}, status=404,
                              headers={"X-Error-Code": "RepoNotFound"})
        under = (m.group(4) or "").strip("/")
        prefix = f"{under}/" if under else ""
        files = {p: b for p, b in self.repos[key].items() if p.startswith(prefix)}
        if under and not files:  # as the Hub answers for a folder that does not exist
            return self._json(h, {"error": "Entry not found"}, status=404, headers={"X-Error-Code": "EntryNotFound"})
        if "recursive=true" not in (urlparse(h.path).query or "").lower():  # one level, folders as folders
            dirs = sorted({prefix + p[len(prefix):].split("/")[0] for p in files if "/" in p[len(prefix):]})
            entries = [{"type": "directory", "path": d, "oid": "0" * 40} for d in dirs]
            files = {p: b for p, b in files.items() if "/" not in p[len(prefix):]}
        else:
            entries = []
        self._json(h, entries + [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                 for p, b in files.items()])

    def _resolve(self, h, m, body) -> None:
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
        key = (repo_type, m.group(2))
        data = self.repos.get(key, {}).get(m.group(4))
        if data is None:
            return self._json(h, {"error": "Entry not found"}, status=404, headers={"X-Error-Code": "EntryNotFound"})
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        h.send_header("X-Repo-Commit", self.commits.get(key, "0" * 40))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
