"""Handlers for walking images: fetch one descriptor into a store, name its children.

The parent's blob gets containerd-style ``containerd.io/gc.ref.content.*``
labels for exactly the children that were kept (after platform filtering), so
garbage collection keeps what a pull brought in and nothing it skipped. Every
fetched blob records where it came from (``containerd.io/distribution.source.
<registry>=<repository>``), which later lets a push mount instead of upload.
"""

from __future__ import annotations

from collections.abc import Mapping

from ocidist import manifest
from ocidist.content import Store, ingest_key_for
from ocidist.content.copy import ingest, put_bytes
from ocidist.descriptor import MAX_MANIFEST_SIZE, Descriptor, is_index, is_manifest
from ocidist.errors import InvalidContent, Unavailable
from ocidist.images.platforms import MatchComparer, select
from ocidist.progress import NullProgress, Progress
from ocidist.remotes import Fetcher
from ocidist.stream import Readable, read_exactly

GC_REF = "containerd.io/gc.ref.content"
SOURCE_LABEL = "containerd.io/distribution.source."
# Blobs up to this size are fetched into memory and committed in one step;
# resuming them after an interruption would save next to nothing.
SMALL = 1 << 20
# Bound the graph a hostile index can make us walk.
MAX_CHILDREN = 10_000
# Index inside index is legal and real images use a level or two; a registry
# serving a chain of 200 distinct indexes would otherwise be walked to the end.
MAX_INDEX_DEPTH = 8


def read_manifest(store: Store, desc: Descriptor) -> bytes:
    if desc.size > MAX_MANIFEST_SIZE:
        raise InvalidContent(f"{desc.digest}: manifest of {desc.size} bytes is too large")
    with store.reader(desc.digest) as f:
        return f.read(MAX_MANIFEST_SIZE + 1)


def child_labels(desc: Descriptor, children: list[Descriptor]) -> dict[str, str]:
    if is_index(desc.media_type):
        return {f"{GC_REF}.m.{i}": str(c.digest) for i, c in enumerate(children)}
    if is_manifest(desc.media_type) and children:
        labels = {f"{GC_REF}.config": str(children[0].digest)}
        labels.update({f"{GC_REF}.l.{i}": str(c.digest) for i, c in enumerate(children[1:])})
        return labels
    return {}


class FetchHandler:
    """Fetch ``desc`` into ``store`` unless present; return its kept children."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        matcher: MatchComparer,
        *,
        limit: int = 0,
        progress: Progress | None = None,
        source: tuple[str, str] | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.matcher = matcher
        self.limit = limit  # keep at most this many platform manifests per index (0: all)
        self.progress = progress or NullProgress()
        self._source: Mapping[str, str] = {SOURCE_LABEL + source[0]: source[1]} if source else {}
        self.fetched: list[Descriptor] = []
        self.skipped: list[Descriptor] = []
        self._depth: dict[str, int] = {}  # digest -> indexes above it (roots: 0)

    def __call__(self, desc: Descriptor) -> list[Descriptor]:
        depth = self._depth.get(str(desc.digest), 0) + is_index(desc.media_type)
        if depth > MAX_INDEX_DEPTH:
            raise InvalidContent(f"{desc.digest}: indexes nested deeper than {MAX_INDEX_DEPTH}")
        graph = is_index(desc.media_type) or is_manifest(desc.media_type)
        if self.store.exists(desc.digest):
            if not graph:
                self._skip(desc, self._source)
                return []
            children = self._children(desc, read_manifest(self.store, desc), depth)
            self._skip(desc, {**self._source, **child_labels(desc, children)})  # one update
            return children
        if not graph and desc.size > SMALL:
            self._ingest(desc)
            return []
        # Manifests and small blobs: into memory, then committed with every
        # label in one step (no ingest transaction, no label update after).
        data = self._download(desc)
        children = self._children(desc, data, depth) if graph else []
        labels = {**self._source, **child_labels(desc, children)}
        if put_bytes(self.store, ingest_key_for(desc), data, desc.digest, labels=labels):
            self.fetched.append(desc)
            self.progress.done(desc, "fetched")
        else:
            self._skip(desc, labels)  # committed meanwhile by another writer
        return children

    def _children(self, desc: Descriptor, data: bytes, depth: int) -> list[Descriptor]:
        children = manifest.children(desc, data)
        if is_index(desc.media_type):
            children = select(children, self.matcher)
            if self.limit:
                children = children[: self.limit]
        if len(children) > MAX_CHILDREN:
            raise InvalidContent(f"{desc.digest}: {len(children)} children is too many")
        for c in children:
            self._depth.setdefault(str(c.digest), depth)
        return children

    def _skip(self, desc: Descriptor, labels: Mapping[str, str]) -> None:
        if labels:
            self.store.update(desc.digest, labels)
        self.skipped.append(desc)
        self.progress.done(desc, "exists")

    def _download(self, desc: Descriptor) -> bytes:
        """The whole object (the store's put checks its digest)."""
        self.progress.start(desc, 0)
        if desc.size == 0:
            return b""  # nothing to ask for (the empty blob's digest is checked by put)
        src = self.fetcher.fetch(desc, 0, verify=False)
        try:
            data = read_exactly(src, desc.size)
        except Unavailable as e:
            raise Unavailable(f"{desc.digest}: {e}") from e
        finally:
            src.close()
        self.progress.update(desc, desc.size)
        return data

    def _ingest(self, desc: Descriptor) -> None:
        started = False

        def progress(held: int) -> None:
            nonlocal started
            if not started:
                started = True
                self.progress.start(desc, held)
            self.progress.update(desc, held)

        def open_at(offset: int) -> Readable:
            # The store writer hashes what it takes and its commit refuses a
            # wrong digest or size, so the stream need not be hashed as well.
            return self.fetcher.fetch(desc, offset, verify=False)

        fetched = ingest(
            self.store,
            ingest_key_for(desc),
            open_at,
            desc.size,
            desc.digest,
            labels=self._source,
            progress=progress,
        )
        if fetched:
            self.fetched.append(desc)
            self.progress.done(desc, "fetched")
        else:
            self._skip(desc, self._source)
