"""HTTP transport: a pool of keep-alive connections (httpconn.py).

It sends one request and returns a streaming response; socket, TLS and HTTP
errors become ``Unavailable``/``TimedOut`` here and nowhere else. Redirects
are followed by hand so that registry credentials are never forwarded to
another host (blob GETs are routinely redirected to object storage with
signed URLs).

Why no HTTP library: urllib3 cost ~45-60 ms of imports on every command
(start-up is most of a small pull) and a copy per read, ``http.client``
another ~10 ms for its email-based header parser; what we need is a pool of
idle keep-alive connections per host, which is the small class below.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ocidist import earlyconnect, logs
from ocidist.errors import DistError, InvalidContent, RegistryError, TimedOut, Unavailable
from ocidist.remotes.docker import httpconn, trace
from ocidist.remotes.docker.httpconn import Body, Connection, Headers, Protocol, Timer
from ocidist.remotes.docker.origin import (
    REDIRECT_STATUS,
    HTTPSHosts,
    Origin,
    Refused,
    bound_for,
    origin_of,
    redirect,
    split_bound,
)
from ocidist.remotes.docker.proxy import Proxy, ProxyConfig
from ocidist.value import Value

_LOGGER = "ocidist.remotes.transport"

MAX_REDIRECTS = 10
CHUNK = 1 << 20
# A redirect's or empty answer's body up to this size is read off so that
# its connection can serve the next request; anything longer is dropped.
DRAIN_MAX = 64 * 1024
# Idempotent methods (RFC 9110 §9.2.2): a server cannot have acted on them
# twice, so they are resent once on a fresh connection when a reused one
# turns out closed before the answer, and retried by the session's policy.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


# Values (value.py), not dataclasses or NamedTuples: creating either class
# costs start-up (a dataclass ~1 ms, a NamedTuple ~90 us: both exec code).
class TLSConfig(Value):
    __slots__ = ("insecure", "ca_files", "client_cert", "client_key")
    insecure: bool
    ca_files: tuple[str, ...]
    client_cert: str | None
    client_key: str | None

    def __init__(
        self,
        insecure: bool = False,
        ca_files: tuple[str, ...] = (),
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        object.__setattr__(self, "insecure", insecure)
        object.__setattr__(self, "ca_files", ca_files)
        object.__setattr__(self, "client_cert", client_cert)
        object.__setattr__(self, "client_key", client_key)


class Timeouts(Value):
    __slots__ = ("connect", "read")
    connect: float
    # A read that sees no byte for this long is a stall; the request is retried.
    read: float

    def __init__(self, connect: float = 10.0, read: float = 30.0) -> None:
        object.__setattr__(self, "connect", connect)
        object.__setattr__(self, "read", read)


class Deadline:
    """The whole command's deadline (``--timeout``), shared by every request."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def check(self, what: str) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise TimedOut(f"{what}: timed out (deadline reached)")

    def timer(self, stall: float) -> Timer:
        """A clock for one exchange: this deadline, and ``stall`` per blocking call."""
        return Timer(self.at, stall)


_PoolKey = tuple[str, str, int, TLSConfig, "Proxy | None"]  # scheme, host, port, TLS, proxy
_PLAIN = TLSConfig()  # plain HTTP: one pool whatever TLS config was asked for
_ReleaseFunc = Callable[[Connection], None]


class Response:
    """A streaming HTTP response; ``close`` returns the connection to the pool
    when the body was read to the end, and discards it otherwise."""

    def __init__(
        self,
        conn: Connection,
        status: int,
        headers: Headers,
        body: Body,
        release: _ReleaseFunc,
        url: str,
        what: str,
    ) -> None:
        self._conn: Connection | None = conn
        self._body = body
        self._release = release  # back to the pool
        self.url = url
        self.status = status
        self.headers = headers
        self._what = what

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name)

    def content_length(self) -> int | None:
        return httpconn.decimal(self.headers.get("Content-Length"))

    def readinto(self, buf: bytearray | memoryview) -> int:
        # Straight from the socket's buffer into ``buf``, no bytes in between.
        if self._conn is None:
            return 0
        try:
            return self._body.readinto(memoryview(buf).cast("B"))
        except (OSError, Protocol, ValueError) as e:
            raise _read_error(e, self._what) from e

    def read(self, n: int = -1) -> bytes:
        if self._conn is None:
            return b""
        try:
            if n >= 0:
                return self._body.read(n)
            chunks = []
            while chunk := self._body.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except (OSError, Protocol, ValueError) as e:
            raise _read_error(e, self._what) from e

    def read_capped(self, cap: int) -> bytes:
        """The whole body, refusing anything over ``cap`` bytes (manifests, errors)."""
        length = self.content_length()
        if length is not None and length > cap:
            self.close()
            raise InvalidContent(f"{self._what}: response of {length} bytes exceeds {cap}")
        try:
            data = self.read(cap + 1)
        except BaseException:
            self.close()
            raise
        if len(data) > cap:
            self.close()
            raise InvalidContent(f"{self._what}: response exceeds {cap} bytes")
        self.close()
        return data

    def drain(self, limit: int) -> None:
        """Read off a body of at most ``limit`` bytes so the connection can be
        reused; a longer or unknown-length one is left (``close`` drops it)."""
        body = self._body
        if body.done or body.length is None or body.length > limit:
            return
        with contextlib.suppress(OSError, Protocol, ValueError):
            body.read(limit)  # on failure, close drops the connection

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._body.reusable:
            self._release(conn)
        else:
            # A partly read body leaves the socket mid-message: drop it.
            conn.close()


def _timed_out(e: TimeoutError, what: str) -> TimedOut:
    # DeadlineReached says which deadline; a bare socket timeout is a stall.
    why = str(e) if isinstance(e, httpconn.DeadlineReached) else "no data"
    return TimedOut(f"{what}: timed out ({why})")


def _read_error(e: BaseException, what: str) -> Exception:
    if isinstance(e, TimeoutError):
        return _timed_out(e, what)
    if isinstance(e, Protocol):
        return Unavailable(f"{what}: invalid HTTP response ({e})")
    # A body cut short, a reset, a chunk that is not one.
    return Unavailable(f"{what}: connection broken")


def _is_tls_error(e: BaseException) -> bool:
    ssl_error = httpconn.ssl_error_type()
    return ssl_error is not None and isinstance(e, ssl_error)


# OpenSSL's reasons for a handshake whose answer was not TLS at all: the
# server spoke plain HTTP (or something else) back.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
     "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}
)  # fmt: skip


def _tls_error(e: BaseException, what: str) -> Unavailable:
    """A TLS failure in words; one that trying again cannot change fails at once."""
    reason = str(getattr(e, "reason", "") or "")
    if reason in _NOT_TLS:
        return Unavailable(
            f"{what}: TLS handshake failed: the registry speaks plain HTTP? use "
            '--plain-http or hosts.toml (server = "http://HOST")',
            attempts=1,
        )
    verify = getattr(e, "verify_message", None)
    if verify is not None:
        return Unavailable(
            f"{what}: TLS certificate verification failed ({verify}); give the CA in "
            "hosts.toml (ca = ...) or use --insecure",
            attempts=1,
        )
    return Unavailable(f"{what}: TLS error: {reason or e}")


def _connect_error(e: OSError, what: str) -> Exception:
    if isinstance(e, TimeoutError):
        return _timed_out(e, what)
    if isinstance(e, ConnectionRefusedError):
        return Unavailable(f"{what}: connection refused")
    if _is_tls_error(e):
        return _tls_error(e, what)
    import socket

    if isinstance(e, socket.gaierror) and e.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        # The name does not exist: one more try (a resolver can flap), then stop.
        return Unavailable(f"{what}: unknown host", attempts=2)
    msg = str(e).lower()
    if "name or service not known" in msg or "nodename nor servname" in msg:
        return Unavailable(f"{what}: unknown host", attempts=2)
    return Unavailable(f"{what}: cannot connect: {e.strerror or e}")


def _exchange_error(e: BaseException, what: str) -> Exception:
    if isinstance(e, TimeoutError):
        return _timed_out(e, what)
    if _is_tls_error(e):
        return _tls_error(e, what)
    if isinstance(e, OSError):
        return Unavailable(f"{what}: connection broken")
    # A status line or header block that is not HTTP (or too long).
    return Unavailable(f"{what}: invalid HTTP response ({e})")


# Host names made of these only (no brackets, userinfo, percent-escapes) take
# the fast path in _simple; anything else goes through urllib.parse.
_PLAIN_HOST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def _simple(url: str) -> tuple[str, str, str, int | None, str] | None:
    """(scheme, netloc, host, port, target) of a plain ``http(s)://host[:port]/path``
    URL — the kind we build ourselves for every request — or None for anything
    unusual. ``urllib.parse`` (which imports ``ipaddress``) costs ~3 ms of
    start-up; it stays the parser for every URL this does not vouch for."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    netloc, _, path = rest.partition("/")
    host, colon, port_text = netloc.partition(":")
    if not host or not _PLAIN_HOST.issuperset(host):
        return None
    port: int | None = None
    if colon:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            return None
        port = int(port_text)
        if port > 65535:
            return None
    target = "/" + path
    if "#" in target or not target.isprintable() or " " in target or not target.isascii():
        return None
    return scheme, netloc, host.lower(), port, target


def _target(url: str, what: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request target (path and query) of ``url``."""
    simple = _simple(url)
    if simple is not None:
        scheme, _, host, maybe_port, target = simple
        default = 443 if scheme == "https" else 80
        return scheme, host, default if maybe_port is None else maybe_port, target
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        raise InvalidContent(f"{what}: invalid URL") from None
    scheme = u.scheme.lower()
    if scheme not in ("http", "https") or not u.hostname:
        raise InvalidContent(f"{what}: invalid URL")
    if port is None:
        port = 443 if scheme == "https" else 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return scheme, u.hostname, port, path


def _host_header(scheme: str, host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"


class Transport:
    """Idle keep-alive connections per (scheme, host, port, TLS config,
    proxy), shared by all requests of a command. ``proxies`` (proxy.py) says
    which requests go through which HTTP proxy; none by default."""

    def __init__(
        self,
        *,
        pool_size: int = 16,
        timeouts: Timeouts | None = None,
        proxies: ProxyConfig | None = None,
    ) -> None:
        self._pool_size = pool_size
        self._timeouts = timeouts or Timeouts()
        self._proxies = proxies if proxies is not None and proxies.any else None
        self._idle: dict[_PoolKey, list[Connection]] = {}
        self._contexts: dict[TLSConfig, Any] = {}
        self._lock = threading.Lock()
        # Host names configured or reached over HTTPS (origin.py, rule 2).
        self.https = HTTPSHosts()
        # The shortest wait from a request sent to its answer's head, per
        # (scheme, host, port): a round trip plus the server's own time.
        self._answer_times: dict[tuple[str, str, int], float] = {}

    def _context(self, tls: TLSConfig, what: str) -> Any:
        """The ssl.SSLContext for ``tls`` (ssl is imported by HTTPS only)."""
        with self._lock:
            ctx = self._contexts.get(tls)
        if ctx is not None:
            return ctx
        import ssl

        try:
            ctx = ssl.create_default_context()
            if tls.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                for ca in tls.ca_files:
                    ctx.load_verify_locations(cafile=ca)
            if tls.client_cert:
                ctx.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ValueError) as e:
            raise Unavailable(f"{what}: TLS error: {e}") from e
        with self._lock:
            return self._contexts.setdefault(tls, ctx)

    def _checkout(self, key: _PoolKey) -> Connection | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                # The most recently used first: on a real link a connection
                # left idle longer than a retransmission timeout falls back
                # to slow start (Linux's tcp_slow_start_after_idle; the bench
                # relay models it), so the one just released has the widest
                # window. Taken in order of age (it was, from f02501f), a big
                # blob's ranges got the coldest connections: the bench's
                # 155 MB fetch through the wan relay took 7.3 s instead of
                # 3.0. (The command's early connection, which should go
                # first, is taken ahead of the pool: Transport._early.)
                conn = idle.pop()
                if not conn.dropped():
                    return conn
                conn.close()
        return None

    def _release(self, key: _PoolKey) -> _ReleaseFunc:
        def release(conn: Connection) -> None:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._pool_size:
                    idle.append(conn)
                    return
            conn.close()

        return release

    def warm(self, url: str, n: int, tls: TLSConfig | None = None) -> None:
        """Open connections to ``url``'s host in background threads until
        ``n`` are idle in the pool, so the requests that follow skip the
        TCP (and TLS) handshake. Failures are dropped: a request that needs
        the connection reports its own."""
        try:
            scheme, host, port, _ = _target(url, url)
        except DistError:
            return
        tls = tls or TLSConfig()
        proxy = self._proxies.for_target(scheme, host, port) if self._proxies else None
        key = (scheme, host, port, tls if scheme == "https" else _PLAIN, proxy)
        with self._lock:
            want = min(n, self._pool_size) - len(self._idle.get(key, ()))
        if want > 0:
            # One thread started here, which starts the others: each start
            # waits for its thread to run (~1 ms, more with the GIL busy),
            # and the caller is about to send a request (12 started here
            # held the manifests' requests of an index back ~10 ms).
            threading.Thread(target=self._warm_many, args=(key, want), daemon=True).start()

    def _warm_many(self, key: _PoolKey, n: int) -> None:
        for _ in range(n - 1):
            threading.Thread(target=self._warm_one, args=(key,), daemon=True).start()
        self._warm_one(key)

    def _warm_one(self, key: _PoolKey) -> None:
        try:
            # Not the command's early connection: the first request takes
            # that (a warm-up's could still be on its way into the pool).
            conn = self._new(key, Timer(None, self._timeouts.connect), "warm-up", early=False)
        except DistError:
            return
        self._release(key)(conn)

    def _early(
        self, key: _PoolKey, timer: Timer, what: str, wait: float | None
    ) -> Connection | None:
        """The connection the command opened while it started
        (ocidist.earlyconnect), if there is one to ``key``'s host and port
        and it is still fit; ``wait`` as ``earlyconnect.take``."""
        scheme, host, port, tls, proxy = key
        if proxy is not None:
            return None
        early = earlyconnect.take(host, port, wait)
        if early is None:
            return None
        ctx = self._context(tls, what) if scheme == "https" else None
        sock = httpconn.adopt(early, timer, ctx, host)
        if sock is None:
            return None
        logs.debug(_LOGGER, "early connection to %s://%s:%d", scheme, host, port)
        return Connection(sock, _host_header(scheme, host, port))

    def _new(self, key: _PoolKey, timer: Timer, what: str, *, early: bool = True) -> Connection:
        scheme, host, port, tls, proxy = key
        if early:
            try:
                # A connect still going is sooner than a new one; the wait
                # is this connect's own stall (or what is left before the
                # deadline), and when it runs out that is this connect
                # timing out, not a reason to start a second full stall.
                conn = self._early(key, timer, what, timer.timeout())
            except OSError as e:  # the deadline passed, or the wait ran out
                raise _connect_error(e, what) from e
            if conn is not None:
                return conn
        ctx = self._context(tls, what) if scheme == "https" else None
        host_header = _host_header(scheme, host, port)
        if proxy is None:
            logs.debug(_LOGGER, "new connection to %s://%s:%d", scheme, host, port)
            try:
                sock = httpconn.connect(host, port, timer, ctx)
            except OSError as e:
                raise _connect_error(e, what) from e
            return Connection(sock, host_header)
        via = f"{what}: proxy {proxy}"
        logs.debug(_LOGGER, "new connection to %s://%s:%d via %s", scheme, host, port, proxy)
        try:
            sock = httpconn.connect(proxy.host, proxy.port, timer)
        except OSError as e:
            raise _connect_error(e, via) from e
        if scheme == "http":
            # Requests in absolute form; the proxy alone sees Proxy-Authorization.
            return Connection(
                sock,
                host_header,
                absolute=f"http://{host_header}",
                proxy_auth=proxy.authorization,
            )
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            Connection(sock, authority, proxy_auth=proxy.authorization).tunnel(authority, timer)
        except httpconn.ProxyRefused as e:
            sock.close()
            if e.status == 407:
                raise Unavailable(
                    f"{via}: proxy authentication required (407)", attempts=1
                ) from None
            raise Unavailable(
                f"{via}: proxy refused the tunnel to {authority} ({e.status})"
            ) from None
        except (OSError, Protocol, ValueError) as e:
            sock.close()
            raise _exchange_error(e, via) from e
        try:
            sock = httpconn.secure(sock, timer, ctx, host)
        except OSError as e:
            raise _connect_error(e, what) from e
        return Connection(sock, host_header)

    def _exchange(
        self,
        key: _PoolKey,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Any,
        deadline: Deadline | None,
        what: str,
    ) -> tuple[Connection, int, Headers, Body]:
        t = self._timeouts
        at = deadline.at if deadline is not None else None
        resendable = body is None or isinstance(body, bytes | bytearray | memoryview)
        pooled = True  # False once a reused connection turned out closed
        while True:
            # The command's early connection before any idle one: it was
            # opened first, so it is the furthest through its handshake.
            conn = self._early(key, Timer(at, t.connect), what, 0) if pooled else None
            conn = conn or (self._checkout(key) if pooled else None)
            # An early connection may have been closed while it waited,
            # like an idle one: a failed send is retried on a new one.
            reused = conn is not None
            if conn is None:
                conn = self._new(key, Timer(at, t.connect), what)
            sent = False
            timer = Timer(at, t.read)
            try:
                conn.send(method, path, headers, body, timer)
                sent = True
                waited = time.monotonic()
                answer = conn.receive(method, timer)
                self._answered(key, time.monotonic() - waited)
                return (conn, *answer)
            except ValueError as e:
                # A header or target with control characters (a hostile
                # token or Location) would split the request.
                conn.close()
                raise InvalidContent(f"{what}: invalid request ({e})") from None
            except (OSError, Protocol) as e:
                conn.close()
                # An idle connection the server closed just as we reused it:
                # nothing was acted on when the send itself failed, or when the
                # method is one a server may see twice. Once, on a fresh one.
                stale = isinstance(e, ConnectionError)  # Closed included
                if reused and stale and resendable and (not sent or method in IDEMPOTENT):
                    pooled = False  # not another idle one: it may be as stale
                    continue
                raise _exchange_error(e, what) from e

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | Any = None,
        tls: TLSConfig | None = None,
        deadline: Deadline | None = None,
        what: str = "",
        bound: Mapping[str, str] | None = None,
        bound_origin: Origin | None = None,
        confined: bool = False,
    ) -> Response:
        """One request, following redirects by hand under the origin policy
        (origin.py). ``bound`` headers (and any Authorization, Cookie or
        Proxy-Authorization in ``headers``) belong to ``bound_origin``
        (default: ``url``'s) and go to no other; ``confined``: the request
        follows no redirect away from that origin (rule 5)."""
        what = what or f"{method} {url}"
        tls = tls or TLSConfig()
        public, secret = split_bound(headers, bound)
        owner = bound_origin or self._origin(url, what)
        for _ in range(MAX_REDIRECTS + 1):
            if deadline is not None:
                deadline.check(what)
            target = self._origin(url, what)
            scheme, host, port, path = _target(url, what)
            if scheme == "https":
                self.https.add(host)
            hdrs = (
                {**public, **secret} if secret and bound_for(target, owner, self.https) else public
            )
            proxy = self._proxies.for_target(scheme, host, port) if self._proxies else None
            key = (scheme, host, port, tls if scheme == "https" else _PLAIN, proxy)
            trace.request(method, url, hdrs, secret, str(proxy) if proxy else "")
            conn, status, headers_in, body_in = self._exchange(
                key, method, path, hdrs, body, deadline, what
            )
            resp = Response(conn, status, headers_in, body_in, self._release(key), url, what)
            trace.answer(status, url, headers_in)
            if status in REDIRECT_STATUS:
                loc = resp.header("Location")
                resp.drain(DRAIN_MAX)
                resp.close()
                if not loc:
                    raise Unavailable(f"{what}: redirect without Location")
                try:
                    moved = redirect(
                        status, method, body, url, loc, confined=owner if confined else None
                    )
                    url, method, body = moved.url, moved.method, moved.body
                except Refused as e:
                    # The server's answer, not a passing fault: no retry.
                    trace.note("redirect %d refused: %s", status, str(e))
                    raise RegistryError(f"{what}: {e}", status=status) from None
                if secret:
                    kept = bound_for(self._origin(url, what), owner, self.https)
                    trace.note(
                        "redirect %d to %s: credentials %s",
                        status,
                        trace.url(url),
                        "kept (same origin)" if kept else f"dropped (not {owner})",
                    )
                continue
            return resp
        # A loop is the server's configuration, not a passing fault: no retry
        # (a RegistryError without a retryable status is not replayed).
        raise RegistryError(f"{what}: too many redirects (more than {MAX_REDIRECTS})")

    def _answered(self, key: _PoolKey, seconds: float) -> None:
        origin = key[:3]
        with self._lock:
            best = self._answer_times.get(origin)
            if best is None or seconds < best:
                self._answer_times[origin] = seconds

    def answer_time(self, url: str) -> float | None:
        """The shortest time ``url``'s host took to answer a request of this
        transport (its head, once the request was sent), or None before any
        answer: how far the host is, as a round trip plus its own time."""
        try:
            scheme, host, port, _ = _target(url, url)
        except DistError:
            return None
        with self._lock:
            return self._answer_times.get((scheme, host, port))

    @staticmethod
    def _origin(url: str, what: str) -> Origin:
        """``url``'s origin; refused unless the connection parser agrees."""
        try:
            o = origin_of(url)
        except ValueError:
            raise InvalidContent(f"{what}: invalid URL") from None
        scheme, host, port, _ = _target(url, what)
        if (o.scheme, o.host, o.port) != (scheme, host.lower(), port):
            raise InvalidContent(f"{what}: invalid URL")
        return o

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()
