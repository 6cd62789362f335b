"""One HTTP/1.1 client connection: send a request, parse the answer, frame its body.

Why not ``http.client``: it parses every header block with the ``email``
package, whose import alone is ~10 ms of every command's start-up (with
``ssl``, which a plain-HTTP registry never needs), and a few hundred
microseconds per response. A registry client needs little of HTTP: a request
with a Content-Length (or chunked) body, a status line, headers, and a body
framed by Content-Length, chunked coding or connection close.

Errors are the built-in ones (``OSError``, ``TimeoutError``) or ``Protocol``
for an answer that is not HTTP; transport.py turns them into DistErrors.
Limits follow ``http.client``'s: 64 KiB per line, 100 header fields.
"""

from __future__ import annotations

import re
import select
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MAX_LINE = 65536
MAX_HEADERS = 100
# Bodies up to this size go out in the same send as the request head.
_COALESCE = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
# Methods whose missing body is still announced as "Content-Length: 0"
# (some servers answer 411 otherwise).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")


class Protocol(Exception):
    """The peer's answer is not HTTP/1.x we can frame."""


class Closed(ConnectionError):
    """The peer closed the connection before answering (a stale keep-alive)."""


class Headers(Mapping[str, str]):
    """Response header fields, case-insensitive; ``get`` is the first value."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._fields if n.lower() == key]


def connect(host: str, port: int, timeout: float, tls_context: Any | None = None) -> socket.socket:
    """A connected socket (TLS-wrapped when ``tls_context`` is given)."""
    # An ASCII name goes down as bytes: given a str, the socket module encodes
    # it with the "idna" codec, whose import (stringprep, unicodedata) is
    # ~2 ms of a small fetch. Non-ASCII names still take that path.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """A keep-alive connection; one request at a time, each answered in full
    (or the connection dropped) before the next."""

    def __init__(self, sock: socket.socket, host_header: str) -> None:
        self.sock = sock
        self._host = host_header
        self._rfile = sock.makefile("rb", buffering=65536)
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._rfile.close()
            self.sock.close()

    def dropped(self) -> bool:
        """True when the idle connection was closed by the peer (or has
        unexpected bytes waiting): it must not carry another request."""
        if self.closed:
            return True
        try:
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            return bool(p.poll(0))
        except (OSError, ValueError):
            return True

    # -- request -------------------------------------------------------------

    def send(self, method: str, target: str, headers: Mapping[str, str], body: Any) -> None:
        """Send the request head and body (raises ValueError for a header or
        target an attacker could use to split the request)."""
        if _BAD_TARGET.search(target) or not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid request target {target!r}")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}"]
        names = set()
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                raise ValueError(f"invalid header {name!r}")
            low = name.lower()
            if low == "host":
                lines[1] = f"Host: {value}"
                continue
            names.add(low)
            lines.append(f"{name}: {value}")
        data: memoryview | None = None
        chunks: Iterable[Any] | None = None
        chunked = False
        if body is None:
            if method in _BODY_METHODS and "content-length" not in names:
                lines.append("Content-Length: 0")
        elif isinstance(body, bytes | bytearray | memoryview):
            data = memoryview(body).cast("B")
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(data)}")
        else:
            # An upload stream: chunked unless the caller gave its length.
            chunks = _file_chunks(body) if hasattr(body, "read") else body
            chunked = "content-length" not in names
            if chunked:
                lines.append("Transfer-Encoding: chunked")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self.sock
        if data is not None and len(data) <= _COALESCE:
            sock.sendall(head + data)
            return
        sock.sendall(head)
        if data is not None:
            sock.sendall(data)
        elif chunks is not None:
            for piece in chunks:
                view = memoryview(piece).cast("B")
                if not len(view):
                    continue
                if chunked:
                    sock.sendall(b"%x\r\n" % len(view))
                sock.sendall(view)
                if chunked:
                    sock.sendall(b"\r\n")
            if chunked:
                sock.sendall(b"0\r\n\r\n")

    # -- response ------------------------------------------------------------

    def _line(self) -> bytes:
        line = self._rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise Protocol("line too long")
        return line

    def receive(self, method: str) -> tuple[int, Headers, Body]:
        """Read the status line and headers (skipping 1xx answers)."""
        while True:
            line = self._line()
            if not line:
                raise Closed("connection closed before the status line")
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise Protocol(f"bad status line {line[:80]!r}")
            try:
                status = int(parts[1])
            except ValueError:
                raise Protocol(f"bad status line {line[:80]!r}") from None
            if not 100 <= status <= 999:
                raise Protocol(f"bad status {status}")
            fields = self._fields()
            if status >= 200 or status == 101:
                break
        headers = Headers(fields)
        keep = parts[0] != b"HTTP/1.0" and "close" not in _tokens(headers.get("Connection"))
        if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            return status, headers, Body(self._rfile, 0, False, keep)
        te = _tokens(headers.get("Transfer-Encoding"))
        if te:
            if te[-1] != "chunked":
                return status, headers, Body(self._rfile, None, False, False)
            return status, headers, Body(self._rfile, None, True, keep)
        lengths = {v.strip() for v in headers.get_all("Content-Length")}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise Protocol("bad Content-Length")
            return status, headers, Body(self._rfile, int(lengths.pop()), False, keep)
        return status, headers, Body(self._rfile, None, False, False)

    def _fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return fields
            if line[:1] in (b" ", b"\t") and fields:
                # obs-fold: a continuation of the previous field's value.
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
                continue
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise Protocol(f"bad header line {line[:80]!r}")
            fields.append((name, value.strip()))
            if len(fields) > MAX_HEADERS:
                raise Protocol(f"more than {MAX_HEADERS} header fields")


class Body:
    """A response body framed by length, chunked coding or connection close.

    ``done`` is True once the last byte was read; ``reusable`` then says
    whether the connection may carry another request."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool, keep: bool) -> None:
        self._rfile = rfile
        self._left = length  # body bytes left (length-framed), or in this chunk
        self._chunked = chunked
        self._keep = keep
        self.length = length
        self.done = length == 0 and not chunked
        if chunked:
            self._left = 0

    @property
    def reusable(self) -> bool:
        return self.done and self._keep

    def readinto(self, buf: memoryview) -> int:
        if self.done or not len(buf):
            return 0
        if self._chunked:
            return self._read_chunked(buf)
        if self._left is None:
            n = self._rfile.readinto(buf)
            if not n:
                self.done = True  # close-delimited: EOF is the end
            return int(n or 0)
        n = int(self._rfile.readinto(buf[: self._left]) or 0)
        if n == 0:
            raise Closed(f"connection closed with {self._left} body bytes missing")
        self._left -= n
        if self._left == 0:
            self.done = True
        return n

    def _read_chunked(self, buf: memoryview) -> int:
        if not self._left:
            line = self._rfile.readline(MAX_LINE + 1)
            if not line:
                raise Closed("connection closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Protocol("bad chunk size") from None
            if size < 0:
                raise Protocol("bad chunk size")
            if size == 0:
                while self._rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: not used
                self.done = True
                return 0
            self._left = size
        assert self._left is not None
        n = int(self._rfile.readinto(buf[: self._left]) or 0)
        if n == 0:
            raise Closed("connection closed inside a chunked body")
        self._left -= n
        if self._left == 0 and self._rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise Protocol("chunk not followed by CRLF")
        return n

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (fewer only at the end of the body)."""
        out = bytearray()
        buf = bytearray(min(limit, 1 << 16) or 1)
        view = memoryview(buf)
        while len(out) < limit and not self.done:
            n = self.readinto(view[: min(len(view), limit - len(out))])
            if n == 0:
                break
            out += view[:n]
        return bytes(out)


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()] if value else []


def _file_chunks(f: Any) -> Iterator[bytes]:
    while piece := f.read(1 << 20):
        yield piece


def ssl_error_type() -> type[BaseException] | None:
    """``ssl.SSLError`` if ssl was imported (only HTTPS needs it)."""
    mod = sys.modules.get("ssl")
    return getattr(mod, "SSLError", None) if mod is not None else None
