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
from typing import BinaryIO, cast

from ocidist import manifest, reference
from ocidist.content import ingest_key_for
from ocidist.content.copy import ingest, put_bytes
from ocidist.content.local import LocalStore
from ocidist.descriptor import MAX_MANIFEST_SIZE, Descriptor, is_index, is_manifest
from ocidist.errors import InvalidContent, NotFound
from ocidist.images.handlers import SOURCE_LABEL
from ocidist.images.platforms import MatchComparer, select
from ocidist.images.walk import walk
from ocidist.progress import NullProgress, Progress
from ocidist.pull import default_concurrency
from ocidist.push import Plan, PushResult, is_foreign, push_manifests, target_tag, upload_blob
from ocidist.remotes.docker.fetcher import DockerFetcher
from ocidist.remotes.docker.pusher import PushOptions
from ocidist.remotes.docker.resolver import DockerResolver

OpenAt = Callable[[int], BinaryIO]


class CopyResult(PushResult):
    def __init__(self, name: str, target: Descriptor, *, source: str = "") -> None:
        super().__init__(name, target)
        self.source = source
        self.fetched: list[Descriptor] = []


def copy_image(
    resolver: DockerResolver,
    src_ref: str,
    dst_ref: str,
    *,
    matcher: MatchComparer | None = None,
    via_store: LocalStore | None = None,
    concurrency: int = 0,
    progress: Progress | None = None,
    options: PushOptions | None = None,
) -> CopyResult:
    """Copy ``src_ref`` to ``dst_ref``. ``matcher`` None copies every platform
    (an index unchanged); otherwise see the module docstring."""
    src_name, root = resolver.resolve(src_ref)
    src = reference.parse(src_name)
    dst = reference.parse(dst_ref)
    fetcher = resolver.fetcher(src_name)
    if matcher is not None:
        root = _pick_platform(fetcher, root, matcher, src_name)
    tag = target_tag(dst, root)
    plan = Plan()
    _walk(fetcher, root, plan, set())
    pusher = resolver.pusher(dst.name, options)
    result = CopyResult(dst.name, root, source=src_name)
    prog = progress or NullProgress()
    same_registry = src.domain == dst.domain
    mount = [src.path] if same_registry and src.path != dst.path else []
    source_label = {SOURCE_LABEL + src.domain: src.path}

    def copy_blob(desc: Descriptor) -> list[Descriptor]:
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
            status = upload_blob(pusher, desc, open_at, mount_from=mount, progress=prog)
        except NotFound:
            if is_foreign(desc):
                status = "exists"  # a foreign layer the source does not serve either
            else:
                raise
        result.record(desc, status)
        return []

    walk(copy_blob, plan.blobs.values(), concurrency=concurrency or default_concurrency())
    if via_store is not None:
        for desc, data in plan.manifests:
            _keep_manifest(via_store, desc, data, source_label)
    push_manifests(pusher, plan.manifests, root, tag, result, prog)
    return result


def _read(fetcher: DockerFetcher, desc: Descriptor) -> bytes:
    if desc.size > MAX_MANIFEST_SIZE:
        raise InvalidContent(f"{desc.digest}: manifest of {desc.size} bytes is too large")
    stream = fetcher.fetch(desc)  # verified: the last read raises on a mismatch
    try:
        return stream.read()
    finally:
        stream.close()


def _pick_platform(
    fetcher: DockerFetcher, root: Descriptor, matcher: MatchComparer, what: str
) -> Descriptor:
    if not is_index(root.media_type):
        return root
    kids = select(manifest.children(root, _read(fetcher, root)), matcher)
    if not kids:
        raise NotFound(f"{what}: no manifest for the requested platform")
    return _pick_platform(fetcher, kids[0], matcher, what)


def _walk(fetcher: DockerFetcher, desc: Descriptor, plan: Plan, seen: set[str]) -> None:
    if str(desc.digest) in seen:
        return
    seen.add(str(desc.digest))
    data = _read(fetcher, desc)
    for k in manifest.children(desc, data):
        if is_index(k.media_type) or is_manifest(k.media_type):
            _walk(fetcher, k, plan, seen)
        else:
            plan.blobs.setdefault(str(k.digest), k)
    plan.manifests.append((desc, data))


def _store_open_at(store: LocalStore, desc: Descriptor) -> OpenAt:
    def open_at(offset: int) -> BinaryIO:
        f = store.reader(desc.digest)
        if offset:
            f.seek(offset)
        return f

    return open_at


def _keep_manifest(
    store: LocalStore, desc: Descriptor, data: bytes, labels: dict[str, str]
) -> None:
    put_bytes(store, ingest_key_for(desc), data, desc.digest, labels=labels)
