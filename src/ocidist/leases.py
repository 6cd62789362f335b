"""Leases: named holds on content, kept beside the images in ``metadata.db``.

A client fetching through `dist serve` (``ctr content fetch``) commits blobs
before it names the image; the lease it holds meanwhile keeps `dist content
prune` from taking them. Content a live lease names is a GC root (see
gc.reachable), whichever namespace the lease is in. A lease labelled
``containerd.io/gc.expire=<RFC 3339 time>`` stops protecting at that time and
is dropped at the next create or list, as containerd's collector would.

As in containerd, a lease belongs to a namespace: its id is unique within
it, and a lease of one namespace is invisible from another. (Images and
content are shared by all namespaces here.)
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    DistError,
    FailedPrecondition,
    InvalidArgument,
    NoSpace,
    NotFound,
    Unimplemented,
)
from ocidist.metadata import PRAGMAS, SCHEMA, SCHEMA_VERSION
from ocidist.sqlitedb import SQLiteFile
from ocidist.value import Value

if TYPE_CHECKING:
    import sqlite3

EXPIRE_LABEL = "containerd.io/gc.expire"
# containerd's resource types: a blob, an ingest, and snapshots/<snapshotter>.
CONTENT = "content"
INGESTS = "ingests"
SNAPSHOTS = "snapshots"
DEFAULT_NAMESPACE = "default"

# containerd's identifiers.Validate: what a namespace name may be.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
MAX_IDENTIFIER = 76


class Lease(Value):
    __slots__ = ("id", "created_at", "labels")
    _no_hash = ("labels",)  # a dict
    id: str
    created_at: float
    labels: Mapping[str, str]

    def __init__(self, id: str, created_at: float, labels: Mapping[str, str] | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "created_at", created_at)
        object.__setattr__(self, "labels", dict(labels or {}))

    def expired(self, now: float) -> bool:
        text = self.labels.get(EXPIRE_LABEL)
        if not text:
            return False
        try:
            return datetime.fromisoformat(text).timestamp() <= now
        except ValueError:
            return False  # unreadable: keep protecting rather than lose content


class Resource(Value):
    __slots__ = ("id", "type")
    id: str
    type: str

    def __init__(self, id: str, type: str) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "type", type)


def check_namespace(namespace: str) -> str:
    """containerd's NamespaceRequired: FailedPrecondition without one,
    InvalidArgument for a name that is not an identifier."""
    if not namespace:
        raise FailedPrecondition("namespace is required")
    if len(namespace) > MAX_IDENTIFIER or not _IDENTIFIER.match(namespace):
        raise InvalidArgument(f"namespace validation: identifier {namespace!r} is not valid")
    return namespace


def check_resource(resource: Resource) -> Resource:
    """containerd's rules for a lease resource (metadata.parseLeaseResource):
    ``content`` (a digest, normalised), ``ingests`` (a ref), or
    ``snapshots/<snapshotter>``; any other type is not implemented."""
    kind, _, rest = resource.type.partition("/")
    if kind in (CONTENT, INGESTS):
        if rest or "/" in resource.type:
            raise InvalidArgument(f"invalid resource type {resource.type}")
        if not resource.id:
            raise InvalidArgument(f"{kind} resource needs an id")
        if kind == CONTENT:
            try:
                dgst = Digest.parse(resource.id)
            except DistError as e:
                raise InvalidArgument(f"invalid content resource id {resource.id}: {e}") from None
            return Resource(str(dgst), CONTENT)
        return resource
    if kind == SNAPSHOTS:
        if not rest or "/" in rest:
            raise InvalidArgument(f"invalid snapshot resource type {resource.type}")
        if not resource.id:
            raise InvalidArgument("snapshot resource needs an id")
        return resource
    raise Unimplemented(f"resource type {resource.type} not supported yet")


class LeaseStore(SQLiteFile):
    """Leases in the SQLite file of a MetadataStore (its own tables and connection)."""

    def __init__(self, path: str) -> None:
        # The tables are created with the images (metadata.SCHEMA): one file,
        # created whole.
        super().__init__(
            path,
            "leases",
            SCHEMA,
            PRAGMAS,
            version=SCHEMA_VERSION,
            tables=("ns_leases", "ns_lease_resources"),
        )
        self._migrate()

    def _migrate(self) -> None:
        """Leases of a version without namespaces (table ``leases``) move to
        the default namespace, where our own client and ctr's default put
        them."""
        with self._errors("leases"), self._read() as db:
            old = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'"
            ).fetchone()
            held = old and db.execute("SELECT 1 FROM lease_resources LIMIT 1").fetchone()
        if not old:
            return
        try:
            self._move_old_leases()
        except NoSpace:
            # A full disk: old tables that hold nothing can wait for a disk
            # with room; leases that hold content must not be overlooked.
            if held:
                raise

    def _move_old_leases(self) -> None:
        with self._errors("leases"), self._tx() as db:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'"
            ).fetchone():
                return  # another process migrated first
            db.execute(
                "INSERT OR IGNORE INTO ns_leases SELECT ?, id, created_at, labels_json FROM leases",
                (DEFAULT_NAMESPACE,),
            )
            db.execute(
                "INSERT OR IGNORE INTO ns_lease_resources "
                "SELECT ?, lease, type, id FROM lease_resources",
                (DEFAULT_NAMESPACE,),
            )
            db.execute("DROP TABLE lease_resources")
            db.execute("DROP TABLE leases")

    def create(
        self, namespace: str, lease_id: str = "", labels: Mapping[str, str] | None = None
    ) -> Lease:
        check_namespace(namespace)
        self._drop_expired(namespace)
        lease = Lease(lease_id or f"dist-{uuid.uuid4().hex}", time.time(), dict(labels or {}))
        with self._errors(f"lease {lease.id}"), self._tx() as db:
            if _exists(db, namespace, lease.id):
                raise AlreadyExists(f"lease {lease.id!r}: already exists")
            db.execute(
                "INSERT INTO ns_leases VALUES (?, ?, ?, ?)",
                (
                    namespace,
                    lease.id,
                    lease.created_at,
                    json.dumps(dict(lease.labels), sort_keys=True),
                ),
            )
        return lease

    def delete(self, namespace: str, lease_id: str) -> None:
        """Remove the lease; a deletion, so it works on a full disk too."""
        check_namespace(namespace)

        def delete(db: sqlite3.Connection) -> None:
            deleted = db.execute(
                "DELETE FROM ns_leases WHERE namespace = ? AND id = ?", (namespace, lease_id)
            ).rowcount
            if deleted == 0:
                raise NotFound(f"lease {lease_id!r}: not found")

        with self._errors(f"lease {lease_id}"):
            self._freeing(delete)

    def list_leases(self, namespace: str) -> list[Lease]:
        check_namespace(namespace)
        self._drop_expired(namespace)
        return [lease for ns, lease in self._all() if ns == namespace]

    def namespaces(self) -> list[str]:
        """The namespaces that hold leases."""
        with self._errors("leases"), self._read() as db:
            rows = db.execute("SELECT DISTINCT namespace FROM ns_leases").fetchall()
        return sorted(str(r[0]) for r in rows)

    def _all(self) -> list[tuple[str, Lease]]:
        with self._errors("leases"), self._read() as db:
            rows = db.execute("SELECT * FROM ns_leases ORDER BY namespace, id").fetchall()
        return [(r[0], Lease(r[1], float(r[2]), json.loads(r[3] or "{}"))) for r in rows]

    def _drop_expired(self, namespace: str) -> None:
        now = time.time()
        for ns, lease in self._all():
            if ns == namespace and lease.expired(now):
                # NotFound: another process dropped it first.
                with contextlib.suppress(NotFound):
                    self.delete(ns, lease.id)

    def add_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        check_namespace(namespace)
        with self._errors(f"lease {lease_id}"), self._tx() as db:
            _require(db, namespace, lease_id)
            resource = check_resource(resource)
            db.execute(
                "INSERT OR IGNORE INTO ns_lease_resources VALUES (?, ?, ?, ?)",
                (namespace, lease_id, resource.type, resource.id),
            )

    def delete_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        check_namespace(namespace)
        with self._errors(f"lease {lease_id}"), self._tx() as db:
            _require(db, namespace, lease_id)
            resource = check_resource(resource)
            db.execute(
                "DELETE FROM ns_lease_resources "
                "WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                (namespace, lease_id, resource.type, resource.id),
            )

    def resources(self, namespace: str, lease_id: str) -> list[Resource]:
        """In containerd's order: content, then ingests, then snapshots."""
        check_namespace(namespace)
        with self._errors(f"lease {lease_id}"), self._read() as db:
            _require(db, namespace, lease_id)
            rows = db.execute(
                "SELECT id, type FROM ns_lease_resources WHERE namespace = ? AND lease = ? "
                "ORDER BY type, id",
                (namespace, lease_id),
            ).fetchall()
        return [Resource(r[0], r[1]) for r in rows]

    def protected(self) -> set[Digest]:
        """Digests of the content that leases alive now hold, in any namespace."""
        now = time.time()
        live = {(ns, lease.id) for ns, lease in self._all() if not lease.expired(now)}
        with self._errors("leases"), self._read() as db:
            rows = db.execute(
                "SELECT namespace, lease, id FROM ns_lease_resources WHERE type = ?", (CONTENT,)
            ).fetchall()
        out = set()
        for namespace, lease_id, text in rows:
            if (namespace, lease_id) in live:
                try:
                    out.add(Digest.parse(text))
                except DistError:
                    continue  # not a digest: nothing in the store to keep
        return out


def _exists(db: sqlite3.Connection, namespace: str, lease_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM ns_leases WHERE namespace = ? AND id = ?", (namespace, lease_id)
    ).fetchone()
    return row is not None


def _require(db: sqlite3.Connection, namespace: str, lease_id: str) -> None:
    if not _exists(db, namespace, lease_id):
        raise NotFound(f"lease {lease_id!r}: not found")
