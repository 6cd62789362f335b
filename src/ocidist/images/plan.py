"""What sending an image takes: its blobs and its manifests, children first.

Push and copy read the graph (from the store, from a registry) with the
walker, then hand the plan to the scheduler: blobs in parallel, each
manifest once everything it names is in (a registry refuses a manifest
whose blobs it lacks), the root last. Manifests are kept as the bytes read,
never re-serialised, so every digest stays the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ocidist.content import Store
from ocidist.descriptor import Descriptor, is_index, is_manifest_or_index
from ocidist.errors import NotFound
from ocidist.images.platforms import MatchComparer
from ocidist.images.walk import (
    Read,
    Recorder,
    children_handler,
    find_manifest,
    manifest_children,
    none_held,
    platform_children,
    read_manifest,
    walk,
)

Check = Callable[[Descriptor, Sequence[Descriptor]], None]


class Plan:
    """Blobs (any order) and manifests with their bytes, children before parents."""

    # A plain class: a dataclass costs ~1 ms of start-up.
    def __init__(self) -> None:
        self.blobs: dict[str, Descriptor] = {}
        self.manifests: list[tuple[Descriptor, bytes]] = []
        # digest -> what the manifest names
        self.children: dict[str, Sequence[Descriptor]] = {}


def plan(read: Read, root: Descriptor, *, check: Check | None = None) -> Plan:
    """Walk ``root`` reading each manifest with ``read``; ``check(desc,
    children)`` may refuse a manifest (push: an index whose manifests are
    not all in the store)."""
    data: dict[str, bytes] = {}

    def handle(desc: Descriptor) -> Sequence[Descriptor]:
        if not is_manifest_or_index(desc.media_type):
            return []
        body = data[str(desc.digest)] = read(desc)
        kids = manifest_children(desc, body)
        if check is not None:
            check(desc, kids)
        return kids

    recorder = Recorder(handle)
    walk(recorder, [root])
    out = Plan()
    out.children = recorder.children
    for desc in recorder.children_first():
        body = data.get(str(desc.digest))
        if body is None:
            out.blobs.setdefault(str(desc.digest), desc)
        else:
            out.manifests.append((desc, body))
    return out


def stored_reader(store: Store, what: str) -> Read:
    """``read_manifest`` from ``store``, with a missing object said plainly."""

    def read(desc: Descriptor) -> bytes:
        if not store.exists(desc.digest):
            raise NotFound(f"{what}: {desc.digest} ({desc.media_type}) is not in the content store")
        return read_manifest(store, desc)

    return read


def stored_platform(
    store: Store, root: Descriptor, matcher: MatchComparer, what: str
) -> Descriptor:
    """The best platform manifest below index ``root`` that ``store`` holds
    (``root`` itself when it is no index)."""
    return held_platform(
        stored_reader(store, what), lambda d: store.exists(d.digest), root, matcher, what
    )


def held_platform(
    read: Read,
    has: Callable[[Descriptor], bool],
    root: Descriptor,
    matcher: MatchComparer,
    what: str,
    where: str = "the store",
) -> Descriptor:
    """The best platform manifest below index ``root`` in a local copy
    (``where``: the store, a layout) that may hold only some of an index's
    platforms: ``read`` reads from it, ``has`` says what it holds. A wanted
    platform it lacks is an error naming the platforms it does hold."""
    matching = platform_children(matcher)

    def present(desc: Descriptor, data: bytes) -> list[Descriptor]:
        kept = matching(desc, data)
        kids = [k for k in kept if has(k)]
        if is_index(desc.media_type) and kept and not kids:
            entries = manifest_children(desc, data)
            held = [e for e in entries if has(e)]
            raise none_held(what, matcher, entries, held, where)
        return kids

    return find_manifest(children_handler(read, present), root)


def remote_platform(read: Read, root: Descriptor, matcher: MatchComparer) -> Descriptor:
    """The best platform manifest below index ``root``, read with ``read``."""
    return find_manifest(children_handler(read, platform_children(matcher, 1)), root)
