"""The decompressing thread of a layer read (archive.compression._threaded)
ends when its reader stops early, whatever it was doing then.

It used to end only when it was between chunks: one that had produced its
last chunk into a full queue waited forever to say "the end" to a reader
that had gone (a layer whose first entry failed), one thread and its
buffered chunks lost per failed unpack in a long-lived `dist serve`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ocidist.archive.compression import _threaded


def _decompressors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "layer-decompress"]


def test_a_finished_producer_ends_when_its_reader_stops() -> None:
    before = set(_decompressors())
    exhausted = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield from [b"x" * 10] * 9  # one read, then the queue (8 deep) is full
        exhausted.set()

    reader = _threaded(chunks())
    assert next(reader) == b"x" * 10
    assert exhausted.wait(10)  # the producer is done; only its end marker is left
    reader.close()  # the reader stops (an entry failed)
    (thread,) = set(_decompressors()) - before
    thread.join(10)
    assert not thread.is_alive(), "the decompressing thread waits forever"


def test_a_failing_producer_ends_when_its_reader_stops() -> None:
    before = set(_decompressors())
    failing = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield from [b"x" * 10] * 9
        failing.set()
        raise ValueError("corrupt stream")

    reader = _threaded(chunks())
    assert next(reader) == b"x" * 10
    assert failing.wait(10)
    reader.close()
    (thread,) = set(_decompressors()) - before
    thread.join(10)
    assert not thread.is_alive(), "the decompressing thread waits forever"
