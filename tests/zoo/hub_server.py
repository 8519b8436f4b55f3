"""A local stand-in for the Hugging Face resolve endpoint (and a plain file URL), on 127.0.0.1.

    HEAD/GET /{owner}/{repo}/resolve/{revision}/{path}   what huggingface_hub asks
    GET      /files/{name}                               a plain URL (gdown's non-Drive path)

HEAD answers with the headers huggingface_hub reads (ETag = the sha256, X-Repo-Commit,
Content-Length); GET honours `Range: bytes=N-` (206 + Content-Range). A file added with
`cdn=` another HubServer is answered as the Hub answers a large (LFS) file: a 302 to that
server (another origin: a CDN) with X-Linked-Etag and X-Linked-Size. A missing file is a
404 with X-Error-Code EntryNotFound, as the Hub sends. `drop_after` makes the next
`drops` GETs send that many bytes of the body and close the connection: a real dropped
transfer, which the client sees as a short body; `stall_after` makes the next GET send that
many bytes and wait (for `release`), as a transfer in progress that its client is killed
in. Every request is logged (method, path, Range header). A threaded http.server on a free
port; nothing here reaches outside.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    files: dict[str, bytes] = field(default_factory=dict)  # "owner/repo/rev/path" or "files/x"
    redirects: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # key -> CDN
    drop_after: int | None = None
    drops: int = 0
    stall_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)  # Authorization headers seen
    lock: threading.Lock = field(default_factory=threading.Lock)


def _key(path: str) -> str | None:
    parts = path.lstrip("/").split("/")
    if len(parts) >= 5 and parts[2] == "resolve":
        return "/".join(parts[:2] + parts[3:])
    if len(parts) == 2 and parts[0] == "files":
        return path.lstrip("/")
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _find(self) -> bytes | None:
        self._note_authorization()
        with self.state.lock:
            self.state.log.append((self.command, self.path, self.headers.get("Range")))
        key = _key(self.path.split("?")[0])
        return None if key is None else self.state.files.get(key)

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("X-Error-Message", "Entry not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _headers(self, data: bytes, status: int, start: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()

    def _note_authorization(self) -> None:
        if self.headers.get("Authorization"):
            with self.state.lock:
                self.state.authorizations.append(self.headers["Authorization"])

    def _redirect(self) -> bool:
        key = _key(self.path.split("?")[0])
        if key in self.state.redirects:
            self._note_authorization()
            with self.state.lock:
                self.state.log.append((self.command, self.path, self.headers.get("Range")))
        if key not in self.state.redirects:
            return False
        location, sha256, size = self.state.redirects[key]
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("X-Linked-Etag", f'"{sha256}"')
        self.send_header("X-Linked-Size", str(size))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_HEAD(self) -> None:  # noqa: N802 -- http.server's name
        if self._redirect():
            return
        data = self._find()
        if data is None:
            return self._not_found()
        self._headers(data, 200, 0)

    def do_GET(self) -> None:  # noqa: N802
        if self._redirect():
            return
        data = self._find()
        if data is None:
            return self._not_found()
        start = 0
        asked = self.headers.get("Range")
        if asked and asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[len("bytes=") : -1])
        self._headers(data, 206 if start else 200, start)
        with self.state.lock:
            drop = self.state.drop_after is not None and self.state.drops > 0
            if drop:
                self.state.drops -= 1
        body = data[start:]
        with self.state.lock:
            stall, self.state.stall_after = self.state.stall_after, None
        if stall is not None:
            self.wfile.write(body[:stall])
            self.wfile.flush()
            self.state.release.wait(60)
            self.close_connection = True
            return
        if drop:
            self.wfile.write(body[: self.state.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up
            super().handle_error(request, client_address)


class HubServer:
    """`with HubServer() as hub: hub.url ...` -- the server thread stops on exit."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo: str, revision: str, path: str, data: bytes,
            cdn: HubServer | None = None) -> None:  # fmt: skip
        key = f"{repo}/{revision}/{path}"
        if cdn is None:
            self.state.files[key] = data
            return
        sha256 = hashlib.sha256(data).hexdigest()
        self.state.redirects[key] = (cdn.add_plain(f"lfs-{sha256}", data), sha256, len(data))

    def add_plain(self, name: str, data: bytes) -> str:
        self.state.files[f"files/{name}"] = data
        return f"{self.url}/files/{name}"

    def gets(self) -> list[tuple[str, str | None]]:
        return [(path, rng) for method, path, rng in self.state.log if method == "GET"]

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.release.set()
        self.server.shutdown()
        self.server.server_close()
