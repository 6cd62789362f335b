"""The range workers of a ranged fetch always end the fetch: a worker that
cannot be started, or that fails before its first range, is not waited for.

The fetch coordinator counts its workers and waits until none runs; a count
taken for a thread that never started (``can't start new thread``, which a
machine short of memory answers) or a worker that died before it could
count itself out left that wait spinning forever, with no --timeout to end
it. The source here is the seam: bytes from memory at a steady pace, so the
coordinator's growth step comes while the first workers still run; the
store is the real one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocidist.content import parallel
from ocidist.content.local import LocalStore
from ocidist.content.parallel import Tuning, copy_ranges
from ocidist.digest import Digest
from ocidist.errors import DistError, Unavailable

MiB = 1 << 20
SIZE = 16 * MiB
# Each range worker starts with this; the coordinator grows beyond it after 0.2 s.
TUNING = Tuning(threshold=1, start=2, max=8, piece=MiB)


class _Paced:
    """``data[start:end]`` in 64 KiB reads, 5 ms apart (~13 MB/s a stream)."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self._data, self._pos, self._end = data, start, end

    def readinto(self, buf: bytearray | memoryview) -> int:
        time.sleep(0.005)
        n = min(len(buf), 64 * 1024, self._end - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _NoRetry:
    def failed(self, error: DistError, *, gained: int = 0) -> None:
        raise error


class _Source:
    tuning = TUNING

    def __init__(self, data: bytes) -> None:
        self.data = data

    def attempts(self) -> _NoRetry:
        return _NoRetry()

    def open_range(self, start: int, end: int) -> _Paced:
        return _Paced(self.data, start, end)


@pytest.fixture
def blob() -> tuple[bytes, Digest]:
    data = os.urandom(SIZE)
    return data, Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


@pytest.fixture
def threads_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """``threads_after(n)``: range workers past the first ``n`` cannot start."""
    real = threading.Thread.start
    allowed = [1 << 30]
    started = [0]

    def start(self: threading.Thread) -> None:
        if self.name == "range-fetch":
            if started[0] >= allowed[0]:
                raise RuntimeError("can't start new thread")
            started[0] += 1
        real(self)

    def limit(n: int) -> None:
        allowed[0] = n

    monkeypatch.setattr(threading.Thread, "start", start)
    yield limit


def _fetch(tmp_path: Path, data: bytes, dgst: Digest) -> tuple[bool | BaseException, LocalStore]:
    """copy_ranges into a real store, in a thread given 60 s (the fetch
    itself takes about a second); the outcome, or the error it raised."""
    store = LocalStore(str(tmp_path / "root"))
    outcome: list[bool | BaseException] = []

    def run() -> None:
        writer = store.writer("big", total=len(data), expected=dgst)
        try:
            outcome.append(copy_ranges(writer, _Source(data), len(data), dgst, tuning=TUNING))
        except BaseException as e:
            outcome.append(e)
        finally:
            writer.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the ranged fetch never ended"
    return outcome[0], store


def test_a_worker_that_cannot_start_is_not_waited_for(
    tmp_path: Path, blob: tuple[bytes, Digest], threads_after: Callable[[int], None]
) -> None:
    data, dgst = blob
    threads_after(TUNING.start)  # the first workers run; growing fails
    outcome, store = _fetch(tmp_path, data, dgst)
    assert outcome is True  # done by the workers that did start
    with store.reader(dgst) as f:
        assert hashlib.sha256(f.read()).hexdigest() == dgst.encoded
    assert parallel._BUDGET.active == 0  # every worker's share given back


def test_no_worker_at_all_is_one_error(
    tmp_path: Path, blob: tuple[bytes, Digest], threads_after: Callable[[int], None]
) -> None:
    data, dgst = blob
    threads_after(0)
    outcome, store = _fetch(tmp_path, data, dgst)
    assert isinstance(outcome, Unavailable), outcome
    assert "can't start new thread" in str(outcome)
    assert not store.exists(dgst)
    assert parallel._BUDGET.active == 0


def test_a_worker_failing_before_its_first_range_ends_the_fetch(
    tmp_path: Path, blob: tuple[bytes, Digest], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, dgst = blob
    monkeypatch.setattr(parallel, "BUF", 1 << 62)  # each worker's buffer: MemoryError
    outcome, store = _fetch(tmp_path, data, dgst)
    assert isinstance(outcome, MemoryError), outcome
    assert not store.exists(dgst)
    assert parallel._BUDGET.active == 0


def test_a_hash_thread_failing_at_its_start_ends_the_fetch(
    tmp_path: Path, blob: tuple[bytes, Digest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefix hash runs in a thread of its own that the end of the fetch
    waits for: its failure, even before its first byte, is the fetch's."""
    from ocidist.content import rangefile

    data, dgst = blob
    monkeypatch.setattr(rangefile, "HASH_PIECE", 1 << 62)  # its buffer: MemoryError
    outcome, store = _fetch(tmp_path, data, dgst)
    assert isinstance(outcome, MemoryError), outcome
    assert not store.exists(dgst)
