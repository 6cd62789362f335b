"""One HTTP/1.1 client connection: the socket, the clock, the framing.

http11.py checks the syntax (request heads, status lines, header and
trailer blocks, chunk-size lines); this module moves the bytes and enforces
what a parser cannot:

- the answer's head (status line and fields, obs-fold continuation lines
  included) and a trailer block are at most ``MAX_HEAD`` bytes and
  ``MAX_FIELDS`` fields each;
- at most ``MAX_INFORMATIONAL`` 1xx answers come before the final one;
- every blocking call (connect, TLS handshake, send, each read of the head
  and the body) gives up at the command's deadline (``Timer.deadline``) or
  after ``Timer.stall`` seconds without progress, and the head must arrive
  whole within ``stall`` seconds: a 1 byte/s trickle, endless ``100
  Continue`` or endless header lines cannot hold a request open.

A body is framed as RFC 9112 §6.3 says: none for HEAD, 204 and 304 (1xx
answers are skipped; a 101 is refused); chunked when Transfer-Encoding says
so (with Content-Length as well, chunked wins and the connection is not
reused: it may be a smuggling attempt); Content-Length, counted off the
socket straight into the caller's buffer; else until the connection closes.

A connection may carry another request only when its answer (HTTP/1.1, no
``Connection: close``) was read to the end with nothing left over: bytes
after a complete answer (a second, smuggled answer, or garbage) drop the
connection, so they can never be read as the answer to the next request.
``dropped`` also refuses an idle connection with anything waiting on it.

Errors are the built-in ones (``OSError``, ``TimeoutError`` and its
``DeadlineReached``, ``ValueError`` for a request that could be split) or
``Protocol`` for an answer that is not HTTP we can frame; transport.py turns
them into DistErrors.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ocidist.remotes.docker import http11
from ocidist.remotes.docker.http11 import MAX_FIELDS as MAX_FIELDS
from ocidist.remotes.docker.http11 import MAX_HEAD as MAX_HEAD
from ocidist.remotes.docker.http11 import Protocol as Protocol

# "100 Continue" and friends before the final answer.
MAX_INFORMATIONAL = 10
_RECV = 64 * 1024
# A body read returns what it holds after this long (see LengthBody.readinto).
FILL_FOR = 0.1
# Sends go out in pieces of at most this, each under the clock: one sendall
# of a 4 MiB chunk would otherwise be one timeout for the whole chunk.
_SEND_PIECE = 1 << 20
# Bodies up to this size go out in the same send as the request head.
_COALESCE = 64 * 1024
# Methods whose missing body is still announced as "Content-Length: 0"
# (some servers answer 411 otherwise).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUS = frozenset({204, 304})


class Closed(ConnectionError):
    """The peer closed the connection before answering (a stale keep-alive)
    or in the middle of an answer."""


class ProxyRefused(Exception):
    """An HTTP proxy answered a CONNECT with something other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"proxy answered {status}")
        self.status = status


class DeadlineReached(TimeoutError):
    """The command's deadline (or the time allowed for an answer's head)
    passed; a plain ``TimeoutError`` is a stall."""


class Timer:
    """When each blocking socket call of one exchange must give up:
    ``deadline`` (a ``time.monotonic()`` value, or None) bounds the whole,
    ``stall`` each call."""

    __slots__ = ("deadline", "stall", "why")

    def __init__(self, deadline: float | None = None, stall: float = 30.0, why: str = "") -> None:
        self.deadline = deadline
        self.stall = stall
        self.why = why or "deadline reached"

    def timeout(self) -> float:
        """Seconds the next blocking call may take (raises once past the deadline)."""
        if self.deadline is None:
            return self.stall
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineReached(self.why)
        return min(self.stall, left)

    def reason(self, e: TimeoutError) -> TimeoutError:
        """What a socket timeout means: ``DeadlineReached`` when the call was
        cut short by the deadline (not by the stall time)."""
        if self.deadline is not None and time.monotonic() >= self.deadline - 0.005:
            return DeadlineReached(self.why)
        return e

    def within(self, seconds: float, why: str) -> Timer:
        """This timer, also ending ``seconds`` from now (saying ``why`` then)."""
        end = time.monotonic() + seconds
        if self.deadline is not None and self.deadline <= end:
            return self
        return Timer(end, self.stall, why)


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


def resolve(host: str, port: int, timer: Timer) -> list[Any]:
    """``getaddrinfo`` for a TCP connection, within the timer's deadline.

    A name lookup cannot be interrupted, so with a deadline it runs in a
    thread that is left behind when the deadline passes. An IP address never
    needs one."""
    # An ASCII name goes down as bytes: given a str, the socket module encodes
    # it with the "idna" codec, whose import (stringprep, unicodedata) is
    # ~2 ms of a small fetch. Non-ASCII names still take that path.
    name: Any = host.encode("ascii") if host.isascii() else host
    try:
        return socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        pass
    if timer.deadline is None:
        return socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        except BaseException as e:  # handed to the waiting thread
            box.append(e)
        done.set()

    threading.Thread(target=lookup, daemon=True, name="dns").start()
    left = timer.deadline - time.monotonic()
    if left <= 0 or not done.wait(left):
        raise DeadlineReached(timer.why)
    if isinstance(box[0], BaseException):
        raise box[0]
    return list(box[0])


def connect(
    host: str,
    port: int,
    timer: Timer,
    tls_context: Any | None = None,
    server_hostname: str | None = None,
) -> socket.socket:
    """A connected socket (TLS-wrapped when ``tls_context`` is given); every
    address of ``host`` is tried in turn, all within ``timer``."""
    last: OSError | None = None
    sock: socket.socket | None = None
    for family, kind, proto, _, addr in resolve(host, port, timer):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timer.timeout())
            sock.connect(addr)
            break
        except OSError as e:
            sock.close()
            sock = None
            if isinstance(e, TimeoutError):
                e = timer.reason(e)
                if isinstance(e, DeadlineReached):
                    raise e from None
            last = e
    if sock is None:
        raise last or OSError(f"no address for {host}")
    return secure(sock, timer, tls_context, server_hostname or host)


def adopt(
    raw: Any, timer: Timer, tls_context: Any | None, server_hostname: str
) -> socket.socket | None:
    """A socket connected elsewhere (``ocidist.earlyconnect``'s, a
    ``_socket.socket``) made what ``connect`` returns; None when it is no
    longer fit (the server closed it while it waited, say during a password
    prompt, or its TLS handshake failed): the caller connects anew."""
    sock = socket.socket(fileno=raw.detach())
    try:
        p = select.poll()
        p.register(sock, select.POLLIN)
        if p.poll(0):  # the peer's close (or bytes nobody asked for)
            sock.close()
            return None
        sock.settimeout(timer.timeout())
        return secure(sock, timer, tls_context, server_hostname)
    except OSError:
        sock.close()  # secure() closed it already where it failed
        return None


def secure(
    sock: socket.socket, timer: Timer, tls_context: Any | None, server_hostname: str
) -> socket.socket:
    """``sock`` with TCP_NODELAY and, given a context, TLS; the handshake is
    one blocking call under ``timer`` (CPython bounds the whole handshake by
    the socket's timeout, not each read in it)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_context is not None:
            sock.settimeout(timer.timeout())
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname)
    except TimeoutError as e:
        sock.close()
        raise timer.reason(e) from None
    except BaseException:
        sock.close()
        raise
    return sock


class _Wait(Exception):
    """The buffer holds too little to go on, and the caller asked not to read."""


class Connection:
    """A keep-alive connection; one request at a time, each answered in full
    (or the connection dropped) before the next."""

    def __init__(
        self,
        sock: socket.socket,
        host_header: str,
        *,
        absolute: str = "",
        proxy_auth: str | None = None,
    ) -> None:
        """``absolute`` ("http://host:port") makes every request target
        absolute, for a plain-HTTP proxy on the other end, which also gets
        ``proxy_auth`` as Proxy-Authorization. Such a connection carries one
        request: tinyproxy (and proxies like it) relays whatever follows the
        first request on a connection straight to the origin server, so a
        second request would reach the registry with the proxy's
        credentials."""
        self.sock = sock
        self._host = host_header
        self._absolute = absolute
        self._proxy_auth = proxy_auth
        # Bytes read off the socket and not yet parsed or handed out.
        self._buf = bytearray()
        self._received = 0  # bytes of the current answer so far
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    def dropped(self) -> bool:
        """True when the idle connection was closed by the peer or has
        unexpected bytes waiting: it must not carry another request."""
        if self.closed:
            return True
        # Over TLS, bytes that came in the answer's last record sit in
        # OpenSSL's buffer (the body's read took only its length), where a
        # poll of the socket does not see them: a smuggled answer.
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            return bool(p.poll(0))
        except (OSError, ValueError):
            return True

    # -- request -------------------------------------------------------------

    def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Any,
        timer: Timer,
    ) -> None:
        """Send the request head and body (raises ValueError for a method,
        target or header that could split the request, or a body that does
        not match its declared length)."""
        self._buf = bytearray()
        self._received = 0
        fields = [("Host", self._host)]
        if self._proxy_auth:
            fields.append(("Proxy-Authorization", self._proxy_auth))
        if self._absolute:
            fields.append(("Connection", "close"))
        target = self._absolute + target
        names = set()
        for name, value in headers.items():
            low = name.lower()
            if low == "host":
                fields[0] = ("Host", value)
                continue
            names.add(low)
            fields.append((name, value))
        data: memoryview | None = None
        chunks: Iterable[Any] | None = None
        if body is None:
            if method in _BODY_METHODS and "content-length" not in names:
                fields.append(("Content-Length", "0"))
        elif isinstance(body, bytes | bytearray | memoryview):
            data = memoryview(body).cast("B")
            if "content-length" not in names:
                fields.append(("Content-Length", str(len(data))))
        else:
            # An upload stream: chunked unless the caller gave its length.
            chunks = _file_chunks(body) if hasattr(body, "read") else body
            if "content-length" not in names:
                fields.append(("Transfer-Encoding", "chunked"))
        head = http11.request_head(method, target, fields)
        out = _BodyFramer(http11.request_framing(fields))
        if data is not None and len(data) <= _COALESCE:
            self._write(b"".join([head, *out.pieces(data), out.end()]), timer)
            return
        self._write(head, timer)
        if data is not None:
            for piece in out.pieces(data):
                self._write(piece, timer)
        elif chunks is not None:
            for chunk in chunks:
                for piece in out.pieces(memoryview(chunk).cast("B")):
                    self._write(piece, timer)
        self._write(out.end(), timer)

    def _write(self, data: bytes | bytearray | memoryview, timer: Timer) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _SEND_PIECE):
            self.sock.settimeout(timer.timeout())
            try:
                self.sock.sendall(view[start : start + _SEND_PIECE])
            except TimeoutError as e:
                raise timer.reason(e) from None

    def tunnel(self, authority: str, timer: Timer) -> None:
        """Ask the HTTP proxy at the other end for a CONNECT tunnel to
        ``authority`` (host:port); the socket then carries the tunnel."""
        self.send("CONNECT", authority, {"Host": authority}, None, timer)
        head_timer = timer.within(timer.stall, f"no answer to CONNECT within {timer.stall:g}s")
        head = self._final_head(head_timer)
        if not 200 <= head.status < 300:
            raise ProxyRefused(head.status)
        if self._buf:
            # The target speaks only after our TLS hello: these bytes are not its.
            raise Protocol("bytes after the proxy's answer to CONNECT")

    # -- response ------------------------------------------------------------

    def _fill(self, timer: Timer | None) -> bool:
        """Read what the socket has into the buffer; False at its end.
        Without a timer, read nothing (``_Wait``)."""
        if timer is None:
            raise _Wait
        self.sock.settimeout(timer.timeout())
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError as e:
            raise timer.reason(e) from None
        if not data:
            return False
        self._received += len(data)
        self._buf += data
        return True

    def _closed(self) -> Closed:
        if not self._received:
            return Closed("connection closed before the status line")
        return Closed("connection closed inside the answer")

    def _block(self, timer: Timer | None, what: str, head: bool) -> bytearray:
        """The buffer's bytes up to the next blank line (taken off, the blank
        line too), reading as needed: a head or a trailer block, at most
        ``MAX_HEAD`` bytes."""
        buf = self._buf
        searched = 0
        while True:
            if head and buf and not http11.starts_like_http(buf):
                raise Protocol(f"the answer is not HTTP/1.x (it starts {bytes(buf[:5])!r})")
            if buf[:2] == b"\r\n":
                end, skip = 0, 2  # an empty block (no trailers; for a head, refused)
            else:
                end = buf.find(b"\r\n\r\n", max(0, searched - 3))
                skip = 4
            if end >= 0:
                if end + skip > MAX_HEAD:
                    break
                block = buf[:end]
                del buf[: end + skip]
                return block
            if len(buf) > MAX_HEAD:
                break
            # Lines ended by a bare LF: the blank line we wait for may never
            # come (http11 refuses it in a whole block too). Only the bytes
            # new since the last look are searched: a head trickled a byte
            # at a time is not rescanned from its start each time.
            lf = buf.find(b"\n", searched)
            while lf >= 0:
                if buf[lf - 1 : lf] != b"\r":
                    raise Protocol(f"bare LF in the {what}")
                lf = buf.find(b"\n", lf + 1)
            searched = len(buf)
            if not self._fill(timer):
                raise self._closed()
        raise Protocol(f"{what} over {MAX_HEAD} bytes")

    def _line(self, timer: Timer | None) -> bytearray:
        """The next line (a chunk size), taken off the buffer with its CRLF."""
        buf = self._buf
        searched = 0
        while (end := buf.find(b"\r\n", max(0, searched - 1))) < 0:
            if len(buf) > MAX_HEAD:
                raise Protocol(f"chunk size line over {MAX_HEAD} bytes")
            searched = len(buf)
            if not self._fill(timer):
                raise self._closed()
        # The line's size, not only the bytes searched before its CRLF came:
        # a long line whose CRLF arrives in the read that passes the cap.
        if end + 2 > MAX_HEAD:
            raise Protocol(f"chunk size line over {MAX_HEAD} bytes")
        line = buf[:end]
        del buf[: end + 2]
        return line

    def _take(self, n: int, timer: Timer | None) -> bytes:
        """Exactly the next ``n`` bytes (a few: a chunk's CRLF)."""
        while len(self._buf) < n:
            if not self._fill(timer):
                raise self._closed()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _final_head(self, timer: Timer) -> http11.Head:
        """The head of the final answer, 1xx answers skipped (at most
        ``MAX_INFORMATIONAL``)."""
        informational = 0
        while True:
            head = http11.parse_head(self._block(timer, "header block", head=True))
            if head.status >= 200:
                return head
            if head.status == 101:
                # We never ask to switch protocols: what follows is not HTTP.
                raise Protocol("protocol switch (101) that was not asked for")
            informational += 1
            if informational > MAX_INFORMATIONAL:
                raise Protocol(f"more than {MAX_INFORMATIONAL} informational (1xx) answers")

    def receive(self, method: str, timer: Timer) -> tuple[int, Headers, Body]:
        """Read the status line and headers (skipping 1xx answers, at most
        ``MAX_INFORMATIONAL``); the head must arrive within ``timer.stall``."""
        head_timer = timer.within(timer.stall, f"no complete answer within {timer.stall:g}s")
        head = self._final_head(head_timer)
        headers = Headers(head.fields)
        status = head.status
        keep = (
            head.version == b"1.1"
            and "close" not in http11.tokens(headers.get_all("Connection"))
            and not self._absolute
        )
        # Both Transfer-Encoding and Content-Length: chunking wins, and the
        # connection is not reused (RFC 9112 §6.1: it may be a smuggling
        # attempt).
        keep = keep and not (head.chunked and head.length is not None)
        if method == "HEAD" or status in _NO_BODY_STATUS:
            return status, headers, EmptyBody(keep, bool(self._buf))
        if head.chunked:
            return status, headers, ChunkedBody(self, timer, keep)
        leftover = bytes(self._buf)
        self._buf = bytearray()
        if head.length is not None:
            return status, headers, LengthBody(self, timer, head.length, leftover, keep)
        return status, headers, CloseBody(self, timer, leftover)


class _BodyFramer:
    """A request body in its framing: counted against the declared length,
    or cut into chunks."""

    def __init__(self, length: int | None) -> None:
        self._left = length  # None: chunked

    def pieces(self, data: memoryview) -> list[Any]:
        """What sends ``data``; ``data`` itself is passed through, not copied."""
        if not len(data):
            return []  # an empty chunk would end a chunked body
        if self._left is None:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        self._left -= len(data)
        if self._left < 0:
            raise ValueError("Too much data for declared Content-Length")
        return [data]

    def end(self) -> bytes:
        if self._left is None:
            return b"0\r\n\r\n"
        if self._left:
            raise ValueError("Too little data for declared Content-Length")
        return b""


class Body:
    """A response body. ``done`` is True once the last byte was read;
    ``reusable`` then says whether the connection may carry another request
    (keep-alive, and nothing after the answer)."""

    length: int | None = None
    done = False

    def __init__(self, keep: bool) -> None:
        self._keep = keep
        self._extra = False  # bytes after the end of the answer

    @property
    def reusable(self) -> bool:
        return self.done and self._keep and not self._extra

    def readinto(self, buf: memoryview) -> int:
        raise NotImplementedError

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


class EmptyBody(Body):
    """No body (HEAD, 204, 304): the answer ended with its head."""

    length = 0
    done = True

    def __init__(self, keep: bool, extra: bool) -> None:
        super().__init__(keep)
        # A body sent anyway (or anything else) is not ours to read.
        self._extra = extra

    def readinto(self, buf: memoryview) -> int:
        return 0


class LengthBody(Body):
    """A Content-Length body, read from the socket into the caller's buffer."""

    def __init__(
        self, conn: Connection, timer: Timer, length: int, leftover: bytes, keep: bool
    ) -> None:
        super().__init__(keep)
        self._sock = conn.sock
        self._timer = timer
        self.length = length
        self._left = length
        # What was read past the head: the body's first bytes, and anything
        # beyond the body is not ours to read.
        self._pending = memoryview(leftover)[:length]
        self._extra = len(leftover) > length
        self.done = length == 0

    def readinto(self, buf: memoryview) -> int:
        want = min(len(buf), self._left)
        if self.done or not want:
            return 0
        n = min(want, len(self._pending))
        if n:
            buf[:n] = self._pending[:n]
            self._pending = self._pending[n:]
        # Fill the buffer (as a buffered file would): fewer, larger pieces for
        # the hashing and writing above; each read is under the clock. But
        # once bytes are in hand, not for longer than FILL_FOR: on a slow or
        # pausing link the caller then reports (and can stop on) what arrived
        # every fraction of a second, not once per MiB.
        sock, timer = self._sock, self._timer
        until = time.monotonic() + FILL_FOR
        while n < want:
            limit = timer.timeout()
            filling = False  # whether the fill's bound, not the clock's, is the limit
            if n:
                left = until - time.monotonic()
                if left <= 0:
                    break
                filling = left < limit
                limit = min(limit, left)
            sock.settimeout(limit)
            try:
                got = sock.recv_into(buf[n:want])
            except TimeoutError as e:
                if filling:
                    break
                raise timer.reason(e) from None
            if not got:
                if n:
                    break  # these first; the next read reports the loss
                raise Closed(f"connection closed with {self._left} body bytes missing")
            n += got
        self._left -= n
        if self._left == 0:
            self.done = True
        return n


class ChunkedBody(Body):
    """A chunked body: chunk-size lines, data, CRLFs, the last chunk and a
    trailer block (checked, then dropped: nothing here reads trailers)."""

    def __init__(self, conn: Connection, timer: Timer, keep: bool) -> None:
        super().__init__(keep)
        self._conn = conn
        self._timer = timer
        self._left = 0  # data bytes left in the current chunk
        self._crlf = False  # a chunk's data ended: its CRLF comes next
        self._trailers = False  # the last chunk came: the trailer block is next
        # An empty body that came with the head ends here, without a read
        # (so the connection goes back to the pool).
        with contextlib.suppress(_Wait):
            self._next_chunk(None)
        if self.done:
            self.length = 0

    def _next_chunk(self, timer: Timer | None) -> None:
        """Read up to the next chunk's data, or to the end of the body.
        Each step records its progress before the next may wait (``_Wait``
        without a timer), so a later call goes on where this one stopped."""
        conn = self._conn
        if self._crlf:
            if conn._take(2, timer) != b"\r\n":
                raise Protocol("a chunk's data does not end with CRLF")
            self._crlf = False
        if not self._trailers:
            size = http11.chunk_size(conn._line(timer))
            if size:
                self._left = size
                self._crlf = True
                return
            self._trailers = True
        http11.parse_trailers(conn._block(timer, "trailer block", head=False))
        self.done = True
        # Anything after the end is someone else's answer: not ours to read.
        self._extra = bool(conn._buf)

    def readinto(self, buf: memoryview) -> int:
        while not self._left:
            if self.done or not len(buf):
                return 0
            self._next_chunk(self._timer)
        conn = self._conn
        want = min(len(buf), self._left)
        if conn._buf:
            n = min(want, len(conn._buf))
            buf[:n] = conn._buf[:n]
            del conn._buf[:n]
        else:
            # Straight into the caller's buffer: a chunked blob is not copied
            # through ours.
            conn.sock.settimeout(self._timer.timeout())
            try:
                n = conn.sock.recv_into(buf[:want])
            except TimeoutError as e:
                raise self._timer.reason(e) from None
            if not n:
                raise Closed("connection closed inside a chunk")
            conn._received += n
        self._left -= n
        return n


class CloseBody(Body):
    """A body that ends when the connection does (no length, not chunked);
    the connection is never reused."""

    def __init__(self, conn: Connection, timer: Timer, leftover: bytes) -> None:
        super().__init__(False)
        self._sock = conn.sock
        self._timer = timer
        self._pending = memoryview(leftover)
        # RFC 9112 §9.8: over TLS such a body is whole only once the server's
        # close_notify came; a bare TCP close (anyone on the path can forge
        # one) may have cut it short. The ssl module reads both as a clean
        # end unless told not to; this connection is not reused anyway.
        sock: Any = conn.sock
        if hasattr(sock, "suppress_ragged_eofs"):
            sock.suppress_ragged_eofs = False

    def readinto(self, buf: memoryview) -> int:
        if self.done or not len(buf):
            return 0
        if self._pending:
            n = min(len(buf), len(self._pending))
            buf[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        self._sock.settimeout(self._timer.timeout())
        try:
            n = self._sock.recv_into(buf)
        except TimeoutError as e:
            raise self._timer.reason(e) from None
        except OSError as e:
            if _tls_eof(e):
                why = "connection closed without TLS close_notify: the body may be cut short"
                raise Closed(why) from e
            raise
        if not n:
            self.done = True
        return n


def decimal(value: str | None, max_digits: int = 20) -> int | None:
    """An HTTP decimal field value (``1*DIGIT``, ASCII digits only: ``"²"``
    is a digit to ``str.isdigit`` and an error to ``int``), or None."""
    if value is None:
        return None
    text = value.strip()
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _file_chunks(f: Any) -> Iterator[bytes]:
    while piece := f.read(1 << 20):
        yield piece


def _tls_eof(e: BaseException) -> bool:
    """An EOF without the TLS closure alert (``ssl.SSLEOFError``)."""
    mod = sys.modules.get("ssl")
    return mod is not None and isinstance(e, mod.SSLEOFError)


def ssl_error_type() -> type[BaseException] | None:
    """``ssl.SSLError`` if ssl was imported (only HTTPS needs it)."""
    mod = sys.modules.get("ssl")
    return getattr(mod, "SSLError", None) if mod is not None else None
