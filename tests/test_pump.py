"""The two-thread pump big objects take (content/copy.py): bytes, resume
offsets and errors must be exactly those of the one-thread loop."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from ocidist.content import copy as copymod
from ocidist.content.local import LocalStore
from ocidist.digest import Digest
from ocidist.errors import DistError, Unavailable

SIZE = 5 * (1 << 20) + 12345


class Flaky(io.RawIOBase):
    """A stream that fails with ``Unavailable`` after ``fail_at`` bytes."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._fail_at = fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._fail_at:
            raise Unavailable("connection dropped")
        n = min(len(b), self._fail_at - self._pos, 300_000)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    @property
    def received(self) -> int:
        return self._pos


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copymod, "PIPELINE_MIN", 1 << 20)
    monkeypatch.setattr(copymod, "PIPELINE_BUFFERS", 3)


def test_pipelined_copy_commits_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    dgst = Digest.from_bytes(data)
    store = LocalStore(str(tmp_path))
    seen: list[int] = []
    threads: set[str] = set()

    def progress(held: int) -> None:
        seen.append(held)
        threads.add(threading.current_thread().name)

    assert copymod.ingest(
        store, "k", lambda off: io.BytesIO(data[off:]), SIZE, dgst, progress=progress
    )
    with store.reader(dgst) as f:
        assert f.read() == data
    assert seen[-1] == SIZE and seen == sorted(seen)
    assert "pump-write" in threads  # the two-thread path ran


def test_receive_failure_keeps_what_arrived_then_resumes(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    dgst = Digest.from_bytes(data)
    store = LocalStore(str(tmp_path))
    fail_at = 3 * (1 << 20) + 777
    with pytest.raises(Unavailable):
        copymod.ingest(
            store, "k", lambda off: cast(BinaryIO, Flaky(data[off:], fail_at)), SIZE, dgst
        )
    # Every received byte was written before the error came out.
    assert store.status("k").offset == fail_at
    opened: list[int] = []

    def open_at(off: int) -> io.BytesIO:
        opened.append(off)
        return io.BytesIO(data[off:])

    assert copymod.ingest(store, "k", open_at, SIZE, dgst)
    assert opened == [fail_at]
    with store.reader(dgst) as f:
        assert f.read() == data


def test_write_failure_stops_receiving_and_is_raised(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    dgst = Digest.from_bytes(data)
    store = LocalStore(str(tmp_path))
    writer = store.writer("k", total=SIZE, expected=dgst)
    real_write = writer.write
    calls = [0]

    def failing(chunk: bytes | memoryview) -> int:
        calls[0] += 1
        if calls[0] == 2:
            raise DistError("disk on fire")
        return real_write(chunk)

    setattr(writer, "write", failing)  # noqa: B010 (a fault at the seam)
    src = Flaky(data, SIZE)
    try:
        with pytest.raises(DistError, match="disk on fire"):
            copymod.copy_from(writer, lambda off: cast(BinaryIO, src), SIZE, dgst)
    finally:
        writer.close()
    assert not store.exists(dgst)
    # Receiving stopped soon after: not the whole object was read.
    assert src.received < SIZE
