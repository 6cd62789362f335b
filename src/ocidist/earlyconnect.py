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

The callers (``cli.program`` before the command line is parsed, where it
plainly names the reference; ``cli.main`` after, which also closes what
the parsed command does not dial) start one only where the address
follows from the reference alone: no proxy in the environment (the
connection would go around it), no hosts.toml directory for the registry
(mirrors or another server may be configured), no daemon doing the work.
"""

from __future__ import annotations

import _socket
import _thread
import sys

_lock = _thread.allocate_lock()
_pending: dict[tuple[str, int], _Early] = {}
# Until a connect thread is about to send its SYN, the interpreter hands the
# GIL over after this long instead of the default 5 ms: the thread needs it
# to run at all (and again after the name lookup), and the main thread,
# importing the command's modules, kept it for whole intervals (the
# connection began 6-7 ms after start() was called). Only a thread that
# asks for the GIL makes the main thread give it up, so the short interval
# costs nothing else; the default is back before the connect waits.
_EAGER_SWITCH = 0.0002
_switching: list[float] = []  # the interval to restore, while one is eager


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
        if not _switching:
            _switching.append(sys.getswitchinterval())
            sys.setswitchinterval(min(_EAGER_SWITCH, _switching[0]))
    try:
        _thread.start_new_thread(_connect, (key, early, timeout))
    except RuntimeError:  # no thread to be had: nothing to take
        with _lock:
            _pending.pop(key, None)
            _unhurry()
        early.done.release()


def _unhurry() -> None:
    """The default GIL switch interval again (under ``_lock``)."""
    if _switching:
        sys.setswitchinterval(_switching.pop())


def _connect(key: tuple[str, int], early: _Early, timeout: float) -> None:
    sock = None
    try:
        # The name as bytes: given str, getaddrinfo encodes it with the idna
        # codec, whose first use imports it (encodings.idna, stringprep,
        # unicodedata: ~5 ms, holding the GIL) before the SYN could leave.
        # Domains here are ASCII (dialling.domain_of, reference's grammar),
        # for which the codec changes nothing.
        for family, kind, proto, _, addr in _socket.getaddrinfo(
            key[0].encode("ascii"), key[1], 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            with _lock:
                _unhurry()  # this thread runs; the SYN leaves in a moment
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
            _unhurry()
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
        # The command has reached its first request: a connect thread still
        # waiting for a slow name lookup does not keep the GIL hurried.
        _unhurry()
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
    keep_only(None)


def keep_only(address: tuple[str, int] | None) -> None:
    """Close every connection started but to ``address`` (cli.main: what
    ``cli.program`` began before the command line was parsed, where the
    parsed command dials elsewhere or nowhere)."""
    with _lock:
        _unhurry()
        left = [e for key, e in _pending.items() if key != address]
        for key in [key for key in _pending if key != address]:
            del _pending[key]
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
