"""A local stand-in for the Hugging Face Hub (and for plain download URLs), for tests without network.

``FakeHub`` is a threaded HTTP server on 127.0.0.1 (random port) that answers the calls huggingface_hub 2.x makes
for ``hf_hub_download``, ``snapshot_download``, ``create_repo`` and ``upload_folder``, and serves plain files for
URL downloads. Tests put files in and read uploads back through plain dicts:

    hub.add_file("org/repo", "model.safetensors", data)   # served at {hub.url}/org/repo/resolve/main/...
    hub.urls["/weights/x.pth"] = data                      # served at hub.url + "/weights/x.pth"
    hub.faults["/weights/x.pth"] = "truncate"              # or "drop": break that URL on purpose
    hub.repos["org/repo"]["config.json"]                   # what push_to_hub uploaded

The ``fake_hub`` fixture starts one per test and points huggingface_hub at it (endpoint, caches, token, online),
so nothing below huggingface_hub is mocked; ``tests/conftest.py`` makes it available to every test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest


def git_blob_sha(data: bytes) -> str:
    """Git's object id of a file (sha1 of ``blob <size>\\0`` + content), as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """State of the fake Hub: repositories, plain URL files, injected faults, and a request log.

    Attributes:
        repos: ``{repo_id: {path: bytes}}`` for the current commit of each repository.
        commits: ``{repo_id: 40-hex commit sha}``; changes whenever the repository's files change.
        urls: ``{url_path: bytes}`` for plain URL downloads (path starting with ``/``).
        faults: ``{url_path: "truncate" | "drop"}``: serve half the body, or close the connection without answer.
        requests: ``(method, path)`` of every request, in order.
        url: Base URL, ``http://127.0.0.1:<port>``.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.urls: dict[str, bytes] = {}
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.commit_messages: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_file(self, repo_id: str, path: str, data: bytes) -> str:
        """Adds (or replaces) a file in a repository, creating it if needed; returns the new commit sha."""
        with self._lock:
            self.repos.setdefault(repo_id, {})[path] = data
            return self._new_commit(repo_id)

    def _new_commit(self, repo_id: str) -> str:
        files = self.repos[repo_id]
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        self.commits[repo_id] = digest.hexdigest()
        return self.commits[repo_id]

    def resolve(self, repo_id: str, revision: str) -> str | None:
        """The commit sha a revision names (``main`` or the sha itself), or ``None``."""
        sha = self.commits.get(repo_id)
        return sha if revision in ("main", sha) else None


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # keep pytest output clean
            pass

        # ---------------------------------------------------------------- helpers
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str, message: str, sha: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message}
            if sha:
                headers["X-Repo-Commit"] = sha
            self._json(status, {"error": message}, headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        # ---------------------------------------------------------------- routes
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            path = unquote(parsed.path)
            hub.requests.append((self.command, self.path))
            parts = path.strip("/").split("/")
            if path in hub.urls:
                return self._serve_url(path)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
                return self._revision_info(f"{parts[2]}/{parts[3]}", parts[5])
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":
                return self._tree(f"{parts[2]}/{parts[3]}", parts[5], parse_qs(parsed.query))
            if len(parts) == 4 and parts[:2] == ["api", "models"]:
                return self._revision_info(f"{parts[2]}/{parts[3]}", "main")
            return self._error(404, "NotFound", f"no route for {path}")  # includes /api/agent-harnesses

        def _serve_url(self, path: str) -> None:
            data = hub.urls[path]
            fault = hub.faults.get(path)
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)  # close without any response
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "truncate":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data)

        def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            sha = hub.resolve(repo_id, revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            data = hub.repos[repo_id].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", sha)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(data)}"', "Accept-Ranges": "bytes"}
            start = 0
            range_header = self.headers.get("Range", "")
            if range_header.startswith("bytes=") and self.command == "GET":
                start = int(range_header[len("bytes=") :].split("-")[0] or 0)
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                return self._send(206, data[start:], headers)
            return self._send(200, data, headers)

        def _revision_info(self, repo_id: str, revision: str) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            sha = hub.resolve(repo_id, revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = [{"rfilename": path} for path in sorted(hub.repos[repo_id])]
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings, "private": False})

        def _tree(self, repo_id: str, revision: str, query: dict) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if hub.resolve(repo_id, revision) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            entries = [
                {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
                for path, data in sorted(hub.repos[repo_id].items())
            ]
            folders = sorted({path.rsplit("/", 1)[0] for path in hub.repos[repo_id] if "/" in path})
            entries += [{"type": "directory", "path": folder, "oid": "0" * 40} for folder in folders]
            self._json(200, entries)

        def do_POST(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append(("POST", self.path))
            body = self._body()
            parts = path.strip("/").split("/")
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body or b"{}"))
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                payload = json.loads(body or b"{}")
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in payload.get("files", [])
                ]
                return self._json(200, {"files": files, "commitOid": hub.commits.get(f"{parts[2]}/{parts[3]}")})
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                return self._commit(f"{parts[2]}/{parts[3]}", body)
            return self._error(404, "NotFound", f"no route for POST {path}")

        def _create_repo(self, payload: dict) -> None:
            name, org = payload.get("name"), payload.get("organization")
            repo_id = f"{org}/{name}" if org else str(name)
            if repo_id in hub.repos:  # the Hub's 409 body still carries the url, which huggingface_hub reads
                headers = {"X-Error-Code": "RepoExists", "X-Error-Message": "You already created this model repo"}
                return self._json(
                    409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}, headers
                )
            with hub._lock:
                hub.repos[repo_id] = {}
                hub._new_commit(repo_id)
            self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _commit(self, repo_id: str, body: bytes) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            with hub._lock:
                for line in body.decode().splitlines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "header":
                        hub.commit_messages.setdefault(repo_id, []).append(value.get("summary", ""))
                    elif item["key"] == "file":
                        hub.repos[repo_id][value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "deletedFile":
                        hub.repos[repo_id].pop(value["path"], None)
                sha = hub._new_commit(repo_id)
            self._json(
                200, {"commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "pullRequestUrl": None}
            )

    return Handler


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> Iterator[FakeHub]:
    """Starts a :class:`FakeHub` and points huggingface_hub at it for one test.

    Patches ``huggingface_hub.constants`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HOME``,
    ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=False``, ``HF_HUB_DISABLE_TELEMETRY``, ``AGENT_HARNESSES_PATH``): they are
    read from the environment once, at import, and looked up on ``constants`` at call time. It also sets
    ``HF_TOKEN``, ``HF_HOME`` and ``HF_HUB_CACHE`` in the environment; the cache lives under ``tmp_path / "hf"``.
    Yields the hub.
    """
    from huggingface_hub import constants

    hub = FakeHub().start()
    home = tmp_path / "hf"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    if hasattr(constants, "AGENT_HARNESSES_PATH"):  # cached answer of /api/agent-harnesses, kept out of ~/.cache
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield hub
    finally:
        hub.close()
