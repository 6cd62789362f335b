"""A socket-level hostile HTTP server (the one seam where a fake is allowed:
no real registry misbehaves on purpose).

``HostileServer`` hands each accepted connection to a *script*, a function
of a ``Peer`` that reads requests and writes whatever bytes it likes, when it
likes: trickles, endless ``100 Continue``, a second answer after the first,
lengths that lie. ``HostileRegistry`` is a script that speaks enough of the
distribution API (``/v2/``, manifests and blobs by tag or digest) to get a
client to the request under test, where a rule takes over.

Everything stops by itself: ``close`` (or leaving the ``with`` block) sets
``stopping``, closes every socket, and joins every thread; endless scripts
loop on ``peer.send`` / ``peer.alive``, which turn False then.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import NamedTuple


class Request(NamedTuple):
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes
    raw_head: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class Peer:
    """One client connection as a script sees it."""

    def __init__(self, sock: socket.socket, server: HostileServer) -> None:
        self.sock = sock
        self.server = server
        self._buf = b""

    @property
    def alive(self) -> bool:
        return not self.server.stopping.is_set()

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        self._buf += data
        return bool(data)

    def request(self) -> Request | None:
        """The next request (head and Content-Length or chunked body), or None
        when the client closed the connection."""
        while b"\r\n\r\n" not in self._buf:
            if not self.alive or not self._fill():
                return None
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self._buf:
                    if not self._fill():
                        return None
                size_line, self._buf = self._buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self._buf) < size + 2:
                    if not self._fill():
                        return None
                body += self._buf[:size]
                self._buf = self._buf[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length") or 0)
            while len(self._buf) < length:
                if not self._fill():
                    return None
            body, self._buf = self._buf[:length], self._buf[length:]
        req = Request(method, target, headers, body, head)
        self.server.record(req)
        return req

    def send(self, data: bytes) -> bool:
        """Write ``data``; False when the client went away or the server stops."""
        if not self.alive:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def trickle(self, data: bytes, every: float = 1.0) -> bool:
        """Write ``data`` one byte every ``every`` seconds."""
        for i in range(len(data)):
            if not self.send(data[i : i + 1]):
                return False
            if self.server.stopping.wait(every):
                return False
        return True

    def hold(self, seconds: float = 60.0) -> None:
        """Keep the connection open, saying nothing."""
        self.server.stopping.wait(seconds)


Script = Callable[[Peer], None]


class HostileServer:
    """A loopback server running ``script`` on each connection, in a thread."""

    def __init__(
        self, script: Script, *, tls: ssl.SSLContext | None = None, bind: str = "127.0.0.1"
    ) -> None:
        self.script = script
        self.tls = tls
        self.stopping = threading.Event()
        self.log: list[Request] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((bind, 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.bind = bind
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def record(self, req: Request) -> None:
        with self._lock:
            self.log.append(req)

    def requests(self, method: str | None = None, path: str = "") -> list[Request]:
        with self._lock:
            return [
                r for r in self.log if (method is None or r.method == method) and path in r.path
            ]

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
            t = threading.Thread(target=self._run, args=(sock,), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(10)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                sock.settimeout(None)
                with self._lock:
                    self._socks.append(sock)
            self.script(Peer(sock, self))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._accepter.join(5)
        for t in threads:
            t.join(5)


# -- a registry that misbehaves on cue -------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def answer(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False
) -> bytes:
    """A well-formed answer (Content-Length framed; no body bytes to a HEAD)."""
    lines = [f"HTTP/1.1 {status} X"]
    hdrs = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


# A rule's action gets the connection and the request; it returns whether
# the connection should go on serving requests.
Action = Callable[[Peer, Request], bool]


class HostileRegistry(HostileServer):
    """Serves ``/v2/``, ``manifests/<ref>`` and ``blobs/<digest>`` under any
    repository; ``on(method, path_regex, action)`` rules win (first match)."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, bind: str = "127.0.0.1") -> None:
        super().__init__(self._serve, tls=tls, bind=bind)
        self.objects: dict[str, tuple[str, bytes]] = {}
        self.rules: list[tuple[str | None, re.Pattern[str], Action]] = []

    def ref(self, tag: str = "v1", repo: str = "hostile/img") -> str:
        return f"{self.host}/{repo}:{tag}"

    def on(self, method: str | None, path: str, action: Action) -> None:
        self.rules.append((method, re.compile(path), action))

    def manifest(self, tag: str, media_type: str, data: bytes) -> str:
        self.objects[f"manifests/{tag}"] = (media_type, data)
        self.objects[f"manifests/{sha(data)}"] = (media_type, data)
        return sha(data)

    def blob(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        self.objects[f"blobs/{sha(data)}"] = (media_type, data)
        return sha(data)

    def proper(self, req: Request) -> bytes:
        """What a well-behaved registry would answer."""
        head = req.method == "HEAD"
        if req.path in ("/v2", "/v2/"):
            return answer(200, b"{}", {"Content-Type": "application/json"}, head=head)
        m = re.match(r"^/v2/.+/((?:manifests|blobs)/[^/]+)$", req.path)
        if m and m[1] in self.objects:
            media_type, data = self.objects[m[1]]
            hdrs = {"Content-Type": media_type, "Docker-Content-Digest": sha(data)}
            rng = req.headers.get("range", "")
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                hdrs["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                return answer(206, data[start:], hdrs, head=head)
            return answer(200, data, hdrs, head=head)
        body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'
        return answer(404, body, {"Content-Type": "application/json"}, head=head)

    def _serve(self, peer: Peer) -> None:
        if self.tls is None:
            try:
                first = peer.sock.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if first == b"\x16":
                # A TLS hello to a plain-HTTP registry: Go's server answers 400.
                peer.send(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
        while (req := peer.request()) is not None:
            for method, pat, action in self.rules:
                if (method is None or method == req.method) and pat.search(req.path):
                    if not action(peer, req):
                        return
                    break
            else:
                if not peer.send(self.proper(req)):
                    return
            if req.headers.get("connection", "").lower() == "close":
                return


def wait_for(cond: Callable[[], bool], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
