"""Per-key exclusive locks that hold across threads and processes.

An ingest directory carries a ``lock`` file; a writer holds ``flock(LOCK_EX)``
on it for its whole life. flock alone would exclude threads too on Linux
(locks belong to open file descriptions), but where flock is emulated with
POSIX record locks (NFS, some BSDs) those are per *process*, so a thread lock
per path keeps threads of one process apart everywhere.

The lock file lives inside the directory it protects, and commit/abort delete
that directory while holding the lock. A waiter may therefore wake up holding
a lock on an unlinked file; it checks that the path still names the inode it
locked and otherwise starts over (the caller then sees the new state: the
content committed, or a fresh ingest).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable

from ocidist.errors import FailedPrecondition


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.users = 0


# One entry per path in use; it goes away when the last user releases, so a
# long-lived process ingesting many keys does not accumulate locks.
_thread_locks: dict[str, _Entry] = {}
_registry_mutex = threading.Lock()


def _thread_lock(path: str) -> threading.Lock:
    with _registry_mutex:
        entry = _thread_locks.setdefault(path, _Entry(threading.Lock()))
        entry.users += 1
        return entry.lock


def _drop_thread_lock(path: str) -> None:
    with _registry_mutex:
        entry = _thread_locks.get(path)
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0:
            del _thread_locks[path]


class KeyLock:
    """An acquired lock on ``<dir>/lock``; ``release`` (idempotent) lets go."""

    def __init__(self, path: str, fd: int, tlock: threading.Lock) -> None:
        self.path = path
        self._fd = fd
        self._tlock = tlock
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        # Closing the descriptor drops the flock; no explicit LOCK_UN needed.
        os.close(self._fd)
        self._tlock.release()
        _drop_thread_lock(self.path)


def acquire(
    directory: str, *, wait: bool, what: str, prepare: Callable[[], None] | None = None
) -> KeyLock:
    """Lock ``directory`` (created if missing) exclusively.

    ``wait=False`` raises ``FailedPrecondition("<what> is locked")`` instead of
    blocking. ``prepare`` runs before each attempt to create the directory
    (callers use it to refuse early, e.g. when the content already exists).
    """
    path = os.path.join(directory, "lock")
    tlock = _thread_lock(path)
    if not tlock.acquire(blocking=wait):
        _drop_thread_lock(path)
        raise FailedPrecondition(f"{what} is locked")
    try:
        while True:
            if prepare is not None:
                prepare()
            os.makedirs(directory, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # the directory was removed between makedirs and open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise FailedPrecondition(f"{what} is locked") from e
                raise
            if _same_file(fd, path):
                return KeyLock(path, fd, tlock)
            # We locked a file that commit/abort unlinked while we waited.
            os.close(fd)
    except BaseException:
        tlock.release()
        _drop_thread_lock(path)
        raise


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
