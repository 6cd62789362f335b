"""The byte-stream shape the toolkit passes around, and the one copy loop.

``typing.BinaryIO`` lacks ``readinto``; every stream we hand out (HTTP bodies,
verifying readers, store readers) has it, and the hot loops depend on it to
fill one reused 1 MiB buffer instead of allocating per chunk.
"""

from __future__ import annotations

from typing import Protocol

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
