"""One ingest transaction of the local store: ``<root>/ingest/<sha256(key)>/``.

The directory holds ``data`` (the bytes so far), ``meta`` (key, total,
expected digest and start time as one JSON object, replaced atomically) and
the ``lock`` file held by the live writer (see locks.py); the data file's
mtime is the last update (set exactly when a writer lets go: the kernel's
own file times come from a coarse clock that lags the wall clock by
milliseconds, and containerd's clients compare them with their own clock).
While a big blob is fetched in concurrent ranges
(rangefile.py), ``ranges`` says which parts of ``data`` are complete: then
the data file's size is not its valid prefix. Only the lock holder changes
the directory, so everything here runs single-threaded per key.

One metadata file, written only when it changes, because a small blob's
ingest is mostly fixed costs: the layout before (``key``, ``total``,
``expected``, ``startedat``, ``updatedat`` as separate files, read back after
writing) took ~13 file operations per blob. Directories in that older layout
(an ingest interrupted by an earlier version) are still read and resumed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ocidist.content import Status
from ocidist.content.fsutil import (
    convert,
    fsync_dir,
    os_errors,
    read_text,
    stamp,
    start_writeback,
)
from ocidist.content.labels import LabelFiles, validate
from ocidist.content.locks import KeyLock
from ocidist.content.rangefile import (
    SIDECAR,
    RangeFile,
    prefix_end,
    read_sidecar,
    remove_sidecar,
)
from ocidist.digest import Digest, new_hasher
from ocidist.errors import AlreadyExists, DigestMismatch, DistError, InvalidArgument

BUFSIZE = 1 << 20
# Start writing a large ingest back to disk every this many bytes.
WRITEBACK_EVERY = 8 << 20


_LEGACY = ("key", "total", "expected", "startedat", "updatedat")
_tmp_names = threading.local()


def _read_meta(directory: str) -> dict[str, Any] | None:
    """The ingest's metadata: from ``meta``, else from the older one-file-per-
    field layout; None when neither says which key the directory is for."""
    text = read_text(os.path.join(directory, "meta"))
    if text is not None:
        try:
            meta = json.loads(text)
        except ValueError:
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("key"), str) else None
    key = read_text(os.path.join(directory, "key"))
    if key is None:
        return None
    return {
        "key": key,
        "total": _int(read_text(os.path.join(directory, "total")), -1),
        "expected": read_text(os.path.join(directory, "expected")) or "",
        "started_at": _float(read_text(os.path.join(directory, "startedat"))),
        "updated_at": _float(read_text(os.path.join(directory, "updatedat"))),
    }


def _write_meta(directory: str, meta: Mapping[str, Any]) -> None:
    # Replaced with a rename, so a reader (or a crash) never sees half of it.
    # One temporary name per thread: only the lock holder writes here.
    n = getattr(_tmp_names, "n", 0) + 1
    _tmp_names.n = n
    tmp = os.path.join(directory, f".meta-{threading.get_ident()}-{n}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(meta))
    os.replace(tmp, os.path.join(directory, "meta"))


def read_status(directory: str) -> Status | None:
    """What an ingest directory says about itself, without taking its lock
    (for ``status``/``list_statuses``); None if it is gone or half-made."""
    meta = _read_meta(directory)
    if meta is None:
        return None
    try:
        st = os.stat(os.path.join(directory, "data"))
        offset, data_mtime = st.st_size, st.st_mtime
    except FileNotFoundError:
        offset, data_mtime = 0, 0.0
    total = int(_number(meta.get("total"), -1))
    if os.path.exists(os.path.join(directory, SIDECAR)):
        # Written in ranges: only the recorded contiguous prefix counts.
        offset = prefix_end(read_sidecar(directory, total) or [])
    started = _number(meta.get("started_at"), 0.0)
    updated = max(_number(meta.get("updated_at"), 0.0), data_mtime)
    return Status(
        key=str(meta["key"]),
        offset=offset,
        total=total,
        expected=_digest(meta.get("expected")),
        started_at=started,
        updated_at=updated or started,
    )


def _number(v: object, default: float) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _digest(text: object) -> Digest | None:
    if not text or not isinstance(text, str):
        return None
    try:
        return Digest.parse(text.strip())
    except DistError:
        return None


class LocalWriter:
    """A Writer over an ingest directory whose lock the caller acquired."""

    def __init__(
        self,
        *,
        key: str,
        directory: str,
        lock: KeyLock,
        blobs: str,
        labels: LabelFiles,
        total: int,
        expected: Digest | None,
    ) -> None:
        self._key = key
        self._dir = directory
        self._lock = lock
        self._blobs = blobs
        self._labels = labels
        self._what = f"ingest {key}"
        with os_errors(self._what):
            self._open(total, expected)

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _open(self, total: int, expected: Digest | None) -> None:
        now = time.time()
        old = _read_meta(self._dir)
        if old is not None and old["key"] != self._key:
            raise DistError(f"{self._what}: directory belongs to key {old['key']!r}")
        # No metadata (fresh, or lost to a crash before it was first written):
        # bytes of unknown origin are not resumed.
        restart = old is None
        old_expected = _digest(old.get("expected")) if old else None
        if expected is None:
            expected = old_expected
        elif old_expected is not None and old_expected != expected:
            restart = True  # the partial data was for other content
        old_total = int(_number(old.get("total"), -1)) if old else -1
        if total < 0:
            total = old_total
        self._started = (_number(old.get("started_at"), 0.0) if old else 0.0) or now
        self._total = total
        self._expected = expected
        meta = {
            "key": self._key,
            "total": total,
            "expected": str(expected) if expected else "",
            "started_at": self._started,
        }
        if old != meta:
            _write_meta(self._dir, meta)
        self._file = open(self._path("data"), "a+b", buffering=0)  # noqa: SIM115
        self._closed = False
        self._algorithm = expected.algorithm if expected else "sha256"
        st = os.fstat(self._file.fileno())
        held = size = st.st_size
        self._flushed = 0
        # A resumed ingest reports the time of its last write (containerd's
        # rule): the data file's mtime, stamped exactly by the last close.
        self._updated = st.st_mtime_ns / 1e9 if old is not None else self._started
        # A fresh ingest's close stamps its start as its last update.
        self._touched = old is None
        # The ranges an earlier ranged fetch completed (None: not one).
        self._done: list[tuple[int, int]] | None = None
        if os.path.exists(self._path(SIDECAR)):
            done = None if restart else read_sidecar(self._dir, total)
            if done is None:
                # Sparse bytes without a usable record of which are valid.
                remove_sidecar(self._dir)
                size = 0
            else:
                self._done = done
                self._hasher = _hash_file(self._file, prefix_end(done), self._algorithm)
                self._offset = prefix_end(done)
                return
        if restart or (total >= 0 and size > total):
            size = 0
        if size == held:
            # Nothing to cut off (always so for a fresh ingest): hash what is held.
            self._hasher = _hash_file(self._file, size, self._algorithm)
            self._offset = size
        else:
            self._truncate(size)

    def _truncate(self, size: int) -> None:
        # Resume: hash the bytes already held once, so the running hash covers
        # them without anyone sending them again.
        self._file.truncate(size)
        self._hasher = _hash_file(self._file, size, self._algorithm)
        self._offset = size
        self._flushed = min(self._flushed, size)
        self._changed()

    def _changed(self) -> None:
        self._updated = time.time()
        self._touched = True

    def _check_open(self) -> None:
        if self._closed:
            raise DistError(f"{self._what}: writer is closed")

    def write(self, data: bytes | memoryview) -> int:
        self._check_open()
        if self._done is not None:
            self._leave_ranges()
        view = memoryview(data).cast("B")
        n = len(view)
        try:
            # Append mode: the file position is always the end. A regular file
            # write rarely comes up short, but the contract does not promise it.
            done = 0
            while done < n:
                done += self._file.write(view[done:]) or 0
        except OSError as e:
            # Part of the chunk may be on disk (a full disk takes what fits).
            # Cut it off so file, offset and hash agree and the writer stays
            # usable, e.g. after the user frees space.
            try:
                self._file.truncate(self._offset)
            except OSError:
                self._closed = True
                self._file.close()
                self._lock.release()
            raise convert(e, self._what) from e
        self._hasher.update(view)
        self._offset += n
        self._changed()
        if self._offset - self._flushed >= WRITEBACK_EVERY:
            # The fsync at commit was up to 65 ms of a 40 MB layer's fetch,
            # all on the critical path; written back as we go it is ~0.
            start_writeback(self._file.fileno(), self._flushed, self._offset - self._flushed)
            self._flushed = self._offset
        return n

    def status(self) -> Status:
        return Status(
            key=self._key,
            offset=self._offset,
            total=self._total,
            expected=self._expected,
            started_at=self._started,
            updated_at=self._updated,
        )

    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hasher.copy().hexdigest())

    # -- out of order (rangefile.py) ------------------------------------------

    def ranged(self) -> RangeFile:
        """Switch to writing at offsets: a RangeFile over the data file that
        starts from what an earlier ranged fetch completed (or the sequential
        prefix held). The record of completed ranges is written before any
        byte lands out of order, so a kill never leaves a sparse file that
        looks like a prefix. End with ``adopt`` or ``leave_ranges``."""
        self._check_open()
        if self._total < 0:
            raise InvalidArgument(f"{self._what}: ranges need the object's size")
        done = self._done if self._done is not None else [(0, self._offset)]
        with os_errors(self._what):
            rf = RangeFile(
                self._dir,
                self._total,
                self._algorithm,
                done,
                hasher=self._hasher,
                hashed=self._offset,
                what=self._what,
            )
            rf.mark_dirty()
            rf.checkpoint()
        self._done = rf.done()
        return rf

    def adopt(self, rf: RangeFile) -> None:
        """Every range is done: take the file's hash; the writer is whole and
        sequential again (``commit`` verifies as usual)."""
        self._check_open()
        try:
            self._hasher = rf.finish()
        finally:
            rf.close()
        with os_errors(self._what):
            remove_sidecar(self._dir)
        self._done = None
        self._offset = rf.total
        self._changed()

    def leave_ranges(self, rf: RangeFile) -> None:
        """Back to one sequential stream (the server ignored Range): keep the
        contiguous prefix, drop the rest."""
        rf.close()
        self._done = rf.done()
        # The hasher went on in the range file's thread, up to ``hashed``.
        self._offset = rf.hashed
        self._leave_ranges()

    def _leave_ranges(self) -> None:
        prefix = prefix_end(self._done or [])
        self._done = None
        with os_errors(self._what):
            self._file.truncate(prefix)
            remove_sidecar(self._dir)
            if prefix != self._offset:
                self._truncate(prefix)  # hashes the prefix again

    def truncate(self, size: int) -> None:
        self._check_open()
        if self._done is not None:
            self._leave_ranges()
        if not 0 <= size <= self._offset:
            raise InvalidArgument(f"{self._what}: cannot truncate to {size} bytes")
        with os_errors(self._what):
            self._truncate(size)

    def commit(self, size: int, expected: Digest, labels: Mapping[str, str] | None = None) -> None:
        """Verify and publish. A wrong size or digest raises DigestMismatch
        and keeps the writer open with its bytes, as containerd keeps the
        ingest: the caller may truncate and write again, or close and leave
        the ingest for a later writer (or ``abort``). AlreadyExists drops it."""
        self._check_open()
        if labels:
            validate(labels)
        with os_errors(f"commit {self._key}"):
            self._commit(size, expected, labels or {})

    def _commit(self, size: int, expected: Digest, labels: Mapping[str, str]) -> None:
        if size >= 0 and size != self._offset:
            raise DigestMismatch(
                f"commit {self._key}: size mismatch: wrote {self._offset} bytes, expected {size}"
            )
        if expected.algorithm != self._algorithm:
            self._algorithm = expected.algorithm
            self._truncate(self._offset)
        got = self.digest()
        if got != expected:
            raise DigestMismatch(
                f"commit {self._key}: digest mismatch: got {got}, expected {expected}"
            )
        parent = os.path.join(self._blobs, expected.algorithm)
        target = os.path.join(parent, expected.encoded)
        if os.path.exists(target):
            self._discard()
            raise AlreadyExists(f"content {expected} already exists")
        fd = self._file.fileno()
        os.fchmod(fd, 0o444)
        # created_at of a blob is its mtime: make it the commit time, not the
        # time of the last write (which may be days ago for a resumed ingest).
        stamp(fd)
        os.fsync(fd)  # after the mode and time, so they are durable too
        if not publish(self._path("data"), target, self._labels, expected, labels):
            self._discard()
            raise AlreadyExists(f"content {expected} already exists")
        self._discard()

    def _discard(self) -> None:
        """Remove the ingest directory and release the lock."""
        self._closed = True
        self._file.close()
        # Rename first: a new writer for this key can start at once on a fresh
        # directory, and a waiter on our lock sees its path gone and retries.
        trash = os.path.join(os.path.dirname(self._dir), trash_name())
        try:
            os.rename(self._dir, trash)
            _remove_dir(trash)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Release the lock; the data stays for a later writer with this key."""
        if self._closed:
            return
        self._closed = True
        try:
            with os_errors(self._what):
                try:
                    if self._touched:
                        stamp(self._file.fileno(), self._updated)
                finally:
                    self._file.close()
        finally:
            self._lock.release()

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trash_name() -> str:
    """A unique name for an ingest directory on its way out (uuid4's
    randomness without importing uuid, ~1 ms of start-up)."""
    return f".trash-{os.urandom(16).hex()}"


def publish(
    src: str, target: str, label_files: LabelFiles, dgst: Digest, labels: Mapping[str, str]
) -> bool:
    """Make the verified, fsynced file ``src`` the blob ``target``, durably,
    then give it ``labels`` (empty values dropped). False, with nothing
    changed, when the blob exists already: ``link``, unlike ``rename``, never
    replaces, so a blob another process committed meanwhile is reported, not
    silently overwritten."""
    try:
        link(src, target)
    except FileExistsError:
        return False
    except PermissionError:
        os.rename(src, target)  # a filesystem without hard links
    fsync_dir(os.path.dirname(target))
    if labels:
        with label_files.locked():
            label_files.write(dgst, {k: v for k, v in labels.items() if v})
    return True


def link(src: str, target: str) -> None:
    try:
        os.link(src, target)
    except FileNotFoundError:
        # blobs/<alg> is made by the first commit, not checked by every one.
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.link(src, target)


def _remove_dir(path: str) -> None:
    """Remove an ingest directory moved aside; the files it is known to hold
    are unlinked by name (cheaper than a tree walk for every small blob)."""
    for name in ("data", "meta", "lock", SIDECAR, *_LEGACY):
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except OSError:
            break
    try:
        os.rmdir(path)
    except OSError:
        import shutil  # rarely needed; with bz2/lzma ~2 ms of start-up

        shutil.rmtree(path, ignore_errors=True)  # something else in it: walk it


def _hash_file(f: Any, size: int, algorithm: str) -> Any:
    hasher = new_hasher(algorithm)
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    pos = 0
    while pos < size:
        n = os.preadv(f.fileno(), [view[: min(BUFSIZE, size - pos)]], pos)
        if n == 0:
            break
        hasher.update(view[:n])
        pos += n
    return hasher
