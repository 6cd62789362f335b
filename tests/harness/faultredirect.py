"""The redirect target of the fault proxy: a listener on another loopback
address standing in for a CDN or object store serving signed URLs.

It records every request (so a test can assert the registry's Authorization
header did not follow the redirect) and serves the bytes by fetching the
original URL from the registry with the credentials captured at redirect
time — the way a signed URL carries authority in the URL, not in a header.
"""

from __future__ import annotations

import http.client
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.harness.faultrules import LoggedRequest, Recorder
from tests.harness.httpserve import TrackingServer

PIECE = 64 * 1024
_SKIP = {"connection", "keep-alive", "transfer-encoding", "location"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: TrackingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        target: RedirectTarget = self.server.owner
        path, _, query = self.path.partition("?")
        entry = LoggedRequest(self.command, path, query, tuple(self.headers.items()))
        target.recorder.record(entry)
        token = dict(p.partition("=")[::2] for p in query.split("&")).get("sig", "")
        grant = target.lookup(token)
        if grant is None:
            self.send_response_only(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        original, auth = grant
        headers = {}
        if auth:
            headers["Authorization"] = auth
        if self.headers.get("Range"):
            headers["Range"] = self.headers["Range"]
        conn = target.connect()
        try:
            conn.request(self.command, original, headers=headers)
            resp = conn.getresponse()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _SKIP:
                    self.send_header(k, v)
            self.end_headers()
            while piece := resp.read(PIECE):
                self.wfile.write(piece)
                target.recorder.sent(path, len(piece))
        finally:
            conn.close()


class RedirectTarget:
    def __init__(self, bind_host: str, connect: Callable[[], http.client.HTTPConnection]):
        self.connect = connect
        self.recorder = Recorder()
        self._grants: dict[str, tuple[str, str | None]] = {}
        self._lock = threading.Lock()
        self.server = TrackingServer(bind_host, _Handler, self)

    @property
    def host(self) -> str:
        return self.server.host

    def register(self, original: str, auth: str | None) -> str:
        """A token that lets one later request fetch ``original`` (path+query)."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._grants[token] = (original, auth)
        return token

    def lookup(self, token: str) -> tuple[str, str | None] | None:
        with self._lock:
            return self._grants.get(token)
