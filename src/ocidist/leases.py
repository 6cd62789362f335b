"""Leases: named holds on content, kept beside the images in ``metadata.db``.

A client fetching through `dist serve` (``ctr content fetch``) commits blobs
before it names the image; the lease it holds meanwhile keeps `dist content
prune` from taking them. Content a live lease names is a GC root (see
gc.reachable). A lease labelled ``containerd.io/gc.expire=<RFC 3339 time>``
stops protecting at that time and is dropped at the next create or list, as
containerd does.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, DistError, InvalidArgument, NotFound
from ocidist.metadata import MetadataStore
from ocidist.sqlitedb import SQLiteFile

EXPIRE_LABEL = "containerd.io/gc.expire"
CONTENT = "content"  # the resource type of a blob, as containerd names it

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leases (
        id          TEXT PRIMARY KEY,
        created_at  REAL NOT NULL,
        labels_json TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS lease_resources (
        lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        type  TEXT NOT NULL,
        id    TEXT NOT NULL,
        PRIMARY KEY (lease, type, id)
    )""",
)


@dataclass(frozen=True)
class Lease:
    id: str
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        text = self.labels.get(EXPIRE_LABEL)
        if not text:
            return False
        try:
            return datetime.fromisoformat(text).timestamp() <= now
        except ValueError:
            return False  # unreadable: keep protecting rather than lose content


@dataclass(frozen=True)
class Resource:
    id: str
    type: str


class LeaseStore(SQLiteFile):
    """Leases in the SQLite file of a MetadataStore (its own tables and connection)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "leases", _SCHEMA, pragmas=("foreign_keys = ON",))

    def create(self, lease_id: str = "", labels: Mapping[str, str] | None = None) -> Lease:
        self._drop_expired()
        lease = Lease(lease_id or f"dist-{uuid.uuid4().hex}", time.time(), dict(labels or {}))
        with self._errors(f"lease {lease.id}"), self._tx() as db:
            if db.execute("SELECT 1 FROM leases WHERE id = ?", (lease.id,)).fetchone():
                raise AlreadyExists(f"lease {lease.id} already exists")
            db.execute(
                "INSERT INTO leases VALUES (?, ?, ?)",
                (lease.id, lease.created_at, json.dumps(dict(lease.labels), sort_keys=True)),
            )
        return lease

    def delete(self, lease_id: str) -> None:
        with self._errors(f"lease {lease_id}"), self._tx() as db:
            if db.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount == 0:
                raise NotFound(f"lease {lease_id}: not found")

    def list_leases(self) -> list[Lease]:
        self._drop_expired()
        return self._all()

    def _all(self) -> list[Lease]:
        with self._errors("leases"), self._lock:
            rows = self._db.execute("SELECT * FROM leases ORDER BY id").fetchall()
        return [Lease(r[0], float(r[1]), json.loads(r[2] or "{}")) for r in rows]

    def _drop_expired(self) -> None:
        now = time.time()
        for lease in self._all():
            if lease.expired(now):
                # NotFound: another process dropped it first.
                with contextlib.suppress(NotFound):
                    self.delete(lease.id)

    def add_resource(self, lease_id: str, resource: Resource) -> None:
        if not resource.id or not resource.type:
            raise InvalidArgument("lease resource needs an id and a type")
        with self._errors(f"lease {lease_id}"), self._tx() as db:
            if not db.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            db.execute(
                "INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?)",
                (lease_id, resource.type, resource.id),
            )

    def delete_resource(self, lease_id: str, resource: Resource) -> None:
        with self._errors(f"lease {lease_id}"), self._tx() as db:
            if not db.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            db.execute(
                "DELETE FROM lease_resources WHERE lease = ? AND type = ? AND id = ?",
                (lease_id, resource.type, resource.id),
            )

    def resources(self, lease_id: str) -> list[Resource]:
        with self._errors(f"lease {lease_id}"), self._lock:
            if not self._db.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            rows = self._db.execute(
                "SELECT id, type FROM lease_resources WHERE lease = ? ORDER BY type, id",
                (lease_id,),
            ).fetchall()
        return [Resource(r[0], r[1]) for r in rows]

    def protected(self) -> set[Digest]:
        """Digests of the content that leases alive now hold."""
        now = time.time()
        live = {lease.id for lease in self._all() if not lease.expired(now)}
        with self._errors("leases"), self._lock:
            rows = self._db.execute(
                "SELECT lease, id FROM lease_resources WHERE type = ?", (CONTENT,)
            ).fetchall()
        out = set()
        for lease_id, text in rows:
            if lease_id in live:
                try:
                    out.add(Digest.parse(text))
                except DistError:
                    continue  # not a digest: nothing in the store to keep
        return out


def protected(metadata: MetadataStore) -> set[Digest]:
    """What leases hold in the store ``metadata`` belongs to (gc's hook).

    A metadata store reached through a daemon answers for itself
    (``leased_digests``); a local one has its leases in the same file.
    """
    remote = getattr(metadata, "leased_digests", None)
    if remote is not None:
        return set(remote())
    leases = LeaseStore(metadata.path)
    try:
        return leases.protected()
    finally:
        leases.close()
