"""The image graph walker: the one place that follows index -> manifests ->
config + layers, with the one set of limits.

A *handler* does the work for one descriptor (fetch it, push it, note it)
and returns the children to follow, as containerd's ``images.Handler``
does. ``walk`` runs a handler over a graph on the shared ``Scheduler``:
each digest once, manifests and indexes before blobs (they open up the
graph), blobs largest first, and the first failure stops the walk.

Handlers are built from small parts that chain:

- ``read_manifest`` / ``fetch_manifest``: the bytes of a manifest or index
  from a store or a remote, with the one size cap (``MAX_MANIFEST_SIZE``);
- a *children* function ``(desc, data) -> [desc]`` naming what to follow
  from those bytes: ``manifest_children`` (every child, the fan-out bound),
  wrapped by ``platform_children`` (an index's entries for a platform,
  best first, at most ``limit``; none matching is an error that lists
  what the index has);
- ``children_handler(read, children)``: read + children, for a graph that
  is only read (push's plan, export, GC); ``FetchHandler`` in
  ``images.handlers`` is the same with a fetch into the store in between;
- ``find_manifest``: follow a handler down a chain of indexes to the one
  platform manifest it picks (push/copy/unpack with one platform).

``walk`` itself bounds what any handler can make it do: indexes nested
deeper than ``MAX_INDEX_DEPTH`` and more than ``MAX_CHILDREN`` children of
one object are errors (``GraphLimit``), the same line whichever command walks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from ocidist import manifest
from ocidist.content import Provider
from ocidist.descriptor import (
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    Descriptor,
    is_config,
    is_index,
    is_manifest,
    is_manifest_or_index,
)
from ocidist.errors import GraphLimit, InvalidContent, NotFound
from ocidist.images.platforms import MatchComparer, select
from ocidist.images.scheduler import Scheduler
from ocidist.remotes import Fetcher
from ocidist.text import listing

Handler = Callable[[Descriptor], Sequence[Descriptor]]
Children = Callable[[Descriptor, bytes], list[Descriptor]]
Read = Callable[[Descriptor], bytes]

# Index inside index is legal and real images use a level or two; a registry
# serving a chain of 200 distinct indexes would otherwise be walked to the end.
MAX_INDEX_DEPTH = 8
# Bound the graph a hostile index or manifest can make us walk.
MAX_CHILDREN = 10_000
# An object this small is a round trip or two to fetch, whatever its bytes
# (TCP's first windows carry ~14 kB, then twice as much each round trip):
# a scheduler with a light lane runs any number of them at once.
LIGHT_SIZE = 1 << 20


def too_deep(desc: Descriptor, what: str = "indexes") -> GraphLimit:
    return GraphLimit(f"{desc.digest}: {what} nested deeper than {MAX_INDEX_DEPTH}")


def check_fan_out(desc: Descriptor | str, children: Sequence[Descriptor]) -> None:
    """``desc`` (or a name for what holds the list) names too many children?"""
    if len(children) > MAX_CHILDREN:
        name = desc if isinstance(desc, str) else str(desc.digest)
        raise GraphLimit(f"{name}: {len(children)} children is too many (at most {MAX_CHILDREN})")


def check_size(desc: Descriptor) -> None:
    if desc.size > MAX_MANIFEST_SIZE:
        raise GraphLimit(f"{desc.digest}: manifest of {desc.size} bytes is too large")


def walk(
    handler: Handler,
    roots: Iterable[Descriptor],
    *,
    concurrency: int = 1,
    nests: tuple[Callable[[Descriptor], bool], str] = (lambda d: is_index(d.media_type), "indexes"),
    scheduler: Scheduler | None = None,
    after: Callable[[Descriptor], Collection[str]] | None = None,
) -> None:
    """Run ``handler`` on ``roots`` and on every child it returns, bounded.

    ``nests``: which descriptors count as one level deeper, and what they
    are called in the error: an image graph's indexes (a manifest and its
    blobs add no depth); for a graph whose every edge is a level (what
    refers to what: ``referrers.closure``), every descriptor.

    ``scheduler``: the pool to walk on instead of a new one of
    ``concurrency`` threads, for a caller that follows the walk from another
    thread (``Scheduler.wait``: unpack's applier).

    ``after``: the keys (digests) of jobs a descriptor's job waits for
    (``Scheduler.add``'s deps; none by default)."""
    sched = scheduler or Scheduler(concurrency, name="walk")
    deeper, what = nests

    def add(desc: Descriptor, depth: int) -> None:
        depth += deeper(desc)
        if depth > MAX_INDEX_DEPTH:
            raise too_deep(desc, what)
        deps = after(desc) if after is not None else ()
        sched.add(
            str(desc.digest),
            lambda: visit(desc, depth),
            deps,
            priority=_priority(desc),
            light=desc.size <= LIGHT_SIZE,
        )

    def visit(desc: Descriptor, depth: int) -> None:
        children = handler(desc)
        check_fan_out(desc, children)
        for c in children:
            add(c, depth)

    for r in roots:
        add(r, 0)
    sched.run()


def _priority(desc: Descriptor) -> tuple[int, int]:
    # Manifests, indexes and configs first (small, and what the rest waits
    # for: unpack's applier needs the config before its first layer), then
    # the largest blobs first.
    first = is_manifest_or_index(desc.media_type) or is_config(desc.media_type)
    return (0 if first else 1, -desc.size)


# -- reading -----------------------------------------------------------------------


def read_manifest(provider: Provider, desc: Descriptor) -> bytes:
    """A manifest or index from a store, within the size cap."""
    check_size(desc)
    with provider.reader(desc.digest) as f:
        return f.read(MAX_MANIFEST_SIZE + 1)


def fetch_manifest(fetcher: Fetcher, desc: Descriptor) -> bytes:
    """A manifest or index from a remote, within the size cap, verified."""
    check_size(desc)
    stream = fetcher.fetch(desc)  # verified: the last read raises on a mismatch
    try:
        return stream.read()
    finally:
        stream.close()


# -- children ----------------------------------------------------------------------


def index_entries(data: bytes, what: str) -> list[Descriptor]:
    """The entries of the OCI image index ``data`` that is not itself a
    node of a graph being walked but a list of roots (an OCI layout's
    ``index.json``, the referrers tag's list), fan-out bounded like any
    index; InvalidContent naming ``what`` when it is not an index."""
    decoded = manifest.decode(data, OCI_INDEX)
    if not isinstance(decoded, manifest.Index):
        raise InvalidContent(f"{what} is not an image index")
    check_fan_out(what, decoded.manifests)
    return list(decoded.manifests)


def layer_children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """A manifest's layers without its config (an artifact's files); an
    index's entries; [] for anything else. Fan-out bounded."""
    children = manifest_children(desc, data)
    return children[1:] if is_manifest(desc.media_type) else children


def manifest_children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """Everything a manifest or index names (an index's entries, a manifest's
    config then layers); [] for anything else."""
    if not is_manifest_or_index(desc.media_type):
        return []
    children = manifest.children(desc, data)
    check_fan_out(desc, children)  # before any sorting of a hostile index
    return children


def platform_children(
    matcher: MatchComparer, limit: int = 0, *, children: Children = manifest_children
) -> Children:
    """``children``, with an index's entries kept only for ``matcher``'s
    platforms, best first, at most ``limit`` (0: every match). An index
    whose entries all name other platforms is an error listing them."""

    def pick(desc: Descriptor, data: bytes) -> list[Descriptor]:
        kids = children(desc, data)
        if not is_index(desc.media_type):
            return kids
        kept = select(kids, matcher)
        if kids and not kept:
            raise no_match(desc, matcher, kids)
        return kept[:limit] if limit else kept

    return pick


def no_match(desc: Descriptor, matcher: MatchComparer, entries: Sequence[Descriptor]) -> NotFound:
    """The error for an index with no manifest for the wanted platform."""
    return NotFound(
        f"{desc.digest}: no manifest for platform {matcher.wanted()}"
        f" (the index has {platform_list(entries)})"
    )


def none_held(
    what: str,
    matcher: MatchComparer,
    entries: Sequence[Descriptor],
    held: Sequence[Descriptor],
    where: str = "the store",
) -> NotFound:
    """The error for an index whose entries for the wanted platform are all
    missing from a local copy (``where``: the store, a layout) that holds
    ``held`` of its ``entries``: an index pulled for other platforms. Both
    lists are named, so the user sees what can be used and what to fetch."""
    return NotFound(
        f"{what}: no manifest for platform {matcher.wanted()} in {where}"
        f" ({where} has {platform_list(held) or 'none of them'};"
        f" the index has {platform_list(entries)})"
    )


def platform_list(entries: Sequence[Descriptor]) -> str:
    """The platforms ``entries`` name, sorted, for an error message."""
    # Platform strings come from the registry: data, not terminal control.
    return listing(str(e.platform) for e in entries if e.platform is not None)


# -- handlers ----------------------------------------------------------------------


def children_handler(read: Read, children: Children = manifest_children) -> Handler:
    """Read each manifest or index (``read``) and follow ``children``; blobs
    have none and are not read."""

    def handle(desc: Descriptor) -> list[Descriptor]:
        if not is_manifest_or_index(desc.media_type):
            return []
        return children(desc, read(desc))

    return handle


def find_manifest(handler: Handler, root: Descriptor) -> Descriptor:
    """The manifest that ``handler`` (one picking platforms, best first)
    leads to from ``root`` down a chain of indexes: at each index its first
    child. ``root`` itself when it is not an index."""
    found: list[Descriptor] = []

    def first(desc: Descriptor) -> list[Descriptor]:
        if not is_index(desc.media_type):
            found.append(desc)
            return []
        return list(handler(desc)[:1])

    walk(first, [root])
    if not found:  # an empty index
        raise NotFound(f"{root.digest}: the index lists no manifests")
    return found[0]


class Recorder:
    """Wraps a handler and notes what it visited and what each returned, so
    a caller can act on the graph afterwards (children before parents)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.visited: list[Descriptor] = []  # in walk order: parents before children
        self.children: dict[str, Sequence[Descriptor]] = {}

    def __call__(self, desc: Descriptor) -> Sequence[Descriptor]:
        kids = self._handler(desc)
        self.visited.append(desc)
        self.children[str(desc.digest)] = kids
        return kids

    def children_first(self) -> list[Descriptor]:
        """Every visited descriptor, each after everything below it."""
        out: list[Descriptor] = []
        placed: set[str] = set()
        by_digest = {str(d.digest): d for d in self.visited}
        opened: set[str] = set()  # a cycle (impossible by digest, but) must not loop
        for start in self.visited:
            stack = [(start, False)]
            while stack:
                desc, expanded = stack.pop()
                key = str(desc.digest)
                if key in placed:
                    continue
                if expanded:
                    placed.add(key)
                    out.append(by_digest.get(key, desc))
                    continue
                if key in opened:
                    continue
                opened.add(key)
                stack.append((desc, True))
                stack.extend(
                    (c, False) for c in self.children.get(key, ()) if str(c.digest) not in placed
                )
        return out
