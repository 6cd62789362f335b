"""The one pool every graph operation runs on (images.scheduler), and the
walker's own bounds on whatever a handler returns (images.walk)."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from ocidist.descriptor import OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.errors import DistError, InvalidContent
from ocidist.images.scheduler import FAILURE_GRACE, Scheduler
from ocidist.images.walk import MAX_CHILDREN, MAX_INDEX_DEPTH, Recorder, walk


def test_order_dependencies_and_failure() -> None:
    done: list[str] = []
    lock = threading.Lock()

    def job(name: str, fail: bool = False) -> None:
        if fail:
            raise ValueError(name)
        with lock:
            done.append(name)

    s = Scheduler(4)
    for k in ("a", "b", "c", "d"):
        s.add(k, lambda k=k: job(k))  # type: ignore[misc]
    s.add("m1", lambda: job("m1"), ("a", "b"), (1, 0))
    s.add("m2", lambda: job("m2"), ("c", "gone"), (1, 0))  # unknown keys are no dependency
    s.add("root", lambda: job("root"), ("m1", "m2", "d"), (1, 0))
    assert not s.add("a", lambda: job("again"))  # a key runs once
    s.run()
    assert sorted(done) == ["a", "b", "c", "d", "m1", "m2", "root"] and done[-1] == "root"
    assert done.index("m1") > max(done.index("a"), done.index("b"))
    assert done.index("m2") > done.index("c")

    done.clear()
    bad = Scheduler(2)
    bad.add("x", lambda: job("x", fail=True))
    bad.add("y", lambda: job("y"), ("x",))
    with pytest.raises(ValueError, match="x"):
        bad.run()
    assert done == []  # what waits on a failed job never runs


def test_jobs_added_while_running_and_the_thread_bound() -> None:
    s = Scheduler(3)
    lock = threading.Lock()
    running = 0
    peak = 0
    threads: set[str] = set()

    def job(n: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.current_thread().name)
        if n < 20:
            s.add(f"j{n + 1}", lambda: job(n + 1))
            s.add(f"k{n + 1}", lambda: job(n + 1))
        time.sleep(0.001)
        with lock:
            running -= 1

    s.add("j0", lambda: job(0))
    s.run()
    # At most 3 at once; the caller's thread works only before there is a pool.
    assert peak <= 3 and len(threads - {threading.main_thread().name}) <= 3


def test_light_jobs_run_beyond_the_concurrency_heavy_ones_within_it() -> None:
    """Scheduler(2, light=6): at most 2 heavy jobs at once, and light jobs
    beside them up to 6 in all; without ``light`` the 2 bound every job."""

    def peaks(s: Scheduler) -> tuple[int, int]:
        lock = threading.Lock()
        running = {"heavy": 0, "all": 0}
        peak = {"heavy": 0, "all": 0}

        def job(heavy: bool) -> None:
            with lock:
                for k in ("heavy", "all") if heavy else ("all",):
                    running[k] += 1
                    peak[k] = max(peak[k], running[k])
            time.sleep(0.2)  # long enough for every thread to start, under load
            with lock:
                for k in ("heavy", "all") if heavy else ("all",):
                    running[k] -= 1

        for i in range(5):  # heavy ones first: they come first (priority)
            s.add(f"h{i}", lambda: job(True), priority=(0, i))
        for i in range(10):
            s.add(f"l{i}", lambda: job(False), priority=(1, i), light=True)
        s.run()
        return peak["heavy"], peak["all"]

    assert peaks(Scheduler(2, light=6)) == (2, 6)
    assert peaks(Scheduler(2)) == (2, 2)


def test_the_first_jobs_run_while_the_pool_still_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forty ready jobs: the first ones run while the later threads are
    still being started, not after all of them (a far registry's small
    blobs, requested at once: starting 40 threads under the scheduler's
    lock held every request back 50-100 ms)."""
    # Each start made 5 ms slower (a busy GIL does that): starting all 40
    # takes 200 ms or more, so a job that waits for them is told apart from
    # one that does not by a wide margin, also on a loaded machine (with
    # plain starts the tree before the fix sometimes passed, and under
    # four test workers this tree's first job once saw 24 threads).
    real_start = threading.Thread.start

    def slow_start(self: threading.Thread) -> None:
        real_start(self)
        if self.name.startswith("grow-"):
            time.sleep(0.005)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    s = Scheduler(1, name="grow", light=40)
    started_then: list[int] = []
    lock = threading.Lock()

    def job() -> None:
        alive = sum(1 for t in threading.enumerate() if t.name.startswith("grow-"))
        with lock:
            started_then.append(alive)
        time.sleep(0.05)

    for i in range(40):
        s.add(f"j{i}", job, light=True)
    s.run()
    assert len(started_then) == 40
    # Tree before the fix: the first job saw 39-40 threads (all started
    # under the lock); this tree: a few.
    assert min(started_then) < 20, "no job ran before most threads were started"


def _waiting(ident: int) -> bool:
    """Whether thread ``ident`` is in a Condition.wait."""
    frame = sys._current_frames().get(ident)
    return frame is not None and frame.f_code.co_name == "wait"


def test_an_interrupt_while_the_caller_waits_stops_the_workers() -> None:
    """Ctrl-C lands in the caller's thread wherever it is: also while it
    waits for the workers. The run ends at once and nothing new starts (the
    interrupt was raised, but the workers went on with every job left: a
    program that embeds a pull and catches the interrupt kept downloading)."""
    s = Scheduler(2)
    ran: list[str] = []
    taken = threading.Event()
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main

    def first() -> None:  # the caller's thread runs it
        ran.append("first")
        s.add("interrupting", interrupting)
        s.add("after", lambda: ran.append("after"), ("interrupting",))
        assert taken.wait(10)  # by the worker; the caller then waits

    def interrupting() -> None:
        assert threading.get_ident() != main
        ran.append("interrupting")
        taken.set()
        deadline = time.monotonic() + 10
        while not _waiting(main) and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.5)  # the caller has raised by now

    s.add("first", first)
    with pytest.raises(KeyboardInterrupt):
        s.run()
    for t in s._threads:
        t.join(10)
    assert ran == ["first", "interrupting"]


def test_a_thread_that_cannot_start_leaves_the_work_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``can't start new thread`` (a machine short of memory) is no failure:
    the caller's thread and those that did start do the work. It was a
    traceback ('cannot join thread before it is started'), or the jobs its
    worker had made ready were taken for a cycle."""
    real = threading.Thread.start
    starts = [0]

    def start(self: threading.Thread) -> None:
        if self.name.startswith("walk-"):
            starts[0] += 1
            if starts[0] > 1:
                raise RuntimeError("can't start new thread")
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    s = Scheduler(8)
    done: list[str] = []
    lock = threading.Lock()

    def job(name: str) -> None:
        time.sleep(0.01)
        with lock:
            done.append(name)

    def fan_out() -> None:
        for i in range(20):
            s.add(f"leaf{i}", lambda i=i: job(f"leaf{i}"))  # type: ignore[misc]
        s.add("top", lambda: job("top"), [f"leaf{i}" for i in range(20)])

    s.add("root", fan_out)
    s.run()
    assert sorted(done) == sorted([f"leaf{i}" for i in range(20)] + ["top"])
    assert done[-1] == "top" and starts[0] > 1


def test_a_failure_does_not_wait_for_a_stalled_job() -> None:
    """The first failure is raised after at most FAILURE_GRACE, while another
    job is still stuck (a stalled transfer: minutes); it waited for every
    running job. With a pool the caller's thread only watches, so it is never
    the one stuck in a transfer."""
    s = Scheduler(4, name="t")
    release = threading.Event()
    stuck = threading.Event()
    callers: list[str] = []

    def stalled() -> None:
        callers.append(threading.current_thread().name)
        stuck.set()
        release.wait(60)

    def failing() -> None:
        callers.append(threading.current_thread().name)
        stuck.wait(10)
        raise InvalidContent("gone")

    s.add("stalled", stalled)
    s.add("failing", failing)
    started = time.monotonic()
    try:
        with pytest.raises(InvalidContent, match="gone"):
            s.run()
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < FAILURE_GRACE + 5, f"took {took:.1f}s"  # not the 60 s stall
    assert threading.main_thread().name not in callers
    s.join()  # what is still running can be waited for


def test_a_failed_run_is_stopped_for_the_jobs_still_running() -> None:
    """Once run() raised its failure, the jobs it left running see
    ``stopped`` (transfers watch it through CancellingProgress and end at
    their next chunk); a run that succeeded is not stopped."""
    s = Scheduler(4, name="t")
    release = threading.Event()
    stuck = threading.Event()
    seen: list[bool] = []

    def stalled() -> None:
        stuck.set()
        release.wait(60)
        seen.append(s.stopped)

    def failing() -> None:
        stuck.wait(10)
        raise InvalidContent("gone")

    s.add("stalled", stalled)
    s.add("failing", failing)
    try:
        with pytest.raises(InvalidContent):
            s.run()
    finally:
        release.set()
    s.join()
    assert seen == [True]
    ok = Scheduler(2, name="t")
    ok.add("a", lambda: None)
    ok.add("b", lambda: None)
    ok.run()
    assert not ok.stopped


def _d(mt: str, n: int) -> Descriptor:
    return Descriptor(mt, Digest.from_bytes(b"%d" % n), 1)


def test_a_thread_outside_the_pool_follows_the_run() -> None:
    """unpack's applier: wait for each job in turn while the run goes on in
    another thread; a failure reaches the waiter; stop ends the run from
    there, and a job watching ``stopped`` ends early."""
    s = Scheduler(2, name="t")
    release = threading.Event()
    s.add("slow", lambda: release.wait(10) and None)
    s.add("quick", lambda: None)
    runner = threading.Thread(target=s.run)
    runner.start()
    s.wait("quick")  # while "slow" still runs
    assert runner.is_alive()
    release.set()
    s.wait("slow")
    runner.join()
    with pytest.raises(DistError, match="run ended without it"):
        s.wait("never added")

    failing = Scheduler(2, name="t")
    failing.add("bad", lambda: (_ for _ in ()).throw(InvalidContent("broken")))
    failing.add("later", lambda: None, ("bad",))
    failed: list[BaseException] = []

    def run_failing() -> None:
        try:
            failing.run()
        except InvalidContent as e:
            failed.append(e)

    threading.Thread(target=run_failing).start()
    with pytest.raises(InvalidContent, match="broken"):
        failing.wait("later")

    stopping = Scheduler(2, name="t")
    saw_stop = threading.Event()

    def watching() -> None:
        while not stopping.stopped:
            time.sleep(0.01)
        saw_stop.set()

    stopping.add("watch", watching)
    stopping.add("next", lambda: None, ("watch",))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stopping.run()
        except BaseException as e:
            errors.append(e)

    runner = threading.Thread(target=run)
    runner.start()
    stopping.stop(ValueError("the applier failed"))
    runner.join(10)
    assert saw_stop.is_set() and [str(e) for e in errors] == ["the applier failed"]
    with pytest.raises(ValueError):
        stopping.wait("next")  # never ran: the stop is the run's failure


def test_walk_bounds_any_handler() -> None:
    # A handler that makes up an endless chain of indexes: the walker stops it.
    seen: list[Descriptor] = []

    def chain(desc: Descriptor) -> list[Descriptor]:
        seen.append(desc)
        return [_d(OCI_INDEX, len(seen))]

    with pytest.raises(InvalidContent, match=f"nested deeper than {MAX_INDEX_DEPTH}"):
        walk(chain, [_d(OCI_INDEX, 0)])
    assert len(seen) == MAX_INDEX_DEPTH

    def wide(desc: Descriptor) -> list[Descriptor]:
        return [_d(OCI_LAYER_GZIP, i) for i in range(MAX_CHILDREN + 1)]

    with pytest.raises(InvalidContent, match="children is too many"):
        walk(wide, [_d(OCI_MANIFEST, 0)])


def test_recorder_orders_children_first() -> None:
    idx, m1, m2 = _d(OCI_INDEX, 0), _d(OCI_MANIFEST, 1), _d(OCI_MANIFEST, 2)
    inner, shared = _d(OCI_INDEX, 3), _d(OCI_LAYER_GZIP, 4)
    graph = {idx.digest: [m1, inner], inner.digest: [m2], m1.digest: [shared], m2.digest: [shared]}
    rec = Recorder(lambda d: graph.get(d.digest, []))
    walk(rec, [idx], concurrency=2)
    order = [d.digest for d in rec.children_first()]
    assert sorted(map(str, order)) == sorted(str(d.digest) for d in (idx, m1, m2, inner, shared))
    for parent, kids in graph.items():
        assert all(order.index(k.digest) < order.index(parent) for k in kids)
