"""Copying an image from one repository or registry to another.

Bytes stream straight through: each blob's fetcher stream is copied into a
pusher writer, never held whole (``via_store`` fetches into a local store
first, then pushes from there — useful to keep a copy, or to copy between
networks in two steps). Between repositories of the same registry blobs are
mounted, not sent. Manifests are copied as the bytes the source serves, never
re-serialised, so every digest is the same on both sides.

Platform filtering: an index can only be copied unchanged, i.e. with every
platform. With a platform chosen, the best-matching platform *manifest* of
the index becomes the copied image and gets the destination tag (what
``crane copy --platform`` does); its digest is the one the source index lists.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import BinaryIO, cast

from ocidist import reference
from ocidist.content import Store, ingest_key_for
from ocidist.content.copy import ingest
from ocidist.descriptor import DISTRIBUTION_SOURCE, Descriptor
from ocidist.errors import NotFound
from ocidist.images.plan import plan, remote_platform
from ocidist.images.platforms import MatchComparer
from ocidist.images.scheduler import CancellingProgress, Scheduler
from ocidist.images.walk import fetch_manifest
from ocidist.progress import Progress
from ocidist.pull import default_concurrency
from ocidist.push import (
    PushResult,
    add_manifest_jobs,
    blob_key,
    is_foreign,
    push_ref,
    target_tag,
    upload_blob,
    with_sources,
)
from ocidist.remotes import Resolver

OpenAt = Callable[[int], BinaryIO]


class CopyResult(PushResult):
    def __init__(self, name: str, target: Descriptor, *, source: str = "") -> None:
        super().__init__(name, target)
        self.source = source
        self.fetched: list[Descriptor] = []


def copy_image(
    resolver: Resolver,
    src_ref: str,
    dst_ref: str,
    *,
    matcher: MatchComparer | None = None,
    via_store: Store | None = None,
    concurrency: int = 0,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy ``src_ref`` to ``dst_ref``. ``matcher`` None copies every platform
    (an index unchanged); otherwise see the module docstring."""
    src_name, root = resolver.resolve(src_ref)
    src = reference.parse(src_name)
    dst = reference.parse(dst_ref)
    fetcher = resolver.fetcher(src_name)

    def read(desc: Descriptor) -> bytes:
        return fetch_manifest(fetcher, desc)

    if matcher is not None:
        root = remote_platform(read, root, matcher)
    tag = target_tag(dst, root)
    todo = plan(read, root)
    pusher = resolver.pusher(push_ref(dst, root, tag))
    result = CopyResult(dst.name, root, source=src_name)
    sched = Scheduler(concurrency or default_concurrency(), name="copy")
    # A failed copy returns while transfers may still run: they stop at
    # their next chunk (dist serve, a client program go on after it).
    prog: Progress = CancellingProgress(progress, sched, "transfer stopped: the copy failed")
    # Where each blob comes from: a pusher to the same registry mounts it.
    source_label = {DISTRIBUTION_SOURCE + src.domain: src.path}

    def copy_blob(desc: Descriptor) -> None:
        def from_registry(offset: int) -> BinaryIO:
            return cast(BinaryIO, fetcher.fetch(desc, offset))

        open_at: OpenAt = from_registry
        if via_store is not None:
            # Fetched into the store (verified there: its writer hashes what
            # it takes, so the stream is not hashed as well), then pushed from it.
            if ingest(
                via_store,
                ingest_key_for(desc),
                lambda offset: cast(BinaryIO, fetcher.fetch(desc, offset, verify=False)),
                desc.size,
                desc.digest,
                labels=source_label,
            ):
                result.fetched.append(desc)
            open_at = _store_open_at(via_store, desc)
        try:
            status = upload_blob(pusher, with_sources(desc, source_label), open_at, progress=prog)
        except NotFound:
            if is_foreign(desc):
                status = "exists"  # a foreign layer the source does not serve either
            else:
                raise
        result.record(desc, status)

    for key, desc in todo.blobs.items():
        sched.add(blob_key(key), partial(copy_blob, desc), (), (2, -desc.size))
    if via_store is not None:
        for desc, data in todo.manifests:
            via_store.put(data, desc.digest, source_label)
    add_manifest_jobs(sched, pusher, todo, root, result, prog)
    sched.run()
    return result


def _store_open_at(store: Store, desc: Descriptor) -> OpenAt:
    def open_at(offset: int) -> BinaryIO:
        f = store.reader(desc.digest)
        if offset:
            f.seek(offset)
        return f

    return open_at
