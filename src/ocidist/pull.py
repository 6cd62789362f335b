"""Fetching a whole image into the content store, then naming it.

The name is recorded only after every selected blob is committed, so a name
in the metadata store always points at a complete image.
"""

from __future__ import annotations

import os
import time

from ocidist import reference
from ocidist.content import Store
from ocidist.descriptor import Descriptor, is_index
from ocidist.images.handlers import FetchHandler
from ocidist.images.platforms import MatchComparer, default_matcher
from ocidist.images.scheduler import CancellingProgress, Scheduler
from ocidist.images.walk import platform_children, walk
from ocidist.metadata import Metadata
from ocidist.progress import Progress
from ocidist.remotes import Resolver, Warmer, resolve_to_fetch


def default_concurrency() -> int:
    # Transfers wait on sockets, not the CPU; a few per core keeps the pipe full
    # without thrashing a small machine.
    return max(4, min(16, 2 * (os.cpu_count() or 2)))


# A resolve slower than this means a real network between us and the
# registry: round trips, not the CPU, set the pace (loopback: 2-5 ms).
FAR = 0.02
FAR_CONCURRENCY = 16


def link_concurrency(resolve_seconds: float) -> int:
    """Objects fetched at once, sized by the link the resolve measured: on a
    far registry each small object costs a round trip, so more of them in
    flight (measured: 40 small layers over 80 ms took 1.36 s with 4, see
    docs/BENCHMARKS.md); near, the CPU-sized default."""
    if resolve_seconds >= FAR:
        return max(FAR_CONCURRENCY, default_concurrency())
    return default_concurrency()


# Far, small objects (the walk's LIGHT_SIZE) in flight at once beyond the
# concurrency: a round trip each, so as many as the image has, as containerd
# does (no limit there; one connection each). 40 small layers over 80 ms:
# one round trip instead of three at 16.
FAR_LIGHT = 64


def light_concurrency(resolve_seconds: float, concurrency: int) -> int:
    """Small objects at once (``Scheduler``'s ``light``): far, ``FAR_LIGHT``;
    near, no more than ``concurrency`` (the CPU is the limit there)."""
    return max(FAR_LIGHT, concurrency) if resolve_seconds >= FAR else concurrency


def warm_up(resolver: Resolver, ref: str) -> None:
    """Open connections to ``ref``'s registry in the background while the
    manifest is being read, so the first blobs do not each pay a handshake
    (a round trip; more with TLS). Best effort: any failure is the fetch's
    to report."""
    if isinstance(resolver, Warmer):
        resolver.warm(ref, default_concurrency())


def warm_ahead(resolver: Resolver, ref: str, desc: Descriptor, resolve_seconds: float) -> None:
    """After the resolve: an index read from a far registry has two levels
    still to come, its manifests and then their blobs, where the fan-out
    is; connections opened now (a round trip) are through their handshake
    by that second level, which otherwise opens most of its own, a round
    trip more (the bench's multi-platform image, every platform: 7 blobs,
    5 connections open). A manifest's blobs come right after it: for those
    it would be too late (their requests open their own). Not for unpack:
    one platform's manifest, then its config and layers (the tiny index:
    3 objects, connections enough already), where the warm-up threads'
    start measured 1.03x against 0.85x for fetch of every platform."""
    if resolve_seconds >= FAR and is_index(desc.media_type) and isinstance(resolver, Warmer):
        resolver.warm(ref, FAR_CONCURRENCY)


class PullResult:
    # A plain class, not a dataclass: creating one costs ~1 ms of start-up.
    def __init__(
        self,
        name: str,
        target: Descriptor,
        fetched: list[Descriptor] | None = None,
        skipped: list[Descriptor] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.fetched: list[Descriptor] = fetched if fetched is not None else []
        self.skipped: list[Descriptor] = skipped if skipped is not None else []

    def __repr__(self) -> str:
        return (
            f"PullResult(name={self.name!r}, target={self.target!r}, "
            f"fetched={len(self.fetched)}, skipped={len(self.skipped)})"
        )

    @property
    def fetched_bytes(self) -> int:
        return sum(d.size for d in self.fetched)


def fetch_image(
    resolver: Resolver,
    store: Store,
    metadata: Metadata | None,
    ref: str,
    *,
    matcher: MatchComparer | None = None,
    limit: int = 1,
    concurrency: int = 0,
    progress: Progress | None = None,
) -> PullResult:
    """Resolve ``ref``, fetch what ``matcher`` selects, record the name.

    ``limit`` keeps at most that many platform manifests per index (the best
    matches; 0 keeps every match — for several platforms or all of them).
    ``metadata`` None records no name (a caller may hand one that is still
    opening: ``metadata.OpeningInBackground``).
    """
    started = time.monotonic()
    chosen = concurrency
    if not concurrency:
        warm_up(resolver, ref)
    # GET, not HEAD: the walk starts by fetching this manifest anyway.
    name, desc, fetcher = resolve_to_fetch(resolver, ref)
    took = time.monotonic() - started
    if not concurrency:
        concurrency = link_concurrency(took)
        warm_ahead(resolver, ref, desc, took)
    r = reference.parse(name)
    # A --concurrency the user chose bounds every object.
    light = concurrency if chosen else light_concurrency(took, concurrency)
    sched = Scheduler(concurrency, name="walk", light=light)
    handler = FetchHandler(
        store,
        fetcher,
        platform_children(matcher or default_matcher(), limit),
        # A failed pull returns while transfers may still run: they stop at
        # their next chunk, not go on into the store (dist serve goes on).
        progress=CancellingProgress(progress, sched, "transfer stopped: the pull failed"),
        source=(r.domain, r.path),
    )
    walk(handler, [desc], scheduler=sched)
    if metadata is not None:
        metadata.put_image(name, desc)
    return PullResult(name, desc, handler.fetched, handler.skipped)
