"""Content store contracts: Provider (read), Ingester (write), Store (both + manage).

Writers are shared by store ingest and remote push (DESIGN.md): bytes go in
with ``write``; ``commit`` verifies size and digest and publishes atomically;
``close`` without commit leaves the transaction resumable under its key. A
store's commit that finds the wrong size or digest keeps the bytes under the
key, as containerd's store does (``content.copy.ingest`` drops them, so a
retried fetch starts clean).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.content.rangefile import RangeFile


def ingest_key_for(desc: Descriptor) -> str:
    """The ingest key for fetching ``desc`` into a store.

    Keyed by digest alone, so two processes fetching the same blob (for
    different images even) share one transaction: one writes, the other waits
    and then finds the content committed.
    """
    return f"fetch-{desc.digest}"


class Info(Value):
    """What the store knows about one committed blob."""

    __slots__ = ("digest", "size", "created_at", "updated_at", "labels")
    _no_hash = ("labels",)
    digest: Digest
    size: int
    created_at: float
    updated_at: float
    labels: Mapping[str, str]

    def __init__(
        self,
        digest: Digest,
        size: int,
        created_at: float,
        updated_at: float,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        object.__setattr__(self, "digest", digest)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "created_at", created_at)
        object.__setattr__(self, "updated_at", updated_at)
        object.__setattr__(self, "labels", {} if labels is None else labels)


class Status(Value):
    """Progress of one ingest transaction."""

    __slots__ = ("key", "offset", "total", "expected", "started_at", "updated_at")
    key: str
    offset: int
    total: int  # expected size, or -1 when unknown
    expected: Digest | None
    started_at: float
    updated_at: float

    def __init__(
        self,
        key: str,
        offset: int,
        total: int,
        expected: Digest | None,
        started_at: float,
        updated_at: float,
    ) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "expected", expected)
        object.__setattr__(self, "started_at", started_at)
        object.__setattr__(self, "updated_at", updated_at)


class Writer(Protocol):
    def write(self, data: bytes | memoryview) -> int: ...
    def status(self) -> Status: ...
    def digest(self) -> Digest: ...  # of the bytes written so far
    def commit(
        self, size: int, expected: Digest, labels: Mapping[str, str] | None = None
    ) -> None: ...
    def truncate(self, size: int) -> None: ...  # only 0 needs to be supported
    def close(self) -> None: ...


@runtime_checkable
class RangedWriter(Writer, Protocol):
    """A writer that can also take bytes at offsets (a local store's ingest:
    content/ingest.py), so a big blob can come as parallel ranges
    (content/parallel.py). Optional: ``isinstance`` tells."""

    def ranged(self) -> RangeFile: ...
    def adopt(self, rf: RangeFile) -> None: ...
    def leave_ranges(self, rf: RangeFile) -> None: ...


class Provider(Protocol):
    def reader(self, dgst: Digest) -> BinaryIO: ...
    def info(self, dgst: Digest) -> Info: ...


class Ingester(Protocol):
    def writer(
        self,
        key: str,
        *,
        total: int = -1,
        expected: Digest | None = None,
        wait: bool = True,
    ) -> Writer: ...


WalkFilter = Callable[[Info], bool]


class Store(Provider, Ingester, Protocol):
    def exists(self, dgst: Digest) -> bool: ...
    def walk(self, filter: WalkFilter | None = None) -> Iterator[Info]: ...
    def delete(self, dgst: Digest) -> None: ...
    def update(self, dgst: Digest, labels: Mapping[str, str], *, replace: bool = False) -> Info: ...
    def status(self, key: str) -> Status: ...
    def list_statuses(self) -> list[Status]: ...
    def abort(self, key: str) -> None: ...
    def put(self, data: bytes, expected: Digest, labels: Mapping[str, str] | None = None) -> bool:
        """Commit a whole object held in memory as ``expected`` (with
        ``labels``); False when the store had it already. DigestMismatch,
        committing nothing, when ``data`` is not ``expected``. A local store
        does it in one step; a daemon's through an ingest."""
        ...


def verify(provider: Provider, dgst: Digest) -> bool:
    """Re-hash a stored blob: True when its bytes still match its name."""
    hasher = dgst.hasher()
    with provider.reader(dgst) as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return bool(hasher.hexdigest() == dgst.encoded)
