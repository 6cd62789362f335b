"""A threaded HTTP/1.1 reverse proxy in front of a registry that breaks
things on purpose (see ``faultrules`` for the rules).

Bodies are streamed in 64 KiB pieces both ways, never held whole; client
connections are kept alive, each with its own upstream connection. The
client's ``Host`` header is forwarded unchanged, so the registry builds
upload ``Location`` URLs that point back at the proxy (Distribution 2.8 uses
the request's Host); absolute Locations naming the registry are rewritten too.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import re
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, cast

from tests.harness.faultredirect import RedirectTarget
from tests.harness.faultrules import (
    Action,
    AddHeader,
    Drop,
    FlipByte,
    IgnoreRange,
    LoggedRequest,
    Recorder,
    Redirect,
    Respond,
    Rule,
    RuleBook,
    Stall,
    StripHeader,
)
from tests.harness.httpserve import TrackingServer

PIECE = 64 * 1024
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "expect", "proxy-authorization",
}  # fmt: skip


class Upstream(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def url(self) -> str: ...


class _Dropped(Exception):
    """Raised to abandon a connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: TrackingServer
    _up: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the Recorder is the log; stderr noise helps no one

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; every method is
        # proxied the same way.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    @property
    def owner(self) -> FaultProxy:
        return cast(FaultProxy, self.server.owner)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._up is not None:
                self._up.close()

    # -- request side ----------------------------------------------------
    def _request_body(self) -> tuple[_Limited | Iterator[bytes] | None, bool]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return _read_chunked(self.rfile), True
        length = int(self.headers.get("Content-Length") or 0)
        return (_Limited(self.rfile, length) if length else None), False

    def _proxy(self) -> None:
        path, _, query = self.path.partition("?")
        actions = self.owner.rules.take(self.command, path)
        self.owner.recorder.record(
            LoggedRequest(self.command, path, query, tuple(self.headers.items()), tuple(actions))
        )
        body, chunked = self._request_body()
        try:
            for a in actions:
                if isinstance(a, Stall) and a.after_bytes is None:
                    self._stall(a.seconds)
            terminal = actions[-1] if actions else None
            if isinstance(terminal, Drop) and terminal.before_headers:
                raise _Dropped(terminal)
            if isinstance(terminal, Respond | Redirect):
                _drain(body)
                self._answer(terminal, path)
                return
            self._forward(path, body, chunked, actions)
        except _Dropped as e:
            self._drop(e.args[0])

    def _stall(self, seconds: float) -> None:
        # A stall interrupted by stop() abandons the connection rather than
        # finishing the answer: the stopped proxy must look dead to clients.
        if self.owner._stopping.wait(seconds):
            raise _Dropped(Drop())

    def _drop(self, how: Drop) -> None:
        self.close_connection = True
        if how.reset:
            # SO_LINGER 0 turns close() into a TCP RST: a "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))  # fmt: skip
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        if self._up is not None:
            self._up.close()
            self._up = None

    def _answer(self, action: Respond | Redirect, path: str) -> None:
        headers: list[tuple[str, str]] = []
        body = b""
        if isinstance(action, Redirect):
            token = self.owner._redirects.register(self.path, self.headers.get("Authorization"))
            location = f"http://{self.owner.redirect_host}{path}?sig={token}"
            status = action.status
            headers.append(("Location", location))
        else:
            status, body = action.status, action.body
            headers.extend(action.headers)
            if action.retry_after is not None:
                headers.append(("Retry-After", action.retry_after))
            if not body and status >= 400:
                body = b'{"errors":[{"code":"UNKNOWN","message":"injected by fault proxy"}]}'
                headers.append(("Content-Type", "application/json"))
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self.owner.recorder.sent(path, len(body))

    # -- upstream --------------------------------------------------------
    def _upstream(self) -> http.client.HTTPConnection:
        if self._up is None:
            self._up = self.owner._connect_upstream()
        return self._up

    def _forward(self, path: str, body: Any, chunked: bool, actions: list[Action]) -> None:
        ignore_range = any(isinstance(a, IgnoreRange) for a in actions)
        headers = {}
        for k, v in self.headers.items():
            low = k.lower()
            if low in HOP_BY_HOP or (ignore_range and low in ("range", "if-range")):
                continue
            headers[k] = v
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        for attempt in (0, 1):
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers,
                             encode_chunked=chunked)  # fmt: skip
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive upstream connection went stale; replay only
                # when no request body was consumed.
                conn.close()
                self._up = None
                if attempt or body is not None:
                    raise
        self._relay(path, resp, actions)

    def _relay(self, path: str, resp: http.client.HTTPResponse, actions: list[Action]) -> None:
        strip = {a.name.lower() for a in actions if isinstance(a, StripHeader)}
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        rechunk = length is None and not no_body
        for k, v in resp.getheaders():
            low = k.lower()
            if low in HOP_BY_HOP or low in strip:
                continue
            if low == "location":
                v = self.owner._rewrite_location(v)
            self.send_header(k, v)
        for a in actions:
            if isinstance(a, AddHeader):
                self.send_header(a.name, a.value)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if resp.getheader("Connection", "").lower() == "close":
            self.close_connection = True
            self._up = None
        self.end_headers()
        if no_body:
            resp.read()
            return
        self._stream_body(path, resp, actions, rechunk)

    def _stream_body(self, path: str, resp: http.client.HTTPResponse, actions: list[Action],
                     rechunk: bool) -> None:  # fmt: skip
        flips = sorted(a.offset for a in actions if isinstance(a, FlipByte))
        drops = [a for a in actions if isinstance(a, Drop)]
        stalls = [a for a in actions if isinstance(a, Stall) and a.after_bytes is not None]
        # Points where the stream must pause (stall) or end (drop).
        cuts = sorted({d.after_bytes for d in drops} | {s.after_bytes or 0 for s in stalls})
        sent = 0
        while True:
            want = PIECE
            nxt = next((c for c in cuts if c >= sent), None)
            if nxt is not None and nxt == sent:
                for d in drops:
                    if d.after_bytes == sent:
                        raise _Dropped(d)
                for s in stalls:
                    if s.after_bytes == sent:
                        self._stall(s.seconds)
                cuts = [c for c in cuts if c != sent]
                continue
            if nxt is not None:
                want = min(want, nxt - sent)
            piece = resp.read(want)
            if not piece:
                break
            for off in flips:
                if sent <= off < sent + len(piece):
                    buf = bytearray(piece)
                    buf[off - sent] ^= 0xFF
                    piece = bytes(buf)
            if rechunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            sent += len(piece)
            self.owner.recorder.sent(path, len(piece))
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")


class _Limited:
    """Exactly ``n`` bytes of a request body, read on demand."""

    def __init__(self, f: io.BufferedIOBase, n: int) -> None:
        self._f, self._left = f, n

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        return data


def _read_chunked(f: io.BufferedIOBase) -> Iterator[bytes]:
    while True:
        size = int(f.readline().split(b";", 1)[0].strip(), 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        yield f.read(size)
        f.readline()


def _drain(body: Any) -> None:
    if body is None:
        return
    if hasattr(body, "read"):
        while body.read(PIECE):
            pass
    else:
        for _ in body:
            pass


class FaultProxy:
    """The proxy; ``host``/``url`` are what clients use instead of the registry's."""

    def __init__(self, upstream: Upstream, *, bind_host: str = "127.0.0.1",
                 redirect_bind_host: str = "127.0.0.2") -> None:  # fmt: skip
        self.upstream = upstream
        self.rules = RuleBook()
        self.recorder = Recorder()
        self._stopping = threading.Event()
        self._server = TrackingServer(bind_host, _Handler, self)
        self._redirects = RedirectTarget(redirect_bind_host, self._connect_upstream)

    # -- addresses -------------------------------------------------------
    @property
    def host(self) -> str:
        return self._server.host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def redirect_host(self) -> str:
        return self._redirects.host

    # -- lifecycle -------------------------------------------------------
    def start(self) -> FaultProxy:
        self._server.start()
        self._redirects.server.start()
        return self

    def stop(self) -> None:
        """Stop both listeners and cut open connections (ends stalls early)."""
        self._stopping.set()
        self._server.stop()
        self._redirects.server.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules -----------------------------------------------------------
    def add(self, action: Action, *, method: str | None = None, path: str = "",
            times: int | None = 1, skip: int = 0) -> Rule:  # fmt: skip
        """Apply ``action`` to the next ``times`` requests (None: all) whose
        method matches and whose path (no query) matches regex ``path``,
        after letting ``skip`` of them through."""
        return self.rules.add(Rule(action, method, path, times, skip=skip))

    def drop(self, path: str = "", *, after_bytes: int = 0, method: str | None = "GET",
             times: int | None = 1, reset: bool = False) -> Rule:  # fmt: skip
        return self.add(Drop(after_bytes, reset=reset), method=method, path=path, times=times)

    def stall(self, seconds: float, path: str = "", *, after_bytes: int | None = None,
              method: str | None = "GET", times: int | None = 1) -> Rule:  # fmt: skip
        return self.add(Stall(seconds, after_bytes), method=method, path=path, times=times)

    def respond(self, status: int, path: str = "", *, retry_after: str | None = None,
                method: str | None = None, times: int | None = 1) -> Rule:  # fmt: skip
        action = Respond(status, retry_after=retry_after)
        return self.add(action, method=method, path=path, times=times)

    def flip_byte(self, offset: int, path: str = "", *, method: str | None = "GET",
                  times: int | None = 1) -> Rule:  # fmt: skip
        return self.add(FlipByte(offset), method=method, path=path, times=times)

    def strip_header(self, path: str = "", name: str = "Docker-Content-Digest", *,
                     method: str | None = None, times: int | None = None) -> Rule:  # fmt: skip
        return self.add(StripHeader(name), method=method, path=path, times=times)

    def head_405(self, path: str = "/manifests/", *, times: int | None = None) -> Rule:
        return self.add(Respond(405), method="HEAD", path=path, times=times)

    def ignore_range(self, path: str = "/blobs/", *, times: int | None = None) -> Rule:
        return self.add(IgnoreRange(), method="GET", path=path, times=times)

    def redirect(self, path: str = "/blobs/sha256:", *, method: str | None = "GET",
                 times: int | None = None, status: int = 307) -> Rule:  # fmt: skip
        return self.add(Redirect(status), method=method, path=path, times=times)

    def clear(self) -> None:
        """Forget all rules and recorded traffic."""
        self.rules.clear()
        self.recorder.clear()
        self._redirects.recorder.clear()

    # -- observations ----------------------------------------------------
    @property
    def requests(self) -> Any:
        """``Counter[(method, path)]`` of requests received (faulted or not)."""
        return self.recorder.requests

    @property
    def bytes_sent(self) -> Any:
        """``Counter[path]`` of response body bytes written to clients."""
        return self.recorder.bytes_sent

    @property
    def log(self) -> list[LoggedRequest]:
        return self.recorder.log

    @property
    def redirect_log(self) -> list[LoggedRequest]:
        """Requests the redirect target (the "other host") received."""
        return self._redirects.recorder.log

    def count(self, method: str, path_regex: str) -> int:
        """How many requests matched ``method`` and ``path_regex`` (re.search)."""
        pat = re.compile(path_regex)
        with self.recorder.lock:
            return sum(n for (m, p), n in self.recorder.requests.items()
                       if m == method and pat.search(p))  # fmt: skip

    # -- internals -------------------------------------------------------
    def _connect_upstream(self) -> http.client.HTTPConnection:
        if self.upstream.url.startswith("https://"):
            return http.client.HTTPSConnection(
                self.upstream.host, timeout=60, context=ssl._create_unverified_context()
            )
        return http.client.HTTPConnection(self.upstream.host, timeout=60)

    def _rewrite_location(self, value: str) -> str:
        up = self.upstream.url
        if value.startswith(up + "/"):
            return self.url + value[len(up) :]
        return value
