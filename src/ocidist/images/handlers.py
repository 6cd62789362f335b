"""Handlers for walking images: fetch one descriptor into a store, name its children.

The parent's blob gets containerd-style ``containerd.io/gc.ref.content.*``
labels for exactly the children that were kept (after platform filtering), so
garbage collection keeps what a pull brought in and nothing it skipped. Every
fetched blob records where it came from (``containerd.io/distribution.source.
<registry>=<repository>``), which later lets a push mount instead of upload.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence

from ocidist.content import Store, ingest_key_for
from ocidist.content.copy import ingest
from ocidist.descriptor import DISTRIBUTION_SOURCE, Descriptor, is_index, is_manifest
from ocidist.digest import Digest
from ocidist.errors import DigestMismatch, Unavailable
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
    which are also the ones its gc labels name.

    ``commit_behind``: a manifest or index is verified against its digest
    and its children returned at once, while another thread commits it
    (fsyncs included, 2-5 ms on a virtual disk, each on the critical path
    of a far registry's chain of round trips: it then overlaps the
    children's requests). Until ``settle`` has returned, the caller reads
    such objects with ``held``, not from the store, and must call
    ``settle`` before it relies on the store having them (before it names
    an image, say): it raises the first commit that failed."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        children: Children = manifest_children,
        *,
        progress: Progress | None = None,
        source: tuple[str, str] | None = None,
        commit_behind: bool = False,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.children = children
        self.progress = progress or NullProgress()
        self._source: Mapping[str, str] = {SOURCE_LABEL + source[0]: source[1]} if source else {}
        self.fetched: list[Descriptor] = []
        self.skipped: list[Descriptor] = []
        self._behind = _Committer() if commit_behind else None

    def held(self, desc: Descriptor) -> bytes:
        """The manifest or index ``desc``: the bytes of a commit still going
        (``commit_behind``), else from the store (``read_manifest``)."""
        if self._behind is not None:
            data = self._behind.get(desc.digest)
            if data is not None:
                return data
            # Not held: committed, or its commit failed, which is then the
            # error (the store would say "not found").
            self._behind.check()
        return read_manifest(self.store, desc)

    def settle(self) -> None:
        """Wait for the commits still going (``commit_behind``); raise the
        first that failed."""
        if self._behind is not None:
            self._behind.settle()

    def drain(self) -> None:
        """Wait for the commits still going (``commit_behind``), failed or
        not, raising nothing: a failed unpack leaves none of them writing
        into the store (``dist`` leaves with ``os._exit``, which cut one
        short: a temporary file left in ingest)."""
        if self._behind is not None:
            self._behind.drain()

    def __call__(self, desc: Descriptor) -> list[Descriptor]:
        graph = is_index(desc.media_type) or is_manifest(desc.media_type)
        pending = self._behind.get(desc.digest) if self._behind is not None else None
        if pending is not None:  # seen twice; its commit is still going
            return self.children(desc, pending) if graph else []
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
        if graph:
            # Registry bytes are parsed only once they are what was asked
            # for, and nothing they name is fetched before (with
            # commit_behind, ``put``'s own check comes later, in the
            # committer; a manifest is small, hashing it twice is nothing).
            got = Digest.from_bytes(data, desc.digest.algorithm)
            if got != desc.digest:
                raise DigestMismatch(f"{desc.digest}: digest mismatch: got {got}")
        children = self.children(desc, data) if graph else []
        labels = {**self._source, **child_labels(desc, children)}
        if graph and self._behind is not None:
            self._behind.submit(desc.digest, data, lambda: self._commit(desc, data, labels))
        else:
            self._commit(desc, data, labels)
        return children

    def _commit(self, desc: Descriptor, data: bytes, labels: Mapping[str, str]) -> None:
        if self.store.put(data, desc.digest, labels):
            self.fetched.append(desc)
            self.progress.done(desc, "fetched")
        else:
            self._skip(desc, labels)  # committed meanwhile by another writer

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


class _Committer:
    """One thread committing, in order, what a walk has verified and moved
    past (``FetchHandler``'s ``commit_behind``); what it holds stays
    readable until it is in the store."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[Digest, bytes] = {}
        self._jobs: queue.SimpleQueue[tuple[Digest, Callable[[], None]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def get(self, dgst: Digest) -> bytes | None:
        with self._cond:
            return self._held.get(dgst)

    def submit(self, dgst: Digest, data: bytes, commit: Callable[[], None]) -> None:
        with self._cond:
            # Started under the lock, so that no other submit queues a job
            # for a thread that then fails to start (the new thread takes
            # the lock only once it has a job).
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="commit", daemon=True)
                try:
                    thread.start()
                    self._thread = thread
                except RuntimeError:  # "can't start new thread"
                    pass
            inline = self._thread is None
            if not inline:
                self._held[dgst] = data
        if inline:
            commit()  # here, as without commit_behind (a later submit tries again)
            return
        self._jobs.put((dgst, commit))

    def settle(self) -> None:
        with self._cond:
            while self._held and self._failure is None:
                self._cond.wait()
            if self._failure is not None:
                raise self._failure

    def check(self) -> None:
        """Raise the first commit that failed, if any has."""
        with self._cond:
            if self._failure is not None:
                raise self._failure

    def drain(self) -> None:
        with self._cond:
            while self._held:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            dgst, commit = self._jobs.get()
            try:
                commit()
            except BaseException as e:  # settle raises it in the walk's thread
                with self._cond:
                    self._failure = self._failure or e
            with self._cond:
                del self._held[dgst]
                self._cond.notify_all()
