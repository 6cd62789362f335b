"""`dist copy SRC DST` between any two transports (see ``sources``).

Registry to registry streams blob by blob (``copy.copy_image``). Every other
pair goes through a content store: the source's objects are fetched into it
by the image walker (``FetchHandler`` over the source's ``Fetcher``), where
each is verified by the store writer that takes it, and the destination is
written from there by the same code as ``push``, ``export`` and
``export --format docker``, which check the bytes once more as they read
them. The content store is the user's when one side is ``store:``;
otherwise a temporary one (the caller's ``staging``), removed afterwards,
next to a file destination.

A docker-archive copied to a registry has its plain layers gzip'd first
(``images.compress``), as skopeo does; other destinations keep them plain.

As for registries, ``--platform`` makes the best-matching platform
manifest of an index the copied image; without it, every platform is
copied (an index keeps its digest where the destination format can hold
one: registries and OCI layouts; a docker-archive holds one image).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ocidist import reference
from ocidist.descriptor import Descriptor, is_index
from ocidist.errors import InvalidArgument, InvalidReference
from ocidist.sources import Source, open_source, split_path, split_transport

if TYPE_CHECKING:
    from ocidist.content import Store
    from ocidist.images.platforms import MatchComparer
    from ocidist.metadata import Metadata
    from ocidist.progress import Progress
    from ocidist.remotes import Resolver

    Staging = Callable[[str | None], AbstractContextManager[tuple[Store, Metadata]]]

# The name an image goes by in a temporary store when its source has none.
ANONYMOUS = "localhost/ocidist/copy:latest"


class Copied:
    def __init__(self, source: str, name: str, target: Descriptor, dest: str) -> None:
        self.source = source  # the source's name
        self.name = name  # the destination as the user named it (a registry: canonical)
        self.target = target
        self.dest = dest
        self.written: list[Descriptor] = []  # objects the destination received
        self.existing: list[Descriptor] = []  # objects it had already


class Services:
    """What a copy may need, opened only when it does (as the CLI context).
    ``staging(near)`` gives a temporary content and metadata store (in the
    directory ``near`` when given), removed when the context ends."""

    def __init__(
        self,
        resolver: Callable[[], Resolver],
        store: Callable[[], Store],
        metadata: Callable[[], Metadata],
        staging: Staging,
    ) -> None:
        self.resolver = resolver
        self.store = store
        self.metadata = metadata
        self.staging = staging


def copy_any(
    services: Services,
    src: str,
    dst: str,
    *,
    matcher: MatchComparer | None = None,
    concurrency: int = 0,
    progress: Progress | None = None,
) -> Copied:
    """Copy the image ``src`` names to ``dst`` (neither both registries)."""
    dst_kind, dst_rest = split_transport(dst)
    _check_destination(dst_kind, dst_rest)
    with open_source(
        src, resolver=services.resolver, store=services.store, metadata=services.metadata
    ) as source:
        root = _pick(source, matcher)
        # Names for the writers live in a metadata store of the copy's own;
        # content goes through the user's store when one side is the store.
        user_store = dst_kind == "store" or source.transport == "store"
        with services.staging(_near(dst_kind, dst_rest)) as (store, metadata):
            if user_store:
                store = services.store()
            return _via(store, metadata, source, root, dst, services, concurrency, progress)


def _near(kind: str, rest: str) -> str | None:
    """Where a staging store goes: beside a file or directory destination."""
    if kind not in ("oci", "oci-archive", "docker-archive"):
        return None
    path = os.path.abspath(split_path(rest)[0])
    return path if kind == "oci" and os.path.isdir(path) else os.path.dirname(path)


def _check_destination(kind: str, rest: str) -> None:
    if kind in ("oci", "oci-archive", "docker-archive"):
        split_path(rest)
    elif kind == "store":
        reference.parse(rest)


def _pick(source: Source, matcher: MatchComparer | None) -> Descriptor:
    """The root to copy: with a platform, the manifest the walker picks."""
    if matcher is None or not is_index(source.root.media_type):
        return source.root
    # A store or layout may hold only some of the index's platforms.
    return source.platform(source.root, matcher, source.read)


def _staged_name(source: Source, root: Descriptor) -> str:
    """A reference to file the image under in the staging store."""
    if not source.ref:
        return ANONYMOUS
    try:
        r = reference.parse(source.ref, default_tag="")
    except InvalidReference:
        return ANONYMOUS
    if root != source.root:  # a platform of an index: by its own digest
        return r.with_digest(root.digest).replace(tag=None).name
    return r.name if (r.tag or r.digest) else r.with_tag("latest").name


def _via(
    store: Store,
    metadata: Metadata,
    source: Source,
    root: Descriptor,
    dst: str,
    services: Services,
    concurrency: int,
    progress: Progress | None,
) -> Copied:
    from ocidist.images.handlers import FetchHandler
    from ocidist.images.scheduler import CancellingProgress, Scheduler
    from ocidist.images.walk import walk
    from ocidist.pull import default_concurrency

    sched = Scheduler(concurrency or default_concurrency(), name="walk")
    # A failed fetch returns while transfers may still run; they stop at
    # their next chunk instead of writing on into a staging store that is
    # being removed.
    cancelling = CancellingProgress(progress, sched, "transfer stopped: the copy failed")
    handler = FetchHandler(store, source.fetcher, progress=cancelling)
    walk(handler, [root], scheduler=sched)
    kind = split_transport(dst)[0]
    if kind == "store" and source.transport == "store":
        # Nothing is fetched or written (the objects are there already), so
        # the check every other pair gets from a writer is made here.
        _verify(store, handler.skipped)
    if kind == "docker" and source.transport == "docker-archive":
        # skopeo compresses a docker-archive's plain layers for a registry
        # (and keeps them plain for a layout or an archive): so do we.
        from ocidist.images.compress import compressed

        root = compressed(store, root, concurrency=concurrency or default_concurrency())
    staged = _staged_name(source, root)
    metadata.put_image(staged, root)
    copied = _write(store, metadata, staged, root, dst, services, concurrency, progress)
    copied.source = source.name
    if kind == "store":
        copied.written, copied.existing = handler.fetched, handler.skipped
    elif kind != "docker":  # a file or directory gets every object
        copied.written = [*handler.fetched, *handler.skipped]
    return copied


def _verify(store: Store, objects: list[Descriptor]) -> None:
    from ocidist.content import verify
    from ocidist.errors import DigestMismatch

    for desc in objects:
        if not verify(store, desc.digest):
            raise DigestMismatch(f"content {desc.digest}: digest mismatch in the store")


def _write(
    store: Store,
    metadata: Metadata,
    name: str,
    root: Descriptor,
    dst: str,
    services: Services,
    concurrency: int,
    progress: Progress | None,
) -> Copied:
    kind, rest = split_transport(dst)
    if kind == "docker":
        from ocidist.push import push_image

        result = push_image(
            services.resolver(), store, metadata, name, rest,
            concurrency=concurrency, progress=progress,
        )  # fmt: skip
        copied = Copied(name, result.name, root, dst)
        copied.written = [*result.pushed, *result.mounted]
        copied.existing = result.existing
        return copied
    if kind == "store":
        target = reference.parse(rest).name
        services.metadata().put_image(target, root)
        return Copied(name, f"store:{target}", root, dst)
    path, ref = split_path(rest)
    if kind == "docker-archive":
        from ocidist.dockerarchive import export_docker

        if ref.startswith("@"):
            raise InvalidArgument(f"{dst}: a destination is named NAME:TAG, not by position")
        anonymous = name == ANONYMOUS and not ref
        saved = export_docker(store, metadata, name, path, tag=ref or None, untagged=anonymous)
        return Copied(name, dst, saved.target, dst)
    from ocidist.layout import export_image

    export_image(
        store, metadata, name, path,
        tag=ref or None, tar=kind == "oci-archive", record_name=name != ANONYMOUS,
    )  # fmt: skip
    return Copied(name, dst, root, dst)
