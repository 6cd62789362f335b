"""The connection fetch, pull and unpack open to the registry while they
start (ocidist.earlyconnect), and the pool's order that lets the first
request use it (issue 20: on a far link the handshake is a round trip the
start-up can hide)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist import earlyconnect
from ocidist.errors import TimedOut
from ocidist.remotes.docker.hostsconfig import default_hosts_dir
from ocidist.remotes.docker.transport import Deadline, Timeouts, Transport
from tests.harness import Registry, push_image, simple_image

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def _dist(tmp: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``dist --debug ARGS`` with no proxy and no hosts directory of the
    user's; its stderr (the request trace)."""
    clean = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    clean.pop("DIST_HOSTS_DIR", None)
    clean["XDG_CONFIG_HOME"] = str(tmp / "config")
    clean.update(env or {})
    r = subprocess.run(
        [sys.executable, "-m", "ocidist", "--debug", "--root", str(tmp / "root"), *args],
        capture_output=True, env=clean, timeout=120, check=False,
    )  # fmt: skip
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    return err


def _early(trace: str) -> int:
    return sum("debug: early connection to" in line for line in trace.splitlines())


@pytest.mark.parametrize("command", ["pull", "unpack"])
def test_the_connection_opened_at_start_up_is_used(
    command: str, tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """The transport's first connection is the one opened while the command
    started (the trace says "early connection"); fails where the command
    opens them only once its resolver is made."""
    push_image(registry, repo_name, "v1", simple_image())
    args = [command, f"{registry.host}/{repo_name}:v1"]
    if command == "unpack":
        args.append(str(tmp_path / "out"))
    assert _early(_dist(tmp_path, *args)) == 1


def test_none_with_a_proxy_set(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    """A proxy in the environment: the connection would go around it (here
    the loopback registry is reached directly all the same, as the
    transport does for loopback)."""
    push_image(registry, repo_name, "v1", simple_image())
    for var in ("HTTPS_PROXY", "http_proxy", "ALL_PROXY"):
        env = {var: "http://127.0.0.1:9"}
        assert _early(_dist(tmp_path, "pull", f"{registry.host}/{repo_name}:v1", env=env)) == 0


def test_none_where_a_hosts_directory_may_name_other_hosts(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """A hosts.toml directory for the registry (or _default) may list
    mirrors or another server: nothing is guessed, nothing opened early;
    the default directory ($XDG_CONFIG_HOME/ocidist/certs.d) and
    --hosts-dir alike."""
    push_image(registry, repo_name, "v1", simple_image())
    ref = f"{registry.host}/{repo_name}:v1"
    default = tmp_path / "config" / "ocidist" / "certs.d"
    (default / registry.host).mkdir(parents=True)
    (default / registry.host / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
    assert _early(_dist(tmp_path, "pull", ref)) == 0
    other = tmp_path / "other"
    (other / "_default").mkdir(parents=True)
    (other / "_default" / "hosts.toml").write_text("")
    assert _early(_dist(tmp_path, "--hosts-dir", str(other), "pull", ref)) == 0


def test_the_default_hosts_directory_is_the_resolvers(tmp_path: Path) -> None:
    """cli.program finds the hosts directory without importing the
    transport: the same path as hostsconfig's."""
    from ocidist.cli.program import default_hosts_dir as programs

    assert programs() == default_hosts_dir()


class _Numbered:
    """Answers every request with the number of the connection it came on
    (0 for the first accepted)."""

    def __init__(self, close_first: bool = False) -> None:
        self.close_first = close_first
        self.closed_first = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n, self.accepted = self.accepted, self.accepted + 1
            if n == 0 and self.close_first:
                conn.close()  # as a server closes a connection left idle
                self.closed_first.set()
                continue
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        body = str(n).encode()
        with conn, conn.makefile("rb") as f:
            while True:
                line = f.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    line = f.readline()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
def numbered() -> Iterator[_Numbered]:
    srv = _Numbered()
    yield srv
    srv.sock.close()


def test_the_pool_hands_out_its_most_recently_used_connection(numbered: _Numbered) -> None:
    """Two connections idle, the older one released first: the next request
    goes on the one released last. On a real link a connection idle longer
    than a retransmission timeout is back in TCP slow start, so the one just
    used has the widest window; handed out oldest first (as from f02501f to
    this test), a big blob's ranges went on the coldest connections and the
    bench's 155 MB fetch through the wan relay took 2.4x as long. (The
    command's early connection goes first by another way: the test below.)"""
    t = Transport()
    try:
        first = t.request("GET", numbered.url + "/a", headers={})
        second = t.request("GET", numbered.url + "/b", headers={})  # the first is busy: a new one
        assert first.read_capped(10) == b"0" and second.read_capped(10) == b"1"
        third = t.request("GET", numbered.url + "/c", headers={})
        assert third.read_capped(10) == b"1"
        assert numbered.accepted == 2
    finally:
        t.close()


def test_an_early_connection_the_server_closed_is_not_used() -> None:
    """The connection opened at start-up may wait (a password prompt) until
    the server closes it: the first request then goes on a new one instead
    of failing on it."""
    srv = _Numbered(close_first=True)
    port = srv.sock.getsockname()[1]
    t = Transport()
    try:
        earlyconnect.start("127.0.0.1", port)
        assert srv.closed_first.wait(10)
        assert t.request("GET", srv.url + "/a", headers={}).read_capped(10) == b"1"
        assert srv.accepted == 2
    finally:
        earlyconnect.discard()
        t.close()
        srv.sock.close()


def test_the_first_request_takes_the_early_connection_not_a_warm_one(
    numbered: _Numbered,
) -> None:
    """The warm-up opens connections of its own and leaves the early one to
    the first request, which takes it before any idle one: it was opened
    first, so it is the furthest through its handshake. (A warm-up thread
    took it and could still be adopting it when the first request looked
    in the pool, which then opened a new connection: seen under load.)"""
    port = numbered.sock.getsockname()[1]
    t = Transport()
    try:
        earlyconnect.start("127.0.0.1", port)
        deadline = time.monotonic() + 10
        while numbered.accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        t.warm(numbered.url + "/v2/", 3)
        while numbered.accepted < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert numbered.accepted == 4, "the warm-up took the early connection"
        assert t.request("GET", numbered.url + "/a", headers={}).read_capped(10) == b"0"
    finally:
        earlyconnect.discard()
        t.close()


def test_a_deadline_reached_in_the_early_connections_handshake_is_timed_out() -> None:
    """--timeout passes while the early connection's TLS handshake waits (a
    server that accepts TCP and says nothing): the request must fail as
    TimedOut, like any connect past the deadline. Since 34a1616 the early
    connection is adopted (handshake included) in _exchange; adopt swallows
    the DeadlineReached, and _new's ``timer.timeout()`` (outside its try)
    raises httpconn.DeadlineReached, a bare OSError: the CLI said
    "dist: deadline reached", --json kind "OSError" (found in review)."""
    srv = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    port = srv.getsockname()[1]
    t = Transport()
    try:
        earlyconnect.start("127.0.0.1", port)
        early = earlyconnect._pending[("127.0.0.1", port)]
        until = time.monotonic() + 10
        while early.done.locked() and time.monotonic() < until:
            time.sleep(0.01)
        assert not early.done.locked()
        with pytest.raises(TimedOut):
            t.request(
                "GET",
                f"https://127.0.0.1:{port}/v2/",
                headers={},
                deadline=Deadline(time.monotonic() + 0.5),
            )
    finally:
        earlyconnect.discard()
        t.close()
        srv.close()


def test_an_early_connect_that_raises_other_than_oserror_still_ends() -> None:
    """A host name the idna codec refuses (a label of 64+ characters: the
    reference grammar has no length limit) makes _connect raise UnicodeError:
    ``done`` is never released, so the first request waits its whole connect
    stall (10 s by default) in take() before connecting itself, and the
    thread's traceback was printed on stderr (found in review)."""
    name = "a" * 64 + ".invalid"
    earlyconnect.start(name, 443)
    try:
        started = time.monotonic()
        assert earlyconnect.take(name, 443, 3.0) is None
        assert time.monotonic() - started < 1.5, "take waited for a connect that had died"
    finally:
        earlyconnect.discard()


def test_the_first_request_does_not_wait_twice_its_connect_stall() -> None:
    """The early connect still going when the first request needs a
    connection (SYN unanswered): _new waits up to the connect stall for it,
    then connected with a full stall of its own (2x; found in review). Shown
    with a listening socket whose backlog is full (Linux drops the SYN)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue: later SYNs are dropped
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        t = Transport(timeouts=Timeouts(connect=1.0))
        earlyconnect.start("127.0.0.1", port)
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(TimedOut):
            t.request("GET", f"http://127.0.0.1:{port}/v2/", headers={})
        took = time.monotonic() - started
        assert took < 1.6, f"the first connection took {took:.2f} s for a 1 s stall"
    finally:
        earlyconnect.discard()
        for c in fillers:
            c.close()
        srv.close()
