"""An ingest's data file written out of order, by ranges, resumable.

A big blob fetched as several concurrent ranges lands at its offsets in the
ingest's ``data`` file. Two things a sequential ingest gets for free need
care here:

- **The digest.** SHA-256 cannot be combined from pieces, so one thread
  hashes the contiguous prefix as it grows, reading the bytes back with
  ``pread`` right after they were written: from the page cache, not the
  disk (a second read from disk only if memory pressure evicted them).
  When the last range lands, the hash is nearly done; the commit needs no
  second pass over the blob.
- **Resume.** Which ranges are complete is kept in ``ranges`` beside
  ``data`` (JSON ``{"total": N, "done": [[start, end], ...]}``), replaced
  atomically, and only after an ``fdatasync`` of the data it describes: a
  kill (or a crash) at any point leaves a file that claims no byte that is
  not on disk. A later writer for the same key re-hashes the prefix once
  and fetches only the gaps.

Memory is bounded by the callers' buffers: nothing here holds data.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ocidist.content.fsutil import convert
from ocidist.digest import new_hasher

SIDECAR = "ranges"
HASH_PIECE = 1 << 20
# At most this often (seconds) is the set of completed ranges made durable.
CHECKPOINT_EVERY = 0.5

Span = tuple[int, int]  # [start, end)


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping, non-adjacent spans covering the same bytes."""
    out: list[Span] = []
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def gaps(done: Iterable[Span], total: int) -> list[Span]:
    """The spans of ``[0, total)`` that ``done`` does not cover."""
    out: list[Span] = []
    pos = 0
    for s, e in merge(done):
        if s > pos:
            out.append((pos, min(s, total)))
        pos = max(pos, e)
    if pos < total:
        out.append((pos, total))
    return [x for x in out if x[1] > x[0]]


def read_sidecar(directory: str, total: int) -> list[Span] | None:
    """The completed spans an earlier writer recorded, or None when there is
    no usable record (none, unreadable, or for another size)."""
    try:
        with open(os.path.join(directory, SIDECAR), encoding="utf-8") as f:
            doc: Any = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("total") != total or total < 0:
        return None
    raw = doc.get("done")
    if not isinstance(raw, list):
        return None
    spans: list[Span] = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            or not 0 <= item[0] < item[1] <= total
        ):
            return None
        spans.append((item[0], item[1]))
    return merge(spans)


def prefix_end(done: Iterable[Span]) -> int:
    """Where the contiguous prefix of ``done`` ends (0 if it has none)."""
    m = merge(done)
    return m[0][1] if m and m[0][0] == 0 else 0


def remove_sidecar(directory: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, SIDECAR))


class RangeFile:
    """The data file of one ingest, written at offsets by several threads.

    ``write_at`` from any thread; ``progress(start, upto)`` tells how far the
    range that starts at ``start`` has been written (its bytes below
    ``upto`` are in the file); ``complete(start, end)`` marks a range done
    (durable at the next checkpoint) — also the part of a range that broke
    off, so a retry continues after it and no byte is ever written twice
    (the prefix hash may already have read it). ``finish()`` waits for the prefix hash
    to reach ``total`` and returns the hasher.
    """

    def __init__(
        self,
        directory: str,
        total: int,
        algorithm: str,
        done: list[Span],
        *,
        hasher: Any = None,
        hashed: int = 0,
        what: str = "",
    ) -> None:
        self.directory = directory
        self.total = total
        self._what = what
        self._path = os.path.join(directory, "data")
        # Not the writer's append-mode handle: pwrite on O_APPEND appends.
        self._fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
        self._done = merge(done)
        self._moving: dict[int, int] = {}  # range start -> written up to
        self._lock = threading.Condition()
        self._hasher = hasher if hasher is not None else new_hasher(algorithm)
        self._hashed = hashed
        self._error: BaseException | None = None
        self._closed = False
        self._dirty = False
        self._hash_thread = threading.Thread(target=self._hash_loop, name="range-hash", daemon=True)
        self._hash_thread.start()

    # -- what is held ----------------------------------------------------

    def done(self) -> list[Span]:
        with self._lock:
            return list(self._done)

    def missing(self) -> list[Span]:
        with self._lock:
            return gaps(self._done, self.total)

    def held(self) -> int:
        """Bytes in the file that count: completed ranges plus the progress
        of the ones being written."""
        with self._lock:
            n = sum(e - s for s, e in self._done)
            return n + sum(u - s for s, u in self._moving.items())

    @property
    def hashed(self) -> int:
        with self._lock:
            return self._hashed

    # -- writing ---------------------------------------------------------

    def write_at(self, offset: int, data: memoryview) -> None:
        n = len(data)
        done = 0
        try:
            while done < n:
                done += os.pwrite(self._fd, data[done:], offset + done)
        except OSError as e:
            raise convert(e, self._what) from e

    def progress(self, start: int, upto: int) -> None:
        with self._lock:
            self._moving[start] = upto
            self._lock.notify_all()

    def complete(self, start: int, end: int) -> None:
        with self._lock:
            self._moving.pop(start, None)
            self._done = merge([*self._done, (start, end)])
            self._dirty = True
            self._lock.notify_all()

    def mark_dirty(self) -> None:
        with self._lock:
            self._dirty = True

    def checkpoint(self) -> None:
        """Make the completed ranges durable: the data first, then the record."""
        with self._lock:
            if not self._dirty:
                return
            spans = list(self._done)
            self._dirty = False
        try:
            os.fdatasync(self._fd)
            tmp = os.path.join(self.directory, f".{SIDECAR}-{threading.get_ident()}")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"total": self.total, "done": [list(s) for s in spans]}, f)
            os.replace(tmp, os.path.join(self.directory, SIDECAR))
        except OSError as e:
            raise convert(e, self._what) from e

    # -- the prefix hash -------------------------------------------------

    def _frontier(self) -> int:
        """How far the file is written contiguously from byte 0 (lock held):
        the completed prefix, and the progress of the range that starts
        where it ends. Bytes below it are final: no byte is written twice."""
        end = prefix_end(self._done)
        upto = self._moving.get(end, end)
        return max(end, upto)

    def _hash_loop(self) -> None:
        try:  # all of it: finish() waits for this thread's result or its error
            buf = bytearray(HASH_PIECE)
            view = memoryview(buf)
            while True:
                with self._lock:
                    while not self._closed and self._frontier() <= self._hashed:
                        self._lock.wait()
                    if self._closed:
                        return
                    upto = self._frontier()
                pos = self._hashed
                while pos < upto:
                    want = min(HASH_PIECE, upto - pos)
                    n = os.preadv(self._fd, [view[:want]], pos)
                    if n <= 0:
                        raise OSError(f"data file ends at {pos}, short of {upto}")
                    self._hasher.update(view[:n])
                    pos += n
                with self._lock:
                    self._hashed = pos
                    self._lock.notify_all()
        except BaseException as e:  # reported by finish()
            with self._lock:
                self._error = e
                self._lock.notify_all()

    def finish(self, wait: Callable[[], None] | None = None) -> Any:
        """The hasher of the whole file, once every byte is done and hashed."""
        with self._lock:
            while self._hashed < self.total and self._error is None:
                if self._frontier() < self.total and not self._moving:
                    raise RuntimeError(f"{self._what}: finish with ranges missing")
                self._lock.wait(0.5)
            if self._error is not None:
                err = self._error
                if isinstance(err, OSError):
                    raise convert(err, self._what) from err
                raise err
            return self._hasher

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._hash_thread.join()
        os.close(self._fd)
