"""Garbage collection of the content store: mark from the images, sweep the rest.

Roots are the targets of every image in the metadata store. Marking follows
index -> manifests -> config + layers through the bytes the store holds
(children that are missing are simply not there to mark), and content labels
``containerd.io/gc.ref.content[.<anything>]=<digest>``, which let a blob hold
on to content no manifest names (containerd's convention).

Ingests in progress are not blobs and are never swept here; ``prune_ingests``
clears stale ones only when asked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from ocidist import manifest
from ocidist.content import Info, Provider, Status, Store
from ocidist.descriptor import MAX_MANIFEST_SIZE, Descriptor, is_manifest_or_index
from ocidist.digest import Digest
from ocidist.errors import DistError, FailedPrecondition, GraphLimit, InvalidContent, NotFound
from ocidist.images.handlers import GC_REF
from ocidist.images.walk import manifest_children, read_manifest, walk
from ocidist.metadata import Metadata


def children_in_store(store: Provider, desc: Descriptor) -> list[Descriptor]:
    """What ``desc`` points at, read from the store; [] when it is not a
    manifest or index, is not in the store, or cannot be decoded. Too many
    children, or one too large, is the walker's error, as everywhere.

    A descriptor without a media type (from a label) is sniffed from its bytes.
    """
    media_type = desc.media_type
    if media_type and not is_manifest_or_index(media_type):
        return []
    try:
        data = read_manifest(store, desc)
    except NotFound:
        return []
    if len(data) > MAX_MANIFEST_SIZE:
        return []  # an untyped label target that is no manifest (a layer, say)
    try:
        if not media_type:
            media_type = manifest.detect_media_type(data)
        return manifest_children(Descriptor(media_type, desc.digest, len(data)), data)
    except GraphLimit:
        raise  # the walker's bounds hold here too
    except InvalidContent:
        # Undecodable bytes name nothing we could keep alive; the blob itself
        # is still marked by whoever referenced it.
        return []


def label_refs(info: Info) -> list[Digest]:
    """Digests named by ``containerd.io/gc.ref.content*`` labels of ``info``."""
    out = []
    for key, value in info.labels.items():
        if key == GC_REF or key.startswith(GC_REF + "."):
            try:
                out.append(Digest.parse(value))
            except DistError:
                continue  # a bad label must not stop a collection
    return out


def reachable_from(store: Store, roots: Iterable[Descriptor]) -> set[Digest]:
    seen: set[Digest] = set()

    def mark(desc: Descriptor) -> list[Descriptor]:
        seen.add(desc.digest)
        try:
            info = store.info(desc.digest)
        except NotFound:
            return []
        # Typed children come first: the walk visits a digest once, so their
        # label-only twins are no-ops (an untyped one would be read, up to
        # 4 MiB, to guess whether it is a manifest).
        typed = children_in_store(store, desc)
        return [*typed, *(Descriptor("", d, 0) for d in label_refs(info))]

    walk(mark, roots)
    return seen


def reachable(store: Store, metadata: Metadata) -> set[Digest]:
    """Every digest an image in ``metadata`` or a live lease needs (present in
    the store or not)."""
    roots = [image.target for image in metadata.list_images()]
    # A lease (a `dist serve` client mid-fetch) holds blobs no name reaches yet.
    roots += [Descriptor("", d, 0) for d in metadata.leased_digests()]
    return reachable_from(store, roots)


def prune(
    store: Store, metadata: Metadata, dry_run: bool = True, *, min_age: float = 0.0
) -> list[Info]:
    """Blobs no image reaches; deleted unless ``dry_run``.

    ``min_age`` (seconds) spares blobs committed more recently: a pull commits
    its blobs before it records the image name, so a prune running alongside
    one would otherwise take what it just fetched.
    """
    keep = reachable(store, metadata)
    now = time.time()
    doomed = [
        info
        for info in store.walk()
        if info.digest not in keep and now - info.created_at >= min_age
    ]
    if not dry_run:
        for info in doomed:
            # NotFound: someone else deleted it first, which is the same outcome.
            with contextlib.suppress(NotFound):
                store.delete(info.digest)
    return doomed


def prune_ingests(store: Store, dry_run: bool = True, *, older_than: float = 0.0) -> list[Status]:
    """Ingests not written to for ``older_than`` seconds and not locked by a
    live writer; aborted unless ``dry_run``."""
    now = time.time()
    out = []
    for status in store.list_statuses():
        if now - status.updated_at < older_than:
            continue
        if not dry_run:
            try:
                store.abort(status.key)
            except (FailedPrecondition, NotFound):
                continue  # being written right now, or finished meanwhile
        out.append(status)
    return out
