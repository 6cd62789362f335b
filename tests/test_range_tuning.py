"""How many ranges a ranged fetch uses follows what the transfer measures
(content/parallel.py): near and fast, one connection (more would only add
hashing and writing work on the machine, which is the limit there); slow
connections, more of them; a long round trip, many at once from the start.

The source is the seam (bytes from memory at a chosen pace per stream, a
chosen round trip); the store is the real one. What is counted is how many
ranges were open at the same time, never a speed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from ocidist.content import parallel
from ocidist.content.local import LocalStore
from ocidist.content.parallel import Tuning, copy_ranges
from ocidist.digest import Digest
from ocidist.errors import DistError

MiB = 1 << 20
AUTO = Tuning(threshold=1, max=8, piece=MiB)  # start=0: from the measurements


class _Stream:
    """``data[start:end]`` in reads of up to ``step`` bytes, ``pause`` apart."""

    def __init__(self, src: _Source, start: int, end: int) -> None:
        self._src, self._pos, self._end = src, start, end

    def readinto(self, buf: bytearray | memoryview) -> int:
        if self._src.pause:
            time.sleep(self._src.pause)
        n = min(len(buf), self._src.step, self._end - self._pos)
        buf[:n] = self._src.data[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        with self._src.lock:
            self._src.open -= 1


class _NoRetry:
    def failed(self, error: DistError, *, gained: int = 0) -> None:
        raise error


class _Source:
    tuning = AUTO

    def __init__(self, data: bytes, *, step: int, pause: float, rtt: float | None) -> None:
        self.data, self.step, self.pause, self._rtt = data, step, pause, rtt
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0  # the most ranges open at once
        self.first_wave = 0  # ranges opened before any byte was read

    def attempts(self) -> _NoRetry:
        return _NoRetry()

    def rtt(self) -> float | None:
        return self._rtt

    def open_range(self, start: int, end: int) -> _Stream:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        return _Stream(self, start, end)


def _fetch(tmp_path: Path, src: _Source) -> None:
    data = src.data
    dgst = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
    store = LocalStore(str(tmp_path / "root"))
    writer = store.writer("big", total=len(data), expected=dgst)
    try:
        assert copy_ranges(writer, src, len(data), dgst, tuning=AUTO)
    finally:
        writer.close()
    with store.reader(dgst) as f:
        assert hashlib.sha256(f.read()).hexdigest() == dgst.encoded
    assert parallel._BUDGET.active == 0


def test_near_and_fast_is_one_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A source from memory, no pause: far above 1 MiB/s even on a loaded
    # machine, so the one connection counts as fast; it stays alone.
    monkeypatch.setattr(parallel, "SLOW_CONN", MiB)
    src = _Source(os.urandom(48 * MiB), step=MiB, pause=0.0, rtt=0.0005)
    _fetch(tmp_path, src)
    assert src.most == 1


def test_slow_connections_get_company(tmp_path: Path) -> None:
    # 64 KiB per 5 ms: ~13 MB/s a stream, under SLOW_CONN; near (short RTT).
    src = _Source(os.urandom(24 * MiB), step=64 * 1024, pause=0.005, rtt=0.0005)
    _fetch(tmp_path, src)
    assert src.most > 1


def test_a_far_registry_starts_wide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No connection counts as slow, so nothing is added: what is open at
    # once is the first wave alone.
    monkeypatch.setattr(parallel, "SLOW_CONN", 0)
    src = _Source(os.urandom(16 * MiB), step=64 * 1024, pause=0.005, rtt=0.08)
    _fetch(tmp_path, src)
    assert src.most == AUTO.max // 2


def test_a_near_registry_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SLOW_CONN", 0)  # no growth: the first wave alone
    src = _Source(os.urandom(16 * MiB), step=64 * 1024, pause=0.005, rtt=0.001)
    _fetch(tmp_path, src)
    assert src.most == 1
