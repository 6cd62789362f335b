"""The bench's WAN relay (tests/harness/netrelay.py) adds what it says it
adds: a round trip per exchange (two for a new connection) and a rate cap
per connection. Lower bounds only, with room: a loaded machine makes every
figure slower, never faster; upper bounds are generous deadlines."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness import Registry
from tests.harness.netrelay import NetRelay, Profile

PAYLOAD = 1_000_000
# The relay runs in this process and its upper bounds are deadlines (one is
# 0.8 s): with the other bounded tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("timing")


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # One line in, its first word's worth of bytes out, per request.
        f = self.request.makefile("rb")
        while line := f.readline():
            n = int(line.split()[0])
            self.request.sendall(b"x" * n)


@pytest.fixture
def server() -> Iterator[str]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _ask(sock: socket.socket, n: int) -> None:
    sock.sendall(f"{n}\n".encode())
    got = 0
    while got < n:
        chunk = sock.recv(1 << 16)
        assert chunk, "relay closed early"
        got += len(chunk)


def test_relay_adds_round_trips_and_caps_a_connection(server: str) -> None:
    profile = Profile("test", rtt=0.1, conn_rate=2e6, total_rate=0, slow_start=False)
    with NetRelay(server, profile) as relay:
        host, port = relay.host.split(":")
        t0 = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=30) as s:
            _ask(s, 10)  # handshake + request: two round trips
            first = time.monotonic() - t0
            t1 = time.monotonic()
            _ask(s, 10)  # the same connection: one round trip
            second = time.monotonic() - t1
            t2 = time.monotonic()
            _ask(s, PAYLOAD)  # 1 MB at 2 MB/s
            bulk = time.monotonic() - t2
    assert 0.19 <= first < 10
    assert 0.095 <= second < 10
    assert PAYLOAD / 2e6 <= bulk < 30


def test_relay_total_cap_is_shared_by_connections(server: str) -> None:
    profile = Profile("test", rtt=0.0, conn_rate=0, total_rate=4e6, slow_start=False)
    with NetRelay(server, profile) as relay:
        host, port = relay.host.split(":")
        socks = [socket.create_connection((host, int(port)), timeout=30) for _ in range(4)]
        try:
            t0 = time.monotonic()
            threads = [threading.Thread(target=_ask, args=(s, PAYLOAD)) for s in socks]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            took = time.monotonic() - t0
        finally:
            for s in socks:
                s.close()
    # 4 MB through a 4 MB/s link (a small burst allowance aside).
    assert 0.9 <= took < 30


def test_shared_link_queues_at_most_a_round_trip_each_way(server: str) -> None:
    """A busy download on one connection delays another connection's small
    exchange by the link's buffer (one round trip of queue), not by all the
    data the relay could read ahead, and the request going up does not wait
    behind data coming down (the link is full duplex). Otherwise every new
    request on a busy link (each range of a ranged fetch) paid seconds."""
    profile = Profile("test", rtt=0.05, conn_rate=0, total_rate=4e6, slow_start=False)
    with NetRelay(server, profile) as relay:
        host, port = relay.host.split(":")
        bulk = socket.create_connection((host, int(port)), timeout=30)
        small = socket.create_connection((host, int(port)), timeout=30)
        try:
            _ask(small, 10)  # the handshake's extra round trip paid
            t = threading.Thread(target=_ask, args=(bulk, 8 * PAYLOAD))  # ~2 s of link
            t.start()
            time.sleep(0.5)  # the download fills the link
            t0 = time.monotonic()
            _ask(small, 10)
            took = time.monotonic() - t0
            t.join(60)
        finally:
            bulk.close()
            small.close()
    # A round trip plus at most a round trip of queue, with room for a
    # loaded machine; reading ahead into one shared queue made it ~1.5 s.
    assert 0.05 <= took < 0.8


def test_transport_sees_the_round_trip_a_ranged_fetch_starts_wide_on(registry: Registry) -> None:
    """The shortest exchange the transport saw with a server is what the
    ranged fetch reads to tell a far registry from a near one: through a
    50 ms link it is at least 50 ms; straight to the loopback registry it
    is far below the 20 ms that counts as far (a loaded machine aside,
    the bound is generous)."""
    from ocidist.content.parallel import FAR
    from ocidist.remotes.docker.transport import Transport

    profile = Profile("test", rtt=0.05, slow_start=False)
    with NetRelay(registry.host, profile) as relay:
        for host, far in ((relay.host, True), (registry.host, False)):
            t = Transport()
            try:
                url = f"http://{host}/v2/"
                assert t.answer_time(url) is None
                for _ in range(3):
                    t.request("GET", url, headers={}).close()
                seen = t.answer_time(url)
            finally:
                t.close()
            assert seen is not None
            assert (seen >= FAR) is far, (host, seen)
