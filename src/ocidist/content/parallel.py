"""Fetch one big object as several concurrent ranges into an ingest.

Across a real network one connection is often capped (object stores and
CDNs limit each connection; a long round trip limits what one TCP window
carries), so a multi-GB layer over one stream takes several times longer
than the link allows. Here the object is cut into pieces, fetched by a
growing number of workers, each writing at its offsets into the ingest's
data file (``RangeFile``: prefix hashed as it grows, completed ranges
recorded for a resume).

Tuning needs no flags, it follows what the transfer measures. Near (the
round trips the session has seen are short) it starts with one connection:
one that delivers at least ``SLOW_CONN`` keeps up with what one process
hashes and writes, and more would only add work, so it stays alone (a
registry on loopback or a LAN). Far (a round trip of ``FAR`` or more) it
starts with half the maximum at once: every new connection pays a handshake
and several round trips of TCP slow start, and paying them one after the
other would cost seconds. Then, every interval, while each connection
delivers less than ``SLOW_CONN`` (a per-connection cap, a long round trip)
and the last doubling raised the total by at least ``GROWTH``, the number
doubles. The piece size follows from the object's size. At the end, an
idle worker takes over the second half of the largest piece still in
flight, so the last seconds are not left to one connection. ``Tuning``
(flags, ``hosts.toml``) overrides.

A server that ignores ``Range`` (200 instead of 206) makes ``copy_ranges``
return False after leaving the ingest as a plain prefix: the caller goes on
with one stream. A broken body keeps what arrived and only the rest of its
range goes back to be fetched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ocidist.content import RangedWriter
from ocidist.content.rangefile import RangeFile, Span
from ocidist.content.tuning import MiB
from ocidist.content.tuning import Tuning as Tuning  # its home before
from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, DistError, Unavailable
from ocidist.stream import Readable

BUF = MiB  # per worker: memory is workers x BUF
# A piece is at least this big (a request per piece) and a steal leaves at
# least this much to each side.
MIN_PIECE = 4 * MiB
MAX_PIECE = 64 * MiB
GROWTH = 1.15  # double the workers while throughput grows by this factor
# A connection that delivers less than this is what limits: add more.
SLOW_CONN = 64 * MiB
# A round trip this long (seconds) says the registry is far: start wide.
FAR = 0.02  # as pull.py sizes the objects in flight


class RangeIgnored(Exception):
    """The server answered a Range request with the whole object (200)."""


class Tries(Protocol):
    """One object's retry budget (remotes/docker/retry.py ``Attempts``)."""

    def failed(self, error: DistError, *, gained: int = 0) -> None:
        """Wait before the next attempt, or raise once the budget is spent."""
        ...


class RangeSource(Protocol):
    tuning: Tuning

    def attempts(self) -> Tries: ...

    def open_range(self, start: int, end: int) -> Readable:
        """A stream of bytes ``[start, end)``; RangeIgnored if the server
        does not honour Range."""
        ...

    # Optional: ``rtt() -> float | None``, the shortest round trip seen to
    # the server (seconds), read with getattr.


Progress = Callable[[int], None]


class _Budget:
    """Range workers of all the blobs this process fetches at once: several
    big layers of one image share ``Tuning.max`` connections rather than
    each growing to it (each still gets one)."""

    def __init__(self) -> None:
        self.active = 0
        self.lock = threading.Lock()

    def take(self, want: int, cap: int) -> int:
        with self.lock:
            n = max(0, min(want, cap - self.active))
            self.active += n
            return n

    def give(self, n: int) -> None:
        with self.lock:
            self.active -= n


_BUDGET = _Budget()


class _Piece:
    __slots__ = ("end", "pos", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.pos, self.end = start, start, end


class _Plan:
    """The spans still to fetch and the pieces in flight (under one lock).
    Pieces are carved off the spans as they are taken, never listed ahead:
    a hostile descriptor may declare an exabyte."""

    def __init__(self, missing: list[Span], piece: int) -> None:
        self.pending: list[Span] = list(missing)
        self.piece = piece
        self.active: list[_Piece] = []
        self.lock = threading.Lock()

    def take(self) -> _Piece | None:
        with self.lock:
            if self.pending:
                s, e = self.pending[0]
                n = min(self.piece, e - s)
                if e - (s + n) < min(MIN_PIECE, self.piece // 2):
                    n = e - s  # no sliver at the end
                if s + n < e:
                    self.pending[0] = (s + n, e)
                else:
                    self.pending.pop(0)
                p = _Piece(s, s + n)
                self.active.append(p)
                return p
            # Nothing left to start: split the largest piece in flight.
            victim = max(self.active, key=lambda p: p.end - p.pos, default=None)
            if victim is None or victim.end - victim.pos < 2 * MIN_PIECE:
                return None
            mid = victim.pos + (victim.end - victim.pos) // 2
            p = _Piece(mid, victim.end)
            victim.end = mid
            self.active.append(p)
            return p

    def end_of(self, p: _Piece) -> int:
        with self.lock:
            return p.end

    def release(self, p: _Piece, requeue: bool) -> None:
        with self.lock:
            self.active.remove(p)
            if requeue and p.pos < p.end:
                self.pending.insert(0, (p.pos, p.end))

    def empty(self) -> bool:
        with self.lock:
            return not self.pending and not self.active


class _Run:
    def __init__(self, rf: RangeFile, source: RangeSource, plan: _Plan) -> None:
        self.rf, self.source, self.plan = rf, source, plan
        self.received = 0
        # One budget for the blob, whichever range failed (retry.py).
        self.tries = source.attempts()
        self.tries_lock = threading.Lock()
        self.error: BaseException | None = None
        self.ignored = False
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.workers = 0
        self.running = 0

    def stopped(self) -> bool:
        return self.error is not None or self.ignored

    def spawn(self, n: int) -> int:
        """Start up to ``n`` workers; how many started. A thread the system
        will not give (``can't start new thread``) is not counted: the
        coordinator waits until no counted worker runs."""
        started = 0
        for _ in range(n):
            with self.lock:
                self.workers += 1
                self.running += 1
            try:
                threading.Thread(target=self._work, name="range-fetch", daemon=True).start()
            except RuntimeError as e:
                with self.lock:
                    self.workers -= 1
                    self.running -= 1
                    self.changed.notify_all()
                if not started and not self.workers:
                    raise Unavailable(f"ranged fetch: {e}") from None
                break
            started += 1
        return started

    def _work(self) -> None:
        # Everything inside the try: the worker counts itself out whatever fails.
        try:
            buf = bytearray(BUF)
            view = memoryview(buf)
            while not self.stopped():
                p = self.plan.take()
                if p is None:
                    return
                requeue = True
                began = p.pos
                try:
                    self._fetch(p, view)
                    requeue = p.pos < self.plan.end_of(p)
                except RangeIgnored:
                    with self.lock:
                        self.ignored = True
                except Unavailable as e:
                    # The rest of the range goes back; the wait (or the
                    # verdict "gave up") is the shared mechanism's.
                    try:
                        with self.tries_lock:
                            self.tries.failed(e, gained=p.pos - began)
                    except BaseException as final:
                        with self.lock:
                            self.error = self.error or final
                except BaseException as e:
                    with self.lock:
                        self.error = e
                finally:
                    if p.pos > p.start:
                        self.rf.complete(p.start, p.pos)
                    self.plan.release(p, requeue)
        except BaseException as e:  # before or between ranges: the fetch's error too
            with self.lock:
                self.error = self.error or e
        finally:
            with self.lock:
                self.running -= 1
                self.changed.notify_all()

    def _fetch(self, p: _Piece, view: memoryview) -> None:
        stream = self.source.open_range(p.pos, p.end)
        start = p.pos
        try:
            while not self.stopped():
                end = self.plan.end_of(p)  # a steal may have moved it
                if p.pos >= end:
                    return
                n = stream.readinto(view[: min(len(view), end - p.pos)])
                if n <= 0:
                    raise Unavailable(f"range {start}-{end}: body ended at {p.pos}")
                self.rf.write_at(p.pos, view[:n])
                p.pos += n
                self.rf.progress(start, p.pos)
                with self.lock:
                    self.received += n
        finally:
            stream.close()


def copy_ranges(
    writer: RangedWriter,
    source: RangeSource,
    size: int,
    expected: Digest,
    *,
    tuning: Tuning | None = None,
    labels: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> bool:
    """Fetch ``[0, size)`` into ``writer`` (a local store writer: it has
    ``ranged``/``adopt``/``leave_ranges``) in concurrent ranges, resuming
    what an earlier run completed, then commit. False when the server
    ignored Range: the writer then holds a plain prefix to go on from."""
    tuning = tuning or Tuning()
    rf: RangeFile = writer.ranged()
    run: _Run | None = None
    try:
        missing = rf.missing()
        left = sum(e - s for s, e in missing)
        piece = tuning.piece or max(MIN_PIECE, min(MAX_PIECE, left // (2 * max(1, tuning.max))))
        run = _Run(rf, source, _Plan(missing, piece))
        _drive(run, tuning, progress)
    except BaseException:
        # Not closed under workers still writing after an interrupt (its
        # descriptor could be reused by another file meanwhile).
        if run is None or not run.running:
            rf.close()
        raise
    if run.ignored:
        writer.leave_ranges(rf)
        return False
    if run.error is not None:
        rf.close()
        raise run.error
    writer.adopt(rf)
    if progress is not None:
        progress(size)
    with contextlib.suppress(AlreadyExists):
        writer.commit(size, expected, labels)
    return True


def _drive(run: _Run, tuning: Tuning, progress: Progress | None) -> None:
    """Start the first workers, then every interval: make completed ranges
    durable, report progress, and double the workers while that pays."""
    cap = max(1, tuning.max)
    first = _BUDGET.take(min(_first(tuning, run.source), cap), cap)
    # With the budget spent by other blobs, one worker all the same (uncounted).
    try:
        started = run.spawn(first or 1)
    except BaseException:
        _BUDGET.give(first)
        raise
    if first:
        _BUDGET.give(first - started)  # the share of threads that did not start
    try:
        _grow(run, progress, started, cap)
    finally:
        _BUDGET.give(run.workers if first else run.workers - 1)


def _first(tuning: Tuning, source: RangeSource) -> int:
    """How many ranges to start with: ``tuning.start``, else one near and
    half the maximum far (see the module's docstring)."""
    if tuning.start > 0:
        return tuning.start
    rtt = getattr(source, "rtt", None)
    seen = rtt() if callable(rtt) else None
    return max(1, tuning.max // 2) if seen is not None and seen >= FAR else 1


def _grow(run: _Run, progress: Progress | None, workers: int, cap: int) -> None:
    growing = workers < cap
    interval = 0.2
    last_rate = 0.0
    mark, mark_t = 0, time.monotonic()
    t_check = mark_t
    try:
        while True:
            with run.lock:
                if run.running == 0:
                    break
                run.changed.wait(0.1)
                received = run.received
            now = time.monotonic()
            if now - t_check >= 0.5:
                run.rf.checkpoint()
                t_check = now
                if progress is not None:
                    progress(run.rf.held())
            if received == 0:
                mark_t = now  # the clock starts with the first bytes
            elif growing and now - mark_t >= interval and not run.stopped():
                rate = (received - mark) / (now - mark_t)
                # Fast connections keep up with the hash and the writes:
                # more of them would only add work (and connections).
                slow = rate / max(1, workers) < SLOW_CONN
                if not slow or rate <= last_rate * GROWTH or run.plan.empty():
                    growing = False
                elif add := _BUDGET.take(min(workers, cap - workers), cap):
                    started = run.spawn(add)
                    _BUDGET.give(add - started)
                    workers += started
                    # No more threads to be had: go on with those running.
                    growing = workers < cap and started == add
                    last_rate = rate
                    # A new connection ramps up over a few round trips.
                    interval = min(0.6, interval * 1.25)
                # else other blobs hold the budget: ask again next interval.
                mark, mark_t = received, now
    except BaseException as e:
        with run.lock:
            run.error = run.error or e
            # An interrupt (Ctrl-C) does not wait for the workers: one may be
            # in a stalled read for minutes. They stop at their next read
            # (they see run.error); copy_ranges leaves their file open.
            while run.running and isinstance(e, Exception):
                run.changed.wait(0.1)
        raise
    if not run.ignored:
        run.rf.checkpoint()
    if run.error is None and not run.ignored and not run.plan.empty():
        run.error = DistError("ranged fetch stopped with ranges missing")
