"""A TCP relay on loopback that behaves like a wide-area link.

The kernel here has neither ``netem`` nor ``fq`` (``tc qdisc add … netem``:
"Specified qdisc kind is unknown"), so the link is emulated in user space,
in a process of its own, between the client and a server on loopback:

- round-trip time: every byte is delivered ``rtt/2`` after it was sent, in
  both directions, and a new connection's first bytes wait one more ``rtt``
  (the TCP handshake the loopback connect did not pay);
- a per-connection rate cap in each direction (object stores and CDNs cap
  each connection), and an optional cap on all connections together (the
  link, each direction on its own), whose buffer holds one round trip of
  data: a new request's answer queues behind at most that much of the
  other connections' data;
- TCP slow start: a direction may send at most ``cwnd`` bytes per round
  trip, ``cwnd`` starts at 10 segments and doubles each round until the
  rate cap is reached, and falls back to 10 segments after an idle period
  longer than the retransmission timeout (Linux's
  ``tcp_slow_start_after_idle``). Without it, a new connection would cost
  one round trip instead of several, and many short connections would look
  as cheap as one long one.

It relays bytes, not HTTP: the client's ``Host`` header reaches the server
unchanged, so the registry's upload ``Location`` URLs point back at the
relay. Each direction of a connection is a reader thread (read, pace) and a
writer thread (wait for the delivery time, send), with a bounded queue
between them, so a slow consumer pushes back on the sender as TCP would.

Run it as a process (``python -m tests.harness.netrelay``, see ``main``) or
through ``NetRelay``, which starts that process and stops it by PID.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MSS = 1448  # a typical TCP segment's payload
INITIAL_WINDOW = 10 * MSS  # RFC 6928
MIN_RTO = 0.2  # Linux's TCP_RTO_MIN
PIECE = 256 * 1024  # largest read; smaller while the window is small


@dataclass(frozen=True)
class Profile:
    """A link: round-trip seconds, per-connection and total bytes/second
    (0 = no cap), and whether slow start is modelled."""

    name: str
    rtt: float
    conn_rate: float = 0.0
    total_rate: float = 0.0
    slow_start: bool = True

    def describe(self) -> str:
        def rate(x: float) -> str:
            return f"{x / 1e6:g} MB/s" if x else "uncapped"

        return (
            f"{self.name}: {self.rtt * 1000:g} ms RTT, {rate(self.conn_rate)} per connection,"
            f" {rate(self.total_rate)} total{', slow start' if self.slow_start else ''}"
        )


PROFILES: dict[str, Profile] = {
    "wan": Profile("wan", rtt=0.080, conn_rate=20e6, total_rate=200e6),
    "far": Profile("far", rtt=0.200, conn_rate=8e6),
}


class Pacer:
    """Serialises chunks through a rate: ``book(n)`` returns when the last
    of ``n`` bytes has left (virtual time, shared under a lock). A small
    burst allowance keeps timer slop from lowering the mean rate."""

    def __init__(self, rate: float, burst: float = 0.005) -> None:
        self.rate = rate
        self._slack = burst
        self._next = 0.0
        self._lock = threading.Lock()

    def book(self, n: int, now: float) -> float:
        with self._lock:
            start = max(self._next, now - self._slack)
            self._next = start + n / self.rate
            return self._next


class Window:
    """Slow start of one direction: at most ``cwnd`` bytes per round trip,
    ``cwnd`` doubling per full round, reset after an idle RTO."""

    def __init__(self, rtt: float, ceiling: float) -> None:
        self.rtt = rtt
        self.ceiling = ceiling  # bytes per round at the rate cap (BDP)
        self.cwnd = float(INITIAL_WINDOW)
        self._round_start = 0.0
        self._round_bytes = 0
        self._last = 0.0

    def piece(self) -> int:
        """How much to read next, so a chunk never straddles many rounds."""
        return max(MSS, min(PIECE, int(self.cwnd)))

    def book(self, n: int, now: float) -> float:
        """Earliest time these ``n`` bytes may start."""
        if self._last and now - self._last > self.rtt + MIN_RTO:
            self.cwnd = float(INITIAL_WINDOW)
            self._round_start, self._round_bytes = now, 0
        start = max(now, self._round_start)
        if self._round_bytes + n > self.cwnd and self._round_bytes > 0:
            # The window is full: the next round starts one RTT after this one.
            start = max(start, self._round_start + self.rtt)
            if self.cwnd < self.ceiling:
                self.cwnd = min(self.ceiling, self.cwnd * 2)
            self._round_start, self._round_bytes = start, 0
        elif self._round_bytes == 0:
            self._round_start = start
        self._round_bytes += n
        return start

    def sent(self, when: float) -> None:
        """The last byte booked leaves at ``when``: idle time counts from
        there (the reader runs ahead of the link by up to a queue's worth)."""
        self._last = when


class _Direction:
    """One direction of one relayed connection."""

    def __init__(
        self,
        relay: Relay,
        src: socket.socket,
        dst: socket.socket,
        not_before: float,
        done: threading.Event,
        total: Pacer | None,
    ) -> None:
        p = relay.profile
        self.relay, self.src, self.dst = relay, src, dst
        self.total = total
        self.not_before = not_before
        self.conn = Pacer(p.conn_rate) if p.conn_rate else None
        ceiling = p.conn_rate * p.rtt if p.conn_rate else float("inf")
        self.window = Window(p.rtt, max(ceiling, INITIAL_WINDOW)) if p.slow_start else None
        # Bounded like a socket's buffers: roughly two bandwidth-delay products.
        self.limit = max(4 << 20, int(2 * ceiling)) if p.conn_rate else 16 << 20
        self.queue_cap = max(p.rtt, 0.005)
        self.last_done = 0.0
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.cv = threading.Condition()
        self.done = done

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        half = self.relay.profile.rtt / 2
        try:
            while True:
                size = self.window.piece() if self.window else PIECE
                data = self.src.recv(size)
                now = time.monotonic()
                if not data:
                    break
                t = max(now, self.not_before)
                if self.window is not None:
                    t = max(t, self.window.book(len(data), t))
                done = t
                if self.conn is not None:
                    done = max(done, self.conn.book(len(data), t))
                if self.total is not None:
                    # The shared link's buffer holds about one round trip of
                    # data (a router's, sized to the bandwidth-delay product):
                    # past that the sender waits (TCP's back-pressure) instead
                    # of queueing every connection's read-ahead in front of a
                    # new request's answer. Each connection waits until its
                    # own last piece is within that of leaving, so the
                    # connections take turns (the queue is FIFO: its tail is
                    # some connection's last piece).
                    while (wait := self.last_done - time.monotonic() - self.queue_cap) > 0:
                        time.sleep(wait)
                    t = max(t, time.monotonic())
                    done = max(done, self.total.book(len(data), t))
                    self.last_done = done
                if self.window is not None:
                    self.window.sent(done)
                with self.cv:
                    while self.queued > self.limit and not self.done.is_set():
                        self.cv.wait(0.5)
                    self.queue.append((done + half, data))
                    self.queued += len(data)
                    self.cv.notify_all()
                self.relay.count(len(data))
        except OSError:
            pass
        with self.cv:
            self.queue.append((0.0, b""))  # end of stream, after what is queued
            self.cv.notify_all()

    def _write(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.queue:
                        self.cv.wait()
                    due, data = self.queue.popleft()
                if not data:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.dst.sendall(data)
                with self.cv:
                    self.queued -= len(data)
                    self.cv.notify_all()
        except OSError:
            # The peer went away: tear the whole connection down (as a reset would).
            self.done.set()
            for s in (self.src, self.dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        finally:
            self.done.set()


class Relay:
    """The relay itself (in this process): ``serve_forever`` accepts."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], profile: Profile):
        self.profile = profile
        self.upstream = upstream
        # One total cap per direction: the link is full duplex (a request
        # going up does not wait behind data coming down).
        self.total_up = Pacer(profile.total_rate) if profile.total_rate else None
        self.total_down = Pacer(profile.total_rate) if profile.total_rate else None
        self.sock = socket.create_server(listen, backlog=256)
        self.connections = 0
        self.bytes = 0
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def count(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    def serve_forever(self) -> None:
        while True:
            client, _ = self.sock.accept()
            accepted = time.monotonic()
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._relay, args=(client, accepted), daemon=True).start()

    def _relay(self, client: socket.socket, accepted: float) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done_up, done_down = threading.Event(), threading.Event()
        # The client's first bytes leave after the handshake's round trip.
        _Direction(
            self, client, server, accepted + self.profile.rtt, done_up, self.total_up
        ).start()
        _Direction(self, server, client, 0.0, done_down, self.total_down).start()
        done_up.wait()
        done_down.wait()
        client.close()
        server.close()


def main(argv: list[str] | None = None) -> int:
    """``--upstream HOST:PORT --profile wan`` (or ``--rtt/--conn-rate/
    --total-rate``); prints ``{"port": N}`` on stdout once listening."""
    p = argparse.ArgumentParser(description="a WAN-like TCP relay on loopback")
    p.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--profile", choices=sorted(PROFILES))
    p.add_argument("--rtt", type=float, help="round trip, seconds")
    p.add_argument("--conn-rate", type=float, help="bytes/s per connection and direction")
    p.add_argument("--total-rate", type=float, help="bytes/s of all connections together")
    p.add_argument("--no-slow-start", action="store_true")
    a = p.parse_args(argv)
    base = PROFILES[a.profile] if a.profile else Profile("custom", rtt=0.0)
    profile = Profile(
        base.name,
        rtt=base.rtt if a.rtt is None else a.rtt,
        conn_rate=base.conn_rate if a.conn_rate is None else a.conn_rate,
        total_rate=base.total_rate if a.total_rate is None else a.total_rate,
        slow_start=base.slow_start and not a.no_slow_start,
    )
    uh, _, up = a.upstream.rpartition(":")
    lh, _, lp = a.listen.rpartition(":")
    relay = Relay((lh, int(lp)), (uh, int(up)), profile)
    print(json.dumps({"port": relay.port, "profile": profile.describe()}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        relay.serve_forever()
    return 0


class NetRelay:
    """A relay process in front of ``upstream`` (``host:port``), started
    and stopped by PID; ``host`` is what clients put in image references."""

    def __init__(self, upstream: str, profile: Profile, *, workdir: Path | None = None) -> None:
        self.upstream = upstream
        self.profile = profile
        self.port = 0
        self.workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> NetRelay:
        p = self.profile
        argv = [
            sys.executable, "-m", "tests.harness.netrelay",
            "--upstream", self.upstream,
            "--rtt", repr(p.rtt),
            "--conn-rate", repr(p.conn_rate),
            "--total-rate", repr(p.total_rate),
        ]  # fmt: skip
        if not p.slow_start:
            argv.append("--no-slow-start")
        root = Path(__file__).resolve().parent.parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        # Each read is a fresh bytes object of up to 256 KiB; above glibc's
        # default mmap threshold every one would be a new mapping and page
        # faults (measured: 2.4 s vs 1.6 s for 1 GB in 16 streams, uncapped).
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(8 << 20))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError) as e:
            self.stop()
            raise RuntimeError(f"netrelay did not start: {line!r}") from e
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> NetRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
