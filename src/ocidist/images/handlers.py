"""Handlers for walking images: fetch one descriptor into a store, name its children.

The parent's blob gets containerd-style ``containerd.io/gc.ref.content.*``
labels for exactly the children that were kept (after platform filtering), so
garbage collection keeps what a pull brought in and nothing it skipped. Every
fetched blob records where it came from (``containerd.io/distribution.source.
<registry>=<repository>``), which later lets a push mount instead of upload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ocidist.content import Store, ingest_key_for
from ocidist.content.copy import ingest
from ocidist.descriptor import DISTRIBUTION_SOURCE, Descriptor, is_index, is_manifest
from ocidist.errors import Unavailable
from ocidist.images.walk import Children, manifest_children, read_manifest
from ocidist.progress import NullProgress, Progress
from ocidist.remotes import Fetcher, RangeFetcher
from ocidist.stream import Readable, read_exactly

GC_REF = "containerd.io/gc.ref.content"
SOURCE_LABEL = DISTRIBUTION_SOURCE
# Blobs up to this size are fetched into memory and committed in one step;
# resuming them after an interruption would save next to nothing.
SMALL = 1 << 20


def child_labels(desc: Descriptor, children: Sequence[Descriptor]) -> dict[str, str]:
    if is_index(desc.media_type):
        return {f"{GC_REF}.m.{i}": str(c.digest) for i, c in enumerate(children)}
    if is_manifest(desc.media_type) and children:
        labels = {f"{GC_REF}.config": str(children[0].digest)}
        labels.update({f"{GC_REF}.l.{i}": str(c.digest) for i, c in enumerate(children[1:])})
        return labels
    return {}


class FetchHandler:
    """A walk handler: fetch ``desc`` into ``store`` unless present; return
    the children that ``children`` keeps (``walk.platform_children``, say),
    which are also the ones its gc labels name."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        children: Children = manifest_children,
        *,
        progress: Progress | None = None,
        source: tuple[str, str] | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.children = children
        self.progress = progress or NullProgress()
        self._source: Mapping[str, str] = {SOURCE_LABEL + source[0]: source[1]} if source else {}
        self.fetched: list[Descriptor] = []
        self.skipped: list[Descriptor] = []

    def __call__(self, desc: Descriptor) -> list[Descriptor]:
        graph = is_index(desc.media_type) or is_manifest(desc.media_type)
        if self.store.exists(desc.digest):
            if not graph:
                self._skip(desc, self._source)
                return []
            children = self.children(desc, read_manifest(self.store, desc))
            self._skip(desc, {**self._source, **child_labels(desc, children)})  # one update
            return children
        if not graph and desc.size > SMALL:
            self._ingest(desc)
            return []
        # Manifests and small blobs: into memory, then committed with every
        # label in one step (no ingest transaction, no label update after).
        data = self._download(desc)
        children = self.children(desc, data) if graph else []
        labels = {**self._source, **child_labels(desc, children)}
        if self.store.put(data, desc.digest, labels):
            self.fetched.append(desc)
            self.progress.done(desc, "fetched")
        else:
            self._skip(desc, labels)  # committed meanwhile by another writer
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
            return read_exactly(src, desc.size, lambda held: self.progress.update(desc, held))
        except Unavailable as e:
            raise Unavailable(f"{desc.digest}: {e}") from e
        finally:
            src.close()

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

        # A registry fetcher can serve ranges: a big blob then comes in parallel.
        ranges = self.fetcher.ranges(desc) if isinstance(self.fetcher, RangeFetcher) else None
        fetched = ingest(
            self.store,
            ingest_key_for(desc),
            open_at,
            desc.size,
            desc.digest,
            labels=self._source,
            progress=progress,
            ranges=ranges,
            tuning=ranges.tuning if ranges is not None else None,
        )
        if fetched:
            self.fetched.append(desc)
            self.progress.done(desc, "fetched")
        else:
            self._skip(desc, self._source)
