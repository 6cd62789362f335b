"""One SQLite file shared by processes: connection set-up, transactions, errors.

The metadata store (images) and the leases live in the same ``metadata.db``,
each with its own connection; both need the same habits, kept here once:
autocommit mode with explicit ``BEGIN IMMEDIATE`` transactions (a
read-modify-write is never overtaken by another process between its read and
write), a busy timeout (a second writer waits instead of failing), one
connection shared by threads under a lock, and sqlite errors turned into the
toolkit's words.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ocidist.errors import DistError, NoSpace, Unavailable

if TYPE_CHECKING:
    import sqlite3

BUSY_TIMEOUT_MS = 10_000


class SQLiteFile:
    def __init__(
        self,
        path: str,
        what: str,
        schema: Sequence[str],
        pragmas: Sequence[str] = (),
        *,
        version: int = 0,
    ) -> None:
        """Open (creating if need be) the database; ``schema`` runs in one
        transaction unless the file's ``user_version`` is already ``version``
        (then opening writes nothing: a command that only reads, like a push,
        paid a commit and its fdatasync for a no-op before)."""
        # Imported here, not at module level: sqlite3 (with datetime) is ~3 ms
        # of start-up, and `dist fetch` opens the store only once its
        # transfers are under way.
        import sqlite3

        self.path = path
        self._what = what
        self._lock = threading.Lock()
        with self._errors(f"{what} {path}"):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            for pragma in pragmas:
                self._db.execute(f"PRAGMA {pragma}")
            if version and self._db.execute("PRAGMA user_version").fetchone()[0] == version:
                return
            with self._tx() as db:
                for stmt in schema:
                    if stmt.strip():
                        db.execute(stmt)
                if version:
                    db.execute(f"PRAGMA user_version = {int(version)}")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import sqlite3

        try:
            yield
        except sqlite3.Error as e:
            msg = str(e).lower()
            if "full" in msg:
                raise NoSpace(f"{what}: no space left on device") from e
            if "locked" in msg or "busy" in msg:
                raise Unavailable(f"{what}: database is locked by another process") from e
            raise DistError(f"{what}: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
