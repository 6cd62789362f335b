"""Names -> descriptors: the image records, in SQLite inside the root.

SQLite in WAL mode lets readers work while one process writes, and the busy
timeout makes a second writer (another `dist fetch` finishing at the same
moment) wait instead of failing. Each public call is one transaction. On a
full disk the store still reads and deletes (see ocidist.sqlitedb).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ocidist.content.labels import merge, validate
from ocidist.descriptor import Descriptor
from ocidist.errors import InvalidArgument, NotFound
from ocidist.sqlitedb import SQLiteFile
from ocidist.value import Value

if TYPE_CHECKING:
    import sqlite3

    from ocidist.digest import Digest

# 2: the lease tables are part of the file from its creation (they were made
# by the first LeaseStore to open it), so a store is created whole at once.
SCHEMA_VERSION = 2

# The whole of metadata.db: the images, and the leases (ocidist.leases) kept
# beside them. Creating or upgrading the file runs all of it.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS images (
        name        TEXT PRIMARY KEY,
        media_type  TEXT NOT NULL,
        digest      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        target_json TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        labels_json TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS images_digest ON images(digest)",
    # Leases belong to a containerd namespace (ocidist.leases).
    """CREATE TABLE IF NOT EXISTS ns_leases (
        namespace   TEXT NOT NULL,
        id          TEXT NOT NULL,
        created_at  REAL NOT NULL,
        labels_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (namespace, id)
    )""",
    """CREATE TABLE IF NOT EXISTS ns_lease_resources (
        namespace TEXT NOT NULL,
        lease     TEXT NOT NULL,
        type      TEXT NOT NULL,
        id        TEXT NOT NULL,
        PRIMARY KEY (namespace, lease, type, id),
        FOREIGN KEY (namespace, lease) REFERENCES ns_leases(namespace, id) ON DELETE CASCADE
    )""",
)
# Per connection: WAL's NORMAL is durable enough (a power cut may lose the
# last commit, never corrupt the database) and avoids an fsync per write;
# foreign keys for the leases' cascade.
PRAGMAS = ("synchronous = NORMAL", "foreign_keys = ON")


class Image(Value):
    __slots__ = ("name", "target", "created_at", "updated_at", "labels")
    _no_hash = ("labels",)
    name: str
    target: Descriptor
    created_at: float
    updated_at: float
    labels: Mapping[str, str]

    def __init__(
        self,
        name: str,
        target: Descriptor,
        created_at: float,
        updated_at: float,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "created_at", created_at)
        object.__setattr__(self, "updated_at", updated_at)
        object.__setattr__(self, "labels", {} if labels is None else labels)


class Metadata(Protocol):
    """Image names -> descriptors, and what live leases hold: the contract
    the compositions take (``MetadataStore`` here, a daemon's through
    ``api.client.RemoteMetadata``)."""

    def put_image(
        self, name: str, desc: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image: ...
    def get_image(self, name: str) -> Image: ...
    def list_images(
        self, prefix: str = "", filter: Callable[[Image], bool] | None = None
    ) -> list[Image]: ...
    def delete_image(self, name: str) -> None: ...
    def update_labels(
        self, name: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> Image: ...
    def leased_digests(self) -> set[Digest]:
        """Content that live leases hold (garbage collection keeps it)."""
        ...

    def close(self) -> None: ...


class OpeningInBackground:
    """A ``Metadata`` still being opened, in a thread: creating a new SQLite
    store, with its fsyncs, is ~6 ms a small pull need not wait for. Every
    method waits for the store (and raises what opening it raised)."""

    def __init__(self, open_store: Callable[[], Metadata]) -> None:
        import threading

        self._open = open_store
        self._store: Metadata | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="open-metadata", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._store = self._open()
        except BaseException as e:  # re-raised by the first call that needs the store
            self._error = e

    def _opened(self) -> Metadata:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._store is not None
        return self._store

    def put_image(
        self, name: str, desc: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        return self._opened().put_image(name, desc, labels)

    def get_image(self, name: str) -> Image:
        return self._opened().get_image(name)

    def list_images(
        self, prefix: str = "", filter: Callable[[Image], bool] | None = None
    ) -> list[Image]:
        return self._opened().list_images(prefix, filter)

    def delete_image(self, name: str) -> None:
        self._opened().delete_image(name)

    def update_labels(
        self, name: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> Image:
        return self._opened().update_labels(name, labels, replace=replace)

    def leased_digests(self) -> set[Digest]:
        return self._opened().leased_digests()

    def close(self) -> None:
        self._thread.join()  # never left running behind its owner
        if self._store is not None:
            self._store.close()

    def leave(self) -> None:
        """``MetadataStore.leave`` once opened (the process is exiting)."""
        self._thread.join()
        if isinstance(self._store, MetadataStore):
            self._store.leave()
        elif self._store is not None:
            self._store.close()


class MetadataStore(SQLiteFile):
    def __init__(self, path: str) -> None:
        # WAL lets readers work while one process writes.
        super().__init__(
            path, "metadata", SCHEMA, PRAGMAS, version=SCHEMA_VERSION, tables=("images",)
        )

    def put_image(
        self, name: str, desc: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        """Create or update ``name``; keeps created_at, and the labels unless given."""
        _check_name(name)
        if labels:
            validate(labels)  # containerd's size limit, as on blobs' labels
        now = time.time()
        with self._errors(f"image {name}"), self._tx() as db:
            row = db.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
            created = row[5] if row else now
            new_labels = dict(labels) if labels is not None else (_labels(row[7]) if row else {})
            db.execute(
                "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    desc.media_type,
                    str(desc.digest),
                    desc.size,
                    desc.dumps(),
                    created,
                    now,
                    json.dumps(new_labels, sort_keys=True),
                ),
            )
        return Image(name, desc, created, now, new_labels)

    def get_image(self, name: str) -> Image:
        with self._errors(f"image {name}"), self._read() as db:
            row = db.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"image {name}: not found")
        return _image(row)

    def list_images(
        self, prefix: str = "", filter: Callable[[Image], bool] | None = None
    ) -> list[Image]:
        """Images whose name starts with ``prefix`` (and pass ``filter``), by name."""
        # LIKE would treat % and _ in names as wildcards; compare the prefix instead.
        with self._errors("list images"), self._read() as db:
            rows = db.execute(
                "SELECT * FROM images WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        images = [_image(r) for r in rows]
        return [i for i in images if filter is None or filter(i)]

    def delete_image(self, name: str) -> None:
        """Remove ``name``; works on a full disk (it frees what it needs)."""

        def delete(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM images WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"image {name}: not found")

        with self._errors(f"image {name}"):
            self._freeing(delete)

    def update_labels(
        self, name: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> Image:
        """Set labels; an empty value deletes one; ``replace`` drops the others."""
        validate(labels)
        now = time.time()
        with self._errors(f"image {name}"), self._tx() as db:
            row = db.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"image {name}: not found")
            current = merge(_labels(row[7]), labels, replace)
            db.execute(
                "UPDATE images SET labels_json = ?, updated_at = ? WHERE name = ?",
                (json.dumps(current, sort_keys=True), now, name),
            )
            row = db.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
        return _image(row)

    def leased_digests(self) -> set[Digest]:
        """What the leases in this file hold, in any namespace."""
        from ocidist.leases import LeaseStore  # leases builds on this module

        leases = LeaseStore(self.path)
        try:
            return leases.protected()
        finally:
            leases.close()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_name(name: str) -> None:
    if not name or not name.strip() or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid image name {name!r}")


def _labels(text: Any) -> dict[str, str]:
    obj = json.loads(text or "{}")
    return {str(k): str(v) for k, v in obj.items()} if isinstance(obj, dict) else {}


def _image(row: Any) -> Image:
    return Image(
        name=row[0],
        target=Descriptor.from_json(json.loads(row[4])),
        created_at=float(row[5]),
        updated_at=float(row[6]),
        labels=_labels(row[7]),
    )
