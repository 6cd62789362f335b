"""h11 as the oracle for our HTTP/1.1 answer framing (http11.py, httpconn.py).

The same answer bytes, cut into the same pieces, go through our
``Connection.receive`` and through h11 0.16 in client mode (which framed
every exchange before our own code replaced it for start-up). ``agree``
raises AssertionError unless:

- h11 refuses (a protocol error, or the connection ends inside the answer)
  and we refuse too;
- h11 accepts and we refuse for one of the documented stricter rules
  (``STRICTER``; http11.py's docstring);
- h11 accepts and we accept with the same status, fields, body framing
  (none for HEAD/204/304, Content-Length n, chunked, until close), body
  bytes, and the same "bytes after the answer" verdict (the desync guard);
  the connection kept alive only where h11 kept it (we may decline in the
  ``STRICTER_KEEP`` cases, never the other way).

Our side reads from ``Pieces``, a socket stand-in that hands out the pieces
one ``recv`` at a time and then the end of the connection: every state of
the head, chunk and trailer parsers meets a cut. Shared by
tests/test_http11.py (hypothesis) and tests/fuzz/targets.py (atheris).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import h11
from h11._connection import _body_framing  # the framing h11 chose; private, pinned >= 0.16

from ocidist.remotes.docker import http11
from ocidist.remotes.docker.httpconn import (
    ChunkedBody,
    CloseBody,
    Closed,
    Connection,
    EmptyBody,
    LengthBody,
    Protocol,
    Timer,
)

# Refusals where ours is stricter than h11, on purpose (http11.py's
# docstring): a substring of our message each.
STRICTER = (
    "bare CR or LF",
    "bare LF in the",
    "illegal status line",  # only HTTP/1.x: checked in agree()
    "informational",
    "of more than 100 fields",
    "over 65536 bytes",
    "illegal chunk extension",
)
# Why we may close a connection h11 would have kept: Content-Length with
# chunked (RFC 9112 §6.1, a smuggling attempt), and a version other than
# HTTP/1.1 (h11 compares version strings: "1.9" >= "1.1").
STRICTER_KEEP = ("chunked with a length", "not HTTP/1.1")

Outcome = tuple[Any, ...]


class Pieces:
    """A socket stand-in: each ``recv``/``recv_into`` returns at most what
    is left of the current piece, then b"" (the peer closed) or, with
    ``eof`` False, TimeoutError (the peer keeps the connection open and
    says nothing more)."""

    def __init__(self, pieces: list[bytes], eof: bool = True) -> None:
        self._pieces = [memoryview(p) for p in pieces if p]
        self._eof = eof

    def settimeout(self, timeout: float | None) -> None:
        pass

    def close(self) -> None:
        pass

    def left(self) -> bool:
        return bool(self._pieces)

    def recv(self, n: int) -> bytes:
        if not self._pieces:
            if self._eof:
                return b""
            raise TimeoutError("nothing more")
        piece = self._pieces[0]
        out, rest = piece[:n], piece[n:]
        if rest:
            self._pieces[0] = rest
        else:
            del self._pieces[0]
        return bytes(out)

    def recv_into(self, buf: memoryview) -> int:
        data = self.recv(len(buf))
        buf[: len(data)] = data
        return len(data)


def cut(raw: bytes, cuts: list[int]) -> list[bytes]:
    """``raw`` cut at the given offsets (any order, repeats and offsets past
    the end ignored); no piece is empty."""
    at = sorted({c for c in cuts if 0 < c < len(raw)})
    bounds = [0, *at, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def ours(pieces: list[bytes], method: str) -> Outcome:
    """("ok", status, fields, framing, body, keep, leftover) or ("refused", why)."""
    sock = Pieces(pieces)
    conn = Connection(sock, "h")  # type: ignore[arg-type]
    try:
        status, headers, body = conn.receive(method, Timer(None, 5.0))
        data = bytearray()
        while piece := body.read(1 << 16):
            data += piece
    except (Protocol, Closed) as e:
        return ("refused", str(e))
    if isinstance(body, EmptyBody):
        framing: tuple[Any, ...] = ("none",)
    elif isinstance(body, LengthBody):
        framing = ("content-length", body.length)
    elif isinstance(body, ChunkedBody):
        framing = ("chunked",)
    else:
        assert isinstance(body, CloseBody), body
        framing = ("close",)
    assert body.done, (framing, bytes(data))
    # Transfer-Encoding's value is read case-insensitively by both; h11
    # hands it on lower-cased.
    fields = [(n, v.lower() if n.lower() == "transfer-encoding" else v) for n, v in headers._fields]
    # Bytes after the answer: read with it (the body saw them) or still on
    # the socket (Connection.dropped would see them before a reuse).
    leftover = body._extra or sock.left()
    return ("ok", status, fields, framing, bytes(data), body._keep, leftover)


def theirs(pieces: list[bytes], method: str) -> Outcome:
    """The same for h11, fed the same pieces (then the end of the connection),
    with the final answer's HTTP version after the rest."""
    h = h11.Connection(h11.CLIENT, max_incomplete_event_size=http11.MAX_HEAD)
    h.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    h.send(h11.EndOfMessage())
    todo = [p for p in pieces if p]
    eof = False
    response = None
    framing: tuple[Any, ...] = ()
    data = bytearray()
    try:
        while True:
            ev = h.next_event()
            if ev is h11.NEED_DATA:
                if todo:
                    h.receive_data(todo.pop(0))
                elif not eof:
                    h.receive_data(b"")
                    eof = True
                else:
                    return ("refused", "h11 wants data after the end")
            elif isinstance(ev, h11.InformationalResponse):
                continue
            elif isinstance(ev, h11.Response):
                response = ev
                kind, args = _body_framing(method.encode(), ev)
                if kind == "content-length" and (method == "HEAD" or ev.status_code in (204, 304)):
                    framing = ("none",)
                elif kind == "content-length":
                    framing = ("content-length", *args)
                elif kind == "chunked":
                    framing = ("chunked",)
                else:
                    framing = ("close",)
            elif isinstance(ev, h11.Data):
                data += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:  # ConnectionClosed before the end
                return ("refused", "h11: connection closed inside the answer")
    except h11.RemoteProtocolError as e:
        return ("refused", f"h11: {e}")
    assert response is not None
    fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw_items()]
    keep = h.their_state is h11.DONE  # MUST_CLOSE otherwise
    leftover = bool(h.trailing_data[0]) or bool(todo)
    version = response.http_version
    return ("ok", response.status_code, fields, framing, bytes(data), keep, leftover, version)


def agree(raw: bytes, method: str, cuts: list[int]) -> None:
    """The differential check (the module's docstring)."""
    pieces = cut(raw, cuts)
    mine, ref = ours(pieces, method), theirs(pieces, method)
    ctx = (raw, method, cuts, mine, ref)
    if ref[0] == "refused":
        assert mine[0] == "refused", ctx
        return
    if mine[0] == "refused":
        why = mine[1]
        assert any(w in why for w in STRICTER), ctx
        if "illegal status line" in why:
            # h11 took any HTTP/d.d; a 1.x line it took, we must take too.
            assert "b'HTTP/1." not in why, ctx
        return
    _, status, fields, framing, body, keep, leftover = mine
    assert (status, fields, framing, body) == ref[1:5], ctx
    if framing == ("close",):
        # The body is everything up to the end of the connection: nothing
        # comes after it, and the connection is gone (h11 still says DONE).
        return
    assert leftover == ref[6], ctx
    if keep != ref[5]:
        assert ref[5] and not keep, ctx  # never keep what h11 closed
        names = {n.lower() for n, _ in fields}
        if {"transfer-encoding", "content-length"} <= names:
            why = "chunked with a length"
        elif ref[7] != b"1.1":
            why = "not HTTP/1.1"
        else:
            why = ""
        assert why in STRICTER_KEEP, ctx


def split_plan(data: bytes) -> tuple[str, list[int], bytes]:
    """A fuzzer's bytes as (method, cuts, answer): the first byte picks the
    method (bit 0) and a stride (the rest: 0 none, 1 a byte at a time), the
    second seeds up to 4 more cuts at random."""
    if len(data) < 2:
        return "GET", [], data
    method = "HEAD" if data[0] & 1 else "GET"
    stride = (data[0] >> 1) % 32
    raw = data[2:]
    cuts = list(range(stride, len(raw), stride)) if stride else []
    rnd = random.Random(data[1])
    cuts += [rnd.randrange(len(raw) + 1) for _ in range(data[1] % 5)]
    return method, cuts, raw
