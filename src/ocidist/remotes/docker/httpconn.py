"""One HTTP/1.1 client connection: h11 frames it, we own the socket and the clock.

h11 (a strict, fuzzed, pure-Python HTTP/1.1 state machine) serialises every
request head and body framing and parses every status line, header block,
1xx answer, chunked body and trailer; this module feeds it bytes and
enforces what h11 leaves to its user:

- the answer's head (status line and fields, obs-fold continuation lines
  included, since h11 unfolds them inside its bounded buffer) and a trailer
  block are at most ``MAX_HEAD`` bytes and ``MAX_FIELDS`` fields each;
- at most ``MAX_INFORMATIONAL`` 1xx answers come before the final one;
- every blocking call (connect, TLS handshake, send, each read of the head
  and the body) gives up at the command's deadline (``Timer.deadline``) or
  after ``Timer.stall`` seconds without progress, and the head must arrive
  whole within ``stall`` seconds: a 1 byte/s trickle, endless ``100
  Continue`` or endless header lines cannot hold a request open.

One thing is not h11's: a body framed by ``Content-Length`` is counted off
the socket straight into the caller's buffer. The length is the one h11
validated in the head (one value, ASCII digits, at most 20 of them; a
conflicting or non-ASCII length never gets here), so the framing decision
stays h11's; counting N bytes needs no parser, while h11's buffer would copy
every byte of a layer twice more (docs/BENCHMARKS.md, "h11").

A connection may carry another request only when its answer was read to the
end with nothing left over: bytes after a complete answer (a second,
smuggled answer, or garbage) drop the connection, so they can never be read
as the answer to the next request. ``dropped`` also refuses an idle
connection with anything waiting on it.

Errors are the built-in ones (``OSError``, ``TimeoutError`` and its
``DeadlineReached``) or ``Protocol`` for an answer that is not HTTP we can
frame; transport.py turns them into DistErrors.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import h11
else:
    h11 = None  # bound by load_h11(), before the first request is framed


def load_h11() -> None:
    """Import h11 (~10 ms of CPU: it creates its event classes with
    ``dataclasses``, which imports ``inspect`` and ``ast``) and bind it here.
    ``Connection.send`` calls this before framing a request (waiting for an
    import in flight: the import system's module lock); ``preload`` starts
    it in a thread as the first connection is made, so on a real network
    the import runs while that connection waits on DNS, TCP and TLS rather
    than before them. Started any earlier it would only share the
    interpreter lock with the command's own set-up."""
    global h11
    if h11 is None:
        import h11 as module

        h11 = module


_preloading = threading.Lock()


def preload() -> None:
    """Start importing h11 in the background, once (see ``load_h11``)."""
    if h11 is None and _preloading.acquire(blocking=False):
        threading.Thread(target=load_h11, name="import-h11", daemon=True).start()


# The head of an answer (status line + fields) and a trailer block.
MAX_HEAD = 64 * 1024
MAX_FIELDS = 100
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


class Protocol(Exception):
    """The peer's answer is not HTTP/1.x we can frame (or breaks a cap)."""


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
    preload()  # h11, while this waits on the name, the handshakes (load_h11)
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
    preload()
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


class Connection:
    """A keep-alive connection; one request at a time, each answered in full
    (or the connection dropped) before the next. Each exchange has its own
    h11 state machine."""

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
        self._h: h11.Connection | None = None
        self._eof = False
        self._received = 0  # bytes of the current answer so far
        self._start = b""  # its first bytes (up to 5)
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
        target or header h11 refuses: one that could split the request)."""
        load_h11()
        h = self._h = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._eof = False
        self._received = 0
        self._start = b""
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
        try:
            head = h.send(h11.Request(method=method, target=target, headers=fields)) or b""
            if data is not None and len(data) <= _COALESCE:
                pieces = _framed(h, data) if len(data) else []
                end = h.send(h11.EndOfMessage()) or b""
                self._write(b"".join([head, *pieces, end]), timer)
                return
            self._write(head, timer)
            if data is not None:
                for piece in _framed(h, data):
                    self._write(piece, timer)
            elif chunks is not None:
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    if len(view):
                        for piece in _framed(h, view):
                            self._write(piece, timer)
            self._write(h.send(h11.EndOfMessage()) or b"", timer)
        except h11.LocalProtocolError as e:
            raise ValueError(str(e)) from None

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
        informational = 0
        while True:
            ev = self.next_event(head_timer)
            if isinstance(ev, h11.InformationalResponse):
                informational += 1
                if informational > MAX_INFORMATIONAL:
                    raise Protocol(f"more than {MAX_INFORMATIONAL} informational (1xx) answers")
                continue
            if isinstance(ev, h11.Response):
                break
            raise Protocol(f"unexpected {type(ev).__name__} before the answer to CONNECT")
        _fields(ev.headers, "header block")
        if not 200 <= ev.status_code < 300:
            raise ProxyRefused(ev.status_code)
        assert self._h is not None
        if self._h.trailing_data[0]:
            # The target speaks only after our TLS hello: these bytes are not its.
            raise Protocol("bytes after the proxy's answer to CONNECT")

    # -- response ------------------------------------------------------------

    def next_event(self, timer: Timer) -> Any:
        """h11's next event, reading from the socket as it needs bytes."""
        h = self._h
        assert h is not None
        while True:
            try:
                ev = h.next_event()
            except h11.RemoteProtocolError as e:
                if self._eof:
                    raise Closed("connection closed inside the answer") from None
                raise Protocol(_say(e)) from None
            if ev is not h11.NEED_DATA:
                return ev
            self.sock.settimeout(timer.timeout())
            try:
                data = self.sock.recv(_RECV)
            except TimeoutError as e:
                raise timer.reason(e) from None
            if not data:
                self._eof = True
            elif self._received < 5 and h.their_state is h11.SEND_RESPONSE:
                # Every answer starts "HTTP/": anything else (an SSH banner, an
                # HTTP/2 preface) is refused now, not when a line never ends.
                start = (self._start + data)[:5]
                self._start = start
                if not b"HTTP/".startswith(start[: len(start)]):
                    raise Protocol(f"the answer is not HTTP/1.x (it starts {start!r})")
            self._received += len(data)
            h.receive_data(data)

    def receive(self, method: str, timer: Timer) -> tuple[int, Headers, Body]:
        """Read the status line and headers (skipping 1xx answers, at most
        ``MAX_INFORMATIONAL``); the head must arrive within ``timer.stall``."""
        h = self._h
        assert h is not None
        head_timer = timer.within(timer.stall, f"no complete answer within {timer.stall:g}s")
        informational = 0
        while True:
            try:
                ev = self.next_event(head_timer)
            except Closed:
                if not self._received:
                    raise Closed("connection closed before the status line") from None
                raise
            if isinstance(ev, h11.InformationalResponse):
                _fields(ev.headers, "informational answer")
                informational += 1
                if informational > MAX_INFORMATIONAL:
                    raise Protocol(f"more than {MAX_INFORMATIONAL} informational (1xx) answers")
                continue
            if isinstance(ev, h11.Response):
                break
            if isinstance(ev, h11.ConnectionClosed):
                raise Closed("connection closed before the status line")
            raise Protocol(f"unexpected {type(ev).__name__} before the answer")
        fields = _fields(ev.headers, "header block")
        headers = Headers(fields)
        status = ev.status_code
        keep = (
            ev.http_version == b"1.1"
            and "close" not in _tokens(headers.get("Connection"))
            and not self._absolute
        )
        te = "Transfer-Encoding" in headers
        if method == "HEAD" or status in _NO_BODY_STATUS or te or "Content-Length" not in headers:
            # Chunked, close-delimited or empty: h11 reads it. Both
            # Transfer-Encoding and Content-Length: chunking wins, and the
            # connection is not reused (RFC 9112 §6.1: it may be a smuggling
            # attempt).
            keep = keep and not (te and "Content-Length" in headers)
            return status, headers, FramedBody(self, timer, keep)
        leftover, _ = h.trailing_data
        length = int(headers["Content-Length"])  # h11 checked: 1-20 ASCII digits
        return status, headers, LengthBody(self, timer, length, leftover, keep)


def _framed(h: h11.Connection, data: memoryview) -> list[Any]:
    """The pieces that send ``data`` in the request's framing (chunk size
    lines around it when chunked); ``data`` itself is passed through, not copied."""
    # h11 declares bytes but passes any buffer through.
    return h.send_with_data_passthrough(h11.Data(data=data)) or []  # type: ignore[arg-type]


def _fields(raw: Any, what: str) -> list[tuple[str, str]]:
    """h11's fields as text, within the caps (count, and size: h11 bounds
    only the part of the head it has not parsed yet)."""
    fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw.raw_items()]
    if len(fields) > MAX_FIELDS:
        raise Protocol(f"{what} of more than {MAX_FIELDS} fields")
    if sum(len(n) + len(v) + 4 for n, v in fields) > MAX_HEAD:
        raise Protocol(f"{what} over {MAX_HEAD} bytes")
    return fields


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
        # What h11 had read past the head: the body's first bytes, and
        # anything beyond the body is not ours to read.
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


class FramedBody(Body):
    """A chunked, close-delimited or empty body, read through h11."""

    def __init__(self, conn: Connection, timer: Timer, keep: bool) -> None:
        super().__init__(keep)
        self._conn = conn
        self._timer = timer
        self._pending = memoryview(b"")
        # An empty body (HEAD, 204, 304, "Content-Length: 0") ends here,
        # without a read; so may a small one that came with the head.
        h = conn._h
        assert h is not None
        try:
            ev = h.next_event()
        except h11.RemoteProtocolError as e:
            raise Protocol(_say(e)) from None
        if ev is not h11.NEED_DATA:
            self._event(ev)
        if self.done and not self._pending:
            self.length = 0

    def _event(self, ev: Any) -> None:
        h = self._conn._h
        assert h is not None
        if isinstance(ev, h11.Data):
            self._pending = memoryview(ev.data)
        elif isinstance(ev, h11.EndOfMessage):
            _fields(ev.headers, "trailer block")
            self.done = True
            # Anything after the end is someone else's answer: not ours to read.
            self._extra = bool(h.trailing_data[0]) or h.their_state is not h11.DONE
        else:
            raise Protocol(f"unexpected {type(ev).__name__} in a body")

    def readinto(self, buf: memoryview) -> int:
        while not self._pending:
            if self.done or not len(buf):
                return 0
            self._event(self._conn.next_event(self._timer))
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
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


def _say(e: Exception) -> str:
    """h11's complaint, short: it may quote a whole hostile line."""
    text = str(e)
    if text == "Receive buffer too long":
        return f"head or trailer block over {MAX_HEAD} bytes"
    return text if len(text) <= 120 else text[:117] + "..."


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()] if value else []


def _file_chunks(f: Any) -> Iterator[bytes]:
    while piece := f.read(1 << 20):
        yield piece


def ssl_error_type() -> type[BaseException] | None:
    """``ssl.SSLError`` if ssl was imported (only HTTPS needs it)."""
    mod = sys.modules.get("ssl")
    return getattr(mod, "SSLError", None) if mod is not None else None
