"""One SQLite file shared by processes: creation, connection set-up,
transactions, errors, and a disk that is full.

The metadata store (images) and the leases live in the same ``metadata.db``,
each with its own connection; both need the same habits, kept here once:
autocommit mode with explicit ``BEGIN IMMEDIATE`` transactions (a
read-modify-write is never overtaken by another process between its read and
write), a busy timeout (a second writer waits instead of failing), one
connection shared by threads under a lock, and sqlite errors turned into the
toolkit's words.

A full disk (issue 21). The file must stay usable when the disk fills, since
`dist images ls`, `images rm` and `content prune` are how a person frees it:

- Created whole or not at all: the schema is built in a temporary file and
  linked into place, so no ``metadata.db`` without tables is ever seen.
- Readable on a full disk: in WAL mode every reader maps a 32 KiB ``-shm``
  index, which a full disk cannot give. When opening fails for space, each
  operation instead opens its own connection in EXCLUSIVE locking mode, where
  SQLite keeps that index in memory and no ``-shm`` is needed; the WAL is
  still read, so no committed transaction is missed (an ``immutable`` open
  would miss what is only in the WAL, and would read pages another process
  may be writing). The exclusive lock keeps other processes out for the
  length of one operation (they wait, up to the busy timeout).
- Deletable on a full disk: a deletion still writes WAL frames. A small
  reserve file (``metadata.db.reserve``, made whenever there is room) is
  given up when a deletion finds no space and the deletion retried; once the
  WAL is checkpointed away at close, the reserve is made again (a `dist`
  command that used it closes as it exits, rather than leaving the WAL:
  ``leave``). Writes that add do not get the reserve.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, TypeVar

from ocidist.errors import DistError, NoSpace, Unavailable

if TYPE_CHECKING:
    import sqlite3

BUSY_TIMEOUT_MS = 10_000
# The most WAL a `dist` command leaves behind as it exits (``leave``): each
# later first opener rebuilds its index from all of it (~2 us a frame here,
# ~2 ms at SQLite's own 1000-page autocheckpoint), and the file does not
# shrink by itself. Past this, the exiting command checkpoints it away.
LEAVE_WAL_BYTES = 256 * 1024
# What a deletion's WAL frames need (a frame is a 4 KiB page + 24 bytes; a
# delete touches a few pages per B-tree), with room to spare.
RESERVE_BYTES = 64 * 1024
RESERVE_SUFFIX = ".reserve"
# Below this much free space an I/O error from SQLite is taken for a full
# disk (a -shm that could not be extended says "disk I/O error").
_NEARLY_FULL = 1 << 20

_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_TABLE = re.compile(r"\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
_tmp_counter = itertools.count()

T = TypeVar("T")


# Bytes a file: URI path may hold as they are (RFC 3986 unreserved, and "/").
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


def file_uri(path: str) -> str:
    """``path`` as an SQLite ``file:`` URI: every other byte of the file
    system's name as ``%XX`` (so ``%``, ``?`` and ``#`` stay the name's, and
    non-UTF-8 names round-trip). Not ``Path.as_uri``: pathlib brings
    urllib.parse and ipaddress, ~4 ms of every `dist images ls`."""
    raw = os.fsencode(os.path.abspath(path))
    # "file://" and an absolute path: no authority, even for a path
    # beginning "//" (POSIX may keep that), which "file:" + path would make one.
    return "file://" + "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw)


class SQLiteFile:
    def __init__(
        self,
        path: str,
        what: str,
        schema: Sequence[str],
        pragmas: Sequence[str] = (),
        *,
        version: int,
        tables: Sequence[str],
        journal_mode: str = "WAL",
    ) -> None:
        """Open ``path``, creating it with ``schema`` and ``user_version =
        version`` if it does not exist, and bringing an older file up to
        ``schema`` in one transaction (opening a current file writes
        nothing). ``tables`` are the ones this class writes; ``pragmas``
        are per connection."""
        # Imported here, not at module level: sqlite3 (with datetime) is ~3 ms
        # of start-up, and `dist fetch` opens the store only once its
        # transfers are under way.
        import sqlite3

        self.path = path
        self._what = what
        self._schema = [s for s in schema if s.strip()]
        self._pragmas = tuple(pragmas)
        self._version = version
        self._tables = tuple(tables)
        self._journal_mode = journal_mode
        self._lock = threading.Lock()
        # Whether a transaction of ours committed (what ``leave`` must make
        # durable).
        self._committed = False
        # None: the disk was full at open; every operation opens its own
        # connection (see the module docstring).
        self._db: sqlite3.Connection | None = None
        with self._errors(f"{what} {path}"):
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                if not os.path.exists(path):
                    self._create()
                self._db = self._open_shared()
            except (sqlite3.Error, OSError) as e:
                if not self._fallback_for(e):
                    raise
        self._ensure_reserve()

    # -- opening -----------------------------------------------------------

    def _connect(self, target: str) -> sqlite3.Connection:
        import sqlite3

        db = sqlite3.connect(
            target,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            uri=target.startswith("file:"),
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException:
            db.close()
            raise
        return db

    def _uri(self) -> str:
        # mode=rw: never create the file here (creating is _create's job,
        # whole or not at all), even if it was removed since we looked.
        return file_uri(self.path) + "?mode=rw"

    def _create(self) -> None:
        """Build the schema in a temporary file and link it to ``path``; if
        another process linked its own first, that one is as good."""
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(
            directory,
            f"{os.path.basename(self.path)}.new-{os.getpid()}-{next(_tmp_counter)}",
        )
        try:
            db = self._connect(tmp)
            try:
                # Nobody else sees this file: no -shm (exclusive locking), and
                # the rollback journal in memory.
                db.execute("PRAGMA locking_mode = EXCLUSIVE")
                db.execute("PRAGMA journal_mode = MEMORY")
                db.execute("BEGIN IMMEDIATE")
                for stmt in self._schema:
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version = {int(self._version)}")
                db.execute("COMMIT")
                if self._journal_mode:
                    db.execute(f"PRAGMA journal_mode = {self._journal_mode}")
            finally:
                db.close()
            _sync_file(tmp, os.fsync)
            with suppress(FileExistsError):
                os.link(tmp, self.path)
            from ocidist.content.fsutil import fsync_dir

            fsync_dir(directory)
        finally:
            for suffix in ("", "-journal", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.unlink(tmp + suffix)

    def _open_shared(self) -> sqlite3.Connection:
        """The ordinary connection, kept for the life of this object."""
        db = self._connect(self._uri())
        try:
            for pragma in self._pragmas:
                db.execute(f"PRAGMA {pragma}")
            if self._journal_mode:
                db.execute(f"PRAGMA journal_mode = {self._journal_mode}")
            self._upgrade(db)
        except BaseException:
            db.close()
            raise
        return db

    def _upgrade(self, db: sqlite3.Connection) -> None:
        if self._version and db.execute("PRAGMA user_version").fetchone()[0] == self._version:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in self._schema:
                db.execute(stmt)
            if self._version:
                db.execute(f"PRAGMA user_version = {int(self._version)}")
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _fallback_for(self, e: BaseException) -> bool:
        """Whether ``e`` (from opening) is one the per-operation exclusive
        connection may get round: the disk is full."""
        import sqlite3

        if isinstance(e, OSError):
            return e.errno in (errno.ENOSPC, errno.EDQUOT)
        return isinstance(e, sqlite3.Error) and _code(e) in (_SQLITE_FULL, _SQLITE_IOERR)

    @contextmanager
    def _exclusive(self) -> Iterator[tuple[sqlite3.Connection, set[str]]]:
        """A connection for one operation on a full disk, and the tables it
        only has as empty TEMP stand-ins (the file lacks them and there is no
        room to add them: they hold no rows, and must not be written)."""
        import sqlite3

        if not os.path.exists(self.path):
            try:
                self._create()
            except (sqlite3.Error, OSError) as e:
                if not self._fallback_for(e):
                    raise
                # No store and no room for one: it has no images.
                empty = self._connect(":memory:")
                try:
                    yield empty, self._stand_ins(empty, set())
                finally:
                    empty.close()
                return
        db = self._connect(self._uri())
        try:
            # Before the first access: SQLite then keeps the WAL index in
            # memory instead of the -shm file, under an exclusive lock.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA temp_store = MEMORY")
            for pragma in self._pragmas:
                db.execute(f"PRAGMA {pragma}")
            missing: set[str] = set()
            try:
                self._upgrade(db)
            except sqlite3.Error as e:
                if not self._fallback_for(e):
                    raise
                have = {
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                missing = self._stand_ins(db, have)
            yield db, missing
        finally:
            db.close()
            self._ensure_reserve()

    def _stand_ins(self, db: sqlite3.Connection, have: set[str]) -> set[str]:
        missing = set()
        for stmt in self._schema:
            m = _TABLE.match(stmt)
            if m and m.group(1) not in have:
                db.execute(_TABLE.sub(r"CREATE TEMP TABLE IF NOT EXISTS \1", stmt, count=1))
                missing.add(m.group(1))
        return missing

    # -- the reserve ---------------------------------------------------------

    @property
    def _reserve(self) -> str:
        return self.path + RESERVE_SUFFIX

    def _ensure_reserve(self) -> None:
        """Make the reserve if it is missing and there is room (best effort:
        a full or read-only disk just goes without)."""
        if os.path.exists(self._reserve) or not os.path.exists(self.path):
            return
        tmp = f"{self._reserve}.new-{os.getpid()}-{next(_tmp_counter)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                # Allocated, not sparse: deleting it must give blocks back.
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.replace(tmp, self._reserve)
        except OSError:
            with suppress(OSError):
                os.unlink(tmp)

    def _release_reserve(self) -> bool:
        try:
            os.unlink(self._reserve)
        except FileNotFoundError:
            return False
        return True

    # -- operations ------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import sqlite3

        try:
            yield
        except sqlite3.Error as e:
            msg = str(e).lower()
            if _code(e) == _SQLITE_FULL or (
                _code(e) == _SQLITE_IOERR and _nearly_full(os.path.dirname(self.path) or ".")
            ):
                raise NoSpace(f"{what}: no space left on device") from e
            if "locked" in msg or "busy" in msg:
                raise Unavailable(f"{what}: database is locked by another process") from e
            raise DistError(f"{what}: {e}") from e
        except OSError as e:
            from ocidist.content.fsutil import convert

            raise convert(e, what) from e

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection to read with (no transaction of its own)."""
        with self._lock:
            if self._db is not None:
                yield self._db
                return
            with self._exclusive() as (db, _missing):
                yield db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is not None:
                with _transaction(self._db) as db:
                    yield db
                self._committed = True
                return
            with self._exclusive() as (db, missing):
                if missing & set(self._tables):
                    raise NoSpace(f"{self._what} {self.path}: no space left on device")
                with _transaction(db) as tx:
                    yield tx

    def _freeing(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` (a deletion) in a transaction; when the disk has no room
        even for its WAL frames, give up the reserve and run it again."""
        import sqlite3

        try:
            with self._tx() as db:
                return fn(db)
        except (sqlite3.Error, NoSpace) as e:
            full = isinstance(e, NoSpace) or _code(e) in (_SQLITE_FULL, _SQLITE_IOERR)
            if not full or not self._release_reserve():
                raise
        with self._tx() as db:
            return fn(db)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
        # The last connection's close checkpoints the WAL away; there may be
        # room again for a reserve a deletion used.
        self._ensure_reserve()

    def prime(self) -> None:
        """Begin an empty WAL now, for a command that will write later (a
        pull records its name at the end): the first frame of a WAL syncs
        its header and its directory, ~1.5 ms that would otherwise come
        after the last layer. The write is one that changes nothing
        (``user_version`` set to what it is). Best effort: a busy or full
        database leaves it for that write, and a busy one is not waited for
        (another process's write may take the busy timeout's 10 s, and the
        command may never need the lock)."""
        import sqlite3

        with self._lock:
            if self._db is None or self._journal_mode.upper() != "WAL":
                return
            try:
                if os.path.getsize(self.path + "-wal"):
                    return  # frames there: the next write appends
            except OSError:
                pass
            db = self._db
            with suppress(sqlite3.Error):
                db.execute("PRAGMA busy_timeout = 0")
                try:
                    with _transaction(db):
                        (version,) = db.execute("PRAGMA user_version").fetchone()
                        db.execute(f"PRAGMA user_version = {int(version)}")
                finally:
                    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def leave(self) -> None:
        """End this object's use in a process that exits without closing
        (``dist`` ends with ``os._exit``). Under ``synchronous = NORMAL`` a
        WAL commit is not synced: ``close``'s checkpoint makes it durable
        (it syncs the WAL, writes the pages into the database and syncs
        that), and so does one fdatasync of the WAL, done here instead when
        something was committed through this object (nothing at all for a
        command that only read). The WAL stays for the next connection,
        which reads it as after any crash. That one sync is enough: the
        WAL's directory entry is durable once it holds a frame (SQLite syncs
        the directory with the first sync of each connection's WAL, and a
        first frame syncs the header), the WAL cannot be removed while this
        connection is open, and another `dist` process's checkpoint syncs
        the database before the WAL may start over. This closes instead
        where the checkpoint gives room back: the full-disk reserve was used
        (or the disk was full at open: no shared connection), or the WAL has
        grown past ``LEAVE_WAL_BYTES``; and where the sync failed (the
        checkpoint syncs again)."""
        with self._lock:
            wal = self.path + "-wal"
            try:
                size = os.path.getsize(wal)
            except OSError:
                size = -1  # no WAL (not in WAL mode): a close has no checkpoint to do
            keep = (
                self._db is not None
                and 0 <= size <= LEAVE_WAL_BYTES
                and os.path.exists(self._reserve)
            )
            if size > 0 and self._db is not None and self._committed:
                try:
                    _sync_file(wal, os.fdatasync)
                except OSError:
                    keep = False
        if not keep:
            self.close()


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    finally:
        # A failed COMMIT (SQLITE_FULL) may leave the transaction open.
        if db.in_transaction:
            db.execute("ROLLBACK")


def _sync_file(path: str, sync: Callable[[int], None]) -> None:
    """``sync`` (fsync, fdatasync) a file SQLite or we wrote, by its path:
    a sync reaches the file's pages whichever descriptor wrote them."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sync(fd)
    finally:
        os.close(fd)


def _code(e: BaseException) -> int:
    return int(getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF


def _nearly_full(directory: str) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL
