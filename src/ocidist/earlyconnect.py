"""One connection to the registry, opened while the command starts up.

On a far registry the TCP handshake is a round trip before the first
request can leave. ``dist fetch``, ``pull`` and ``unpack`` know the
registry once the command line is parsed, tens of milliseconds before the
resolver and its imports are ready and the warm-up (``pull.warm_up``) opens
its connections: ``start`` begins one connection then, in a thread, with
nothing but ``_socket`` and ``_thread`` (no import costs start-up), and the
transport takes it (``take``) for its first new connection to that host and
port. It never sends a byte (TLS and requests are the transport's), and it
is best effort: a failure leaves nothing behind, the transport connects as
it always did.

The caller (``cli.main``) starts one only where the address follows from
the reference alone: no proxy in the environment (the connection would go
around it), no hosts.toml directory for the registry (mirrors or another
server may be configured), no daemon doing the work.
"""

from __future__ import annotations

import _socket
import _thread

_lock = _thread.allocate_lock()
_pending: dict[tuple[str, int], _Early] = {}


class _Early:
    def __init__(self) -> None:
        self.done = _thread.allocate_lock()
        self.done.acquire()  # released when the connect has ended
        self.sock: _socket.socket | None = None
        self.abandoned = False


def start(host: str, port: int, timeout: float = 30.0) -> None:
    """Connect to ``host``:``port`` in the background (once per address)."""
    key = (host, port)
    with _lock:
        if key in _pending:
            return
        early = _pending[key] = _Early()
    try:
        _thread.start_new_thread(_connect, (key, early, timeout))
    except RuntimeError:  # no thread to be had: nothing to take
        with _lock:
            _pending.pop(key, None)
        early.done.release()


def _connect(key: tuple[str, int], early: _Early, timeout: float) -> None:
    sock = None
    try:
        for family, kind, proto, _, addr in _socket.getaddrinfo(
            key[0], key[1], 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(addr)
                break
            except OSError:
                sock.close()
                sock = None
    except Exception:  # best effort: the transport reports its own errors
        # Not only OSError: the idna codec raises UnicodeError for a label
        # of 64+ characters (the reference grammar has no length limit),
        # and a thread that dies here would leave ``done`` held, so the
        # first request waited its whole connect stall for nothing.
        if sock is not None:
            sock.close()
        sock = None
    finally:
        with _lock:
            if early.abandoned and sock is not None:
                sock.close()
            else:
                early.sock = sock
        early.done.release()


def take(host: str, port: int, wait: float | None) -> _socket.socket | None:
    """The connection started to ``host``:``port``, once; waits up to
    ``wait`` seconds (None: as long as it takes) for a connect still going,
    which is still sooner than a new one. None if there is none or it
    failed; TimeoutError if it is not done in time (it is then closed when
    it is). With ``wait`` 0 a connect still going is left for a later
    ``take``."""
    key = (host, port)
    with _lock:
        early = _pending.get(key)
        if early is None:
            return None
        if wait == 0:
            if not early.done.acquire(blocking=False):
                return None
            del _pending[key]
            return early.sock
        del _pending[key]
    if not early.done.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
        with _lock:
            early.abandoned = True
            if early.sock is not None:  # done after all, between the two
                early.sock.close()
        # The caller's own connect would have stalled as long: that is its
        # connect timing out (one attempt), not a reason to wait again.
        raise TimeoutError(f"connect to {host}:{port} timed out")
    return early.sock


def discard() -> None:
    """Close what was never taken (the command is over)."""
    with _lock:
        left = list(_pending.values())
        _pending.clear()
        for early in left:
            early.abandoned = True
            if early.sock is not None:
                early.sock.close()


def dial(domain: str, plain_http: bool) -> tuple[str, int] | None:
    """The host and port ``domain``'s upstream is dialled at without any
    configuration (as ``remotes.docker.hosts.default_hosts``), or None
    where it cannot tell (an odd authority)."""
    from ocidist.dialling import upstream

    host, scheme = upstream(domain, plain_http)
    default = 80 if scheme == "http" else 443
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1 :]
    else:
        name, _, port_text = host.partition(":")
        rest = ":" + port_text if port_text else ""
    if not rest:
        return name, default
    if not rest.startswith(":") or not rest[1:].isdigit():
        return None
    return name, int(rest[1:])
