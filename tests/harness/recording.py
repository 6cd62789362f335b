"""A recording HTTP server that answers what a test tells it to, for
protocol misbehaviour the real token server and registry never show.

With ``tls`` it serves HTTPS *and* plain HTTP on the same port (it peeks at
the first byte: a TLS handshake starts with 0x16), so a test can redirect a
client from ``https://host:port`` to ``http://host:port`` — same host and
port, another scheme, hence another origin — and see whether a secret
crossed in clear. Every request is recorded with its scheme and body.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.harness.certs import Issued
from tests.harness.httpserve import TrackingServer


@dataclass(frozen=True)
class Recorded:
    scheme: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def text(self) -> str:
        """Everything the client sent, for grepping secrets out of."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.method} {self.path}\n{head}\n\n" + self.body.decode("latin-1")


@dataclass(frozen=True)
class Reply:
    """An answer; a ``Content-Length`` in ``headers`` is sent as given (the
    connection then closes after ``body``, so a shorter body breaks off)."""

    status: int = 200
    headers: Mapping[str, str] | None = None
    body: bytes = b""


Responder = Callable[[Recorded], Reply]


def _not_found(req: Recorded) -> Reply:
    return Reply(404)


class _Server(TrackingServer):
    owner: RecordingServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self.owner.context
        conn = request
        if ctx is not None:
            request.settimeout(10)
            with contextlib.suppress(OSError):
                if request.recv(1, socket.MSG_PEEK) == b"\x16":
                    try:
                        conn = ctx.wrap_socket(request, server_side=True)
                    except (OSError, ssl.SSLError):
                        return  # a client that refused our certificate
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        req = Recorded(scheme, self.command, self.path, tuple(self.headers.items()), body)
        owner.record(req)
        reply = owner.responder(req)
        self.send_response(reply.status)
        headers = dict(reply.headers or {})
        for k, v in headers.items():
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k in headers):
            self.send_header("Content-Length", str(len(reply.body)))
        else:
            # A declared length the body does not meet: a body cut short.
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_HEAD = do_PATCH = do_DELETE = _any


class RecordingServer:
    def __init__(
        self,
        bind_host: str = "127.0.0.1",
        *,
        tls: Issued | None = None,
        responder: Responder = _not_found,
    ) -> None:
        self.responder = responder
        self.log: list[Recorded] = []
        self._lock = threading.Lock()
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(str(tls.cert_path), str(tls.key_path))
        self._server = _Server(bind_host, _Handler, self)

    @property
    def host(self) -> str:
        return self._server.host

    def url(self, path: str = "/", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.context is not None else "http")
        return f"{scheme}://{self.host}{path}"

    def record(self, req: Recorded) -> None:
        with self._lock:
            self.log.append(req)

    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self.log)

    def start(self) -> RecordingServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
