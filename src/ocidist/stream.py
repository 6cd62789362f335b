"""The byte-stream shape the toolkit passes around, and the one copy loop.

``typing.BinaryIO`` lacks ``readinto``; every stream we hand out (HTTP bodies,
verifying readers, store readers) has it, and the hot loops depend on it to
fill one reused 1 MiB buffer instead of allocating per chunk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from ocidist.errors import Unavailable

BUF = 1 << 20


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def readinto(self, buf: bytearray | memoryview, /) -> int: ...
    def close(self) -> None: ...


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


def copy_stream(src: Readable, dst: Writable, bufsize: int = BUF) -> int:
    """Copy to EOF through one reused buffer; returns the byte count."""
    buf = bytearray(bufsize)
    view = memoryview(buf)
    total = 0
    while True:
        n = src.readinto(view)
        if not n:
            return total
        dst.write(view[:n])
        total += n


def read_exactly(src: Readable, size: int, progress: Callable[[int], None] | None = None) -> bytes:
    """All ``size`` bytes of ``src`` into one buffer (an object small enough to
    hold); ``Unavailable`` when the stream ends before. ``progress`` gets the
    bytes held after each read (a small blob on a slow link takes seconds too)."""
    buf = bytearray(size)
    view = memoryview(buf)
    held = 0
    while held < size:
        n = src.readinto(view[held:])
        if not n:
            raise Unavailable(f"stream ended after {held} of {size} bytes")
        held += n
        if progress is not None:
            progress(held)
    return bytes(buf)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
