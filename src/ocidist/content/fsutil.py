"""Filesystem helpers for the local store, and its one OSError boundary.

Every filesystem call of the store runs inside ``os_errors(what)``, which
turns an ``OSError`` into a ``DistError`` naming what failed, in the plain
words CLI.md asks for ("no space left on device", "permission denied").
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from ocidist.errors import DistError, FailedPrecondition, NoSpace

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextmanager
def os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise convert(e, what) from e


def convert(e: OSError, what: str) -> DistError:
    where = f"{what}: " if what else ""
    if e.errno in _NO_SPACE:
        return NoSpace(f"{where}no space left on device")
    why = os.strerror(e.errno).lower() if e.errno else str(e)
    if e.errno in _NOT_ALLOWED:
        # Nothing the store can fix by retrying: the root's permissions or a
        # read-only mount.
        return FailedPrecondition(f"{where}{why}")
    return DistError(f"{where}{why}")


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in ``path`` durable (a file's fsync does not)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sync_file_range: Any = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``[offset, offset + length)`` of ``fd``
    to disk now, without waiting (Linux ``sync_file_range`` with
    ``SYNC_FILE_RANGE_WRITE``), so the fsync at commit finds little left to
    do; pages stay cached for a reader that comes next (an unpack). Does
    nothing where the call is missing. ctypes is imported on the first call
    only, i.e. only by a fetch of a large blob."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            fn.restype = ctypes.c_int
            _sync_file_range = fn
        except (ImportError, OSError, AttributeError):
            pass
    if _sync_file_range:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure is harmless


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def stamp(fd: int, when: float | None = None) -> None:
    """Set the file's times to ``when`` (default: now) from the wall clock,
    to the nanosecond. Left to the kernel they come from its coarse clock,
    milliseconds behind ``time.time()``: a blob committed "now" would look
    created before the commit started."""
    ns = time.time_ns() if when is None else int(when * 1e9)
    os.utime(fd, ns=(ns, ns))


@contextmanager
def atomic_file(path: str) -> Iterator[IO[bytes]]:
    """A file written under a temporary name beside ``path`` (seekable, read
    and write), given ``path`` only once the block ends without an error and
    the bytes are on disk (mode 0644); removed otherwise, whatever stopped it."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w+b") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
