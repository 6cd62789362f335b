"""The one bounded pool every graph operation runs on.

Jobs have a key (each key runs once: adding it again is a no-op, which is
how a walk visits a digest named by several manifests only once), the keys
of jobs that must finish first, and a priority (among the jobs ready to run,
the lowest goes first). A running job may add more jobs: a walk discovers
the graph as it goes, a push knows it up front.

While one job at a time is ready, the caller's thread runs them itself (a
small image never pays for a pool). Once there is more, threads start, up to
``concurrency``, while there is ready work and no idle thread; the caller's
thread then only watches them, so that it can raise the first failure as it
happens instead of being in a transfer of its own (minutes, on a slow link).

The first failure stops everything: nothing new starts, and the failure is
raised in the caller's thread once the running jobs finished, or after
``FAILURE_GRACE`` seconds; at once for an interrupt (Ctrl-C), wherever it
lands in that thread (in a job, or while it waits). Jobs still running then
(transfers may be minutes from their end) go on in their threads, which are
daemons; ``dist`` exits right after. The run is then ``stopped``: a job
that watches it (a transfer through ``CancellingProgress``) ends at its
next chunk, so a process that goes on after a failed run (``dist serve``, a
program using the client) has none of it still writing into its store.
``join`` waits for them (push: its "the registry has it all" stops the run
and then counts what was sent).
A thread the system will not start is no failure: those there do the work.

Light jobs (``add(..., light=True)``: a small object, whose fetch is a round
trip or two whatever its bytes) may run beyond ``concurrency``, up to
``light`` at once: on a far registry forty small layers in flight together
take one round trip where sixteen at a time take three, and cost no more
memory or CPU than sixteen. Heavy jobs stay within ``concurrency``.

A thread outside the pool can follow a run (unpack applies each layer as
soon as its fetch is done): ``wait(key)`` until a job has run, raising the
run's failure if that comes first; ``stop(error)`` ends the run from there
(nothing new starts; a running job that watches ``stopped`` stops too).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Collection

from ocidist.descriptor import Descriptor
from ocidist.errors import Cancelled, DistError
from ocidist.progress import NullProgress, Progress

Priority = tuple[int, int]

# After a failure, how long the jobs still running get to finish before it is
# raised (a manifest or a small blob finishes well within it; a stalled
# transfer would take its stall timeout, then its retries).
FAILURE_GRACE = 2.0


class Scheduler:
    def __init__(self, concurrency: int = 1, *, name: str = "walk", light: int = 0) -> None:
        self._limit = max(1, concurrency)  # heavy jobs at once
        self._threads_cap = max(self._limit, light)  # all jobs at once
        self._name = name
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # Threads outside the pool waiting for a job (``wait``): a condition
        # of their own, so that waking one never takes the place of waking
        # an idle worker for a ready job.
        self._settled = threading.Condition(lock)
        self._over = False
        # ``stop`` was called, or ``run`` raised its failure (read without the lock)
        self.stopped = False
        self._jobs: dict[str, tuple[Callable[[], None], Priority, bool]] = {}
        self._waiting: dict[str, int] = {}  # key -> unfinished jobs it waits for
        self._dependents: dict[str, list[str]] = {}
        self._done: set[str] = set()
        # Ready jobs, one heap per lane: a heavy job waits for a heavy slot
        # while light ones behind it go on.
        self._ready: list[tuple[Priority, int, str]] = []
        self._ready_heavy: list[tuple[Priority, int, str]] = []
        self._seq = itertools.count()
        self._running = 0
        self._heavy_running = 0
        self._idle = 0
        self._starting = 0  # threads asked for that have not reached their loop
        self._threads: list[threading.Thread] = []
        self._started = False
        self._caller_busy = False  # the caller's thread is running a job
        self._failure: BaseException | None = None

    def add(
        self,
        key: str,
        run: Callable[[], None],
        deps: Collection[str] = (),
        priority: Priority = (0, 0),
        *,
        light: bool = False,
    ) -> bool:
        """Schedule ``run`` after the jobs ``deps`` names (keys never added
        count as done); False when ``key`` was added before. ``light``: it
        may run beyond ``concurrency`` (see the module's docstring)."""
        with self._cond:
            if key in self._jobs:
                return False
            # Without a light lane every job is one of the ``concurrency``.
            self._jobs[key] = (run, priority, light and self._threads_cap > self._limit)
            pending = {d for d in deps if d in self._jobs and d not in self._done and d != key}
            self._waiting[key] = len(pending)
            for d in pending:
                self._dependents.setdefault(d, []).append(key)
            if not pending:
                self._make_ready(key)
            return True

    def run(self) -> None:
        """Run every job (and every job they add); raise the first failure."""
        with self._cond:
            self._started = True
            self._grow()
        try:
            self._work(caller=True)
            if self._failure is not None and not isinstance(self._failure, Exception):
                raise self._failure  # KeyboardInterrupt in a job of this thread: now
            self._join(FAILURE_GRACE if self._failure is not None else None)
        except BaseException as e:
            # Raised in this thread outside a job (Ctrl-C while it waited on
            # the workers): it is the run's failure, so nothing new starts.
            with self._cond:
                if self._failure is None:
                    self._failure = e
                self._cond.notify_all()
            raise
        finally:
            with self._cond:
                self._over = True
                if self._failure is not None:
                    # Raised while jobs may still run (after FAILURE_GRACE):
                    # those that watch ``stopped`` end at their next step.
                    self.stopped = True
                self._settled.notify_all()
        if self._failure is not None:
            raise self._failure

    def wait(self, key: str) -> None:
        """Block until job ``key`` has run (from a thread outside the pool);
        raise the run's failure if it comes first, or DistError if the run
        ended without such a job."""
        with self._cond:
            while key not in self._done:
                if self._failure is not None:
                    raise self._failure
                if self._over:
                    raise DistError(f"{self._name}: {key}: the run ended without it")
                self._settled.wait()

    def stop(self, error: BaseException) -> None:
        """End the run from outside the pool with ``error`` as its failure
        (unless it failed already): nothing new starts, the running jobs
        finish (or stop sooner where they watch ``stopped``)."""
        with self._cond:
            self.stopped = True
            if self._failure is None:
                self._failure = error
            self._cond.notify_all()
            self._settled.notify_all()

    def join(self) -> None:
        """Wait for the jobs still running after ``run`` raised."""
        self._join(None)

    def _join(self, within: float | None) -> None:  # not under the lock
        until = None if within is None else time.monotonic() + within
        for t in list(self._threads):
            try:
                t.join(None if until is None else max(0.0, until - time.monotonic()))
            except RuntimeError:
                # Not started yet (its starter is at an earlier one): with
                # the run over or failed, it returns as soon as it runs.
                continue

    # -- inside, under the lock unless said otherwise --

    def _make_ready(self, key: str) -> None:
        _, priority, light = self._jobs[key]
        lane = self._ready if light else self._ready_heavy
        heapq.heappush(lane, (priority, next(self._seq), key))
        # All: one notify could wake only the caller's thread, which leaves
        # the job to the pool.
        self._cond.notify_all()
        if self._started:
            self._grow()

    def _any_ready(self) -> bool:
        return bool(self._ready or self._ready_heavy)

    def _next(self) -> list[tuple[Priority, int, str]] | None:
        """The heap whose top job runs next (the lower priority of the two
        lanes; a heavy one only while a heavy slot is free), or None."""
        heavy, light = self._ready_heavy, self._ready
        if heavy and self._heavy_running < self._limit and (not light or heavy[0] < light[0]):
            return heavy
        return light or None

    def _grow(self) -> None:
        # Before there is a pool the caller's thread takes one ready job
        # itself; while it runs one, the threads number at most cap - 1.
        # Threads asked for count as there (``_starting``): they take work
        # as soon as they run.
        caller_takes = 0 if self._threads or self._caller_busy else 1
        takeable = len(self._ready) + min(
            len(self._ready_heavy), max(0, self._limit - self._heavy_running)
        )
        wanted = takeable - self._idle - self._starting - caller_takes
        cap = self._threads_cap - (1 if self._caller_busy else 0)
        n = min(wanted, cap - len(self._threads))
        if n <= 0:
            return
        # Each start waits for the new thread to run (~1 ms, more while the
        # GIL is busy). Forty started here, under the lock, held every one
        # of them (the first too) from its job for 50-100 ms: a far
        # registry's small blobs, requested all at once. So the first new
        # thread starts the others, outside the lock, and each works as
        # soon as it runs.
        base = len(self._threads)
        rest = [
            threading.Thread(target=self._work, name=f"{self._name}-{base + i}", daemon=True)
            for i in range(2, n + 1)
        ]
        first = threading.Thread(
            target=self._work, kwargs={"spawn": rest}, name=f"{self._name}-{base + 1}", daemon=True
        )
        self._threads += [first, *rest]
        self._starting += n
        try:
            first.start()
        except RuntimeError:
            self._unstarted([first, *rest])

    def _unstarted(self, threads: list[threading.Thread]) -> None:
        # "can't start new thread": the threads there are (the caller's, if
        # none) do the work; no more are asked for.
        for t in threads:
            self._threads.remove(t)
        self._starting -= len(threads)
        self._limit = min(self._limit, max(1, len(self._threads)))
        self._threads_cap = max(1, len(self._threads))
        self._cond.notify_all()

    def _work(
        self, caller: bool = False, spawn: list[threading.Thread] | None = None
    ) -> None:  # not under the lock
        for i, t in enumerate(spawn or ()):
            try:
                t.start()
            except RuntimeError:
                with self._cond:
                    self._unstarted((spawn or [])[i:])
                break
        starting = not caller
        while True:
            with self._cond:
                if starting:
                    starting = False
                    self._starting -= 1
                # A heavy job waiting for a slot means one is running:
                # ready-but-not-takeable work always has a job to wait for.
                while self._failure is None and (self._any_ready() or self._running):
                    if self._next() is not None and not (caller and self._threads):
                        break  # a job to take (the caller's thread: while there is no pool)
                    if caller:
                        self._grow()  # ready work it leaves to the pool
                        if self._next() is not None and not self._threads:
                            continue  # no thread would start: the caller works
                        self._cond.wait()
                    else:
                        self._idle += 1
                        self._cond.wait()
                        self._idle -= 1
                lane = self._next()
                if self._failure is not None or lane is None:
                    if self._failure is None and len(self._done) < len(self._jobs):
                        self._failure = RuntimeError(f"{self._name}: jobs wait on each other")
                    self._cond.notify_all()
                    return
                _, _, key = heapq.heappop(lane)
                heavy = lane is self._ready_heavy
                self._running += 1
                self._heavy_running += heavy
                if caller:
                    self._caller_busy = True
            try:
                self._jobs[key][0]()
            except BaseException as e:  # re-raised in the caller's thread
                with self._cond:
                    if self._failure is None:
                        self._failure = e
                    self._running -= 1
                    self._heavy_running -= heavy
                    if caller:
                        self._caller_busy = False
                    self._cond.notify_all()
                    self._settled.notify_all()
                return
            with self._cond:
                self._running -= 1
                self._heavy_running -= heavy
                if heavy and self._ready_heavy:
                    self._cond.notify_all()  # its slot is free for the next heavy one
                if caller:
                    self._caller_busy = False
                self._done.add(key)
                for d in self._dependents.pop(key, ()):
                    self._waiting[d] -= 1
                    if not self._waiting[d]:
                        self._make_ready(d)
                if not self._running:
                    self._cond.notify_all()  # the idle may be done
                self._settled.notify_all()


class CancellingProgress:
    """Passes progress events on; raises ``Cancelled`` inside a transfer once
    ``sched`` is stopped (``stop``, or its run raised its failure), which
    aborts that copy at its next chunk; what it fetched stays as a
    resumable ingest."""

    def __init__(
        self,
        inner: Progress | None,
        sched: Scheduler,
        why: str = "transfer stopped: the run failed",
    ) -> None:
        self._inner = inner or NullProgress()
        self._sched = sched
        self._why = why

    def start(self, desc: Descriptor, offset: int) -> None:
        self._check()
        self._inner.start(desc, offset)

    def update(self, desc: Descriptor, held: int) -> None:
        self._check()
        self._inner.update(desc, held)

    def done(self, desc: Descriptor, status: str) -> None:
        self._inner.done(desc, status)

    def close(self) -> None:
        self._inner.close()

    def _check(self) -> None:
        if self._sched.stopped:
            raise Cancelled(self._why)
