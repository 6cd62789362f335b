"""Fetching a whole image into the content store, then naming it.

The name is recorded only after every selected blob is committed, so a name
in the metadata store always points at a complete image.
"""

from __future__ import annotations

import os

from ocidist import reference
from ocidist.content import Store
from ocidist.descriptor import Descriptor
from ocidist.images.dispatch import dispatch
from ocidist.images.handlers import FetchHandler
from ocidist.images.platforms import MatchComparer, default_matcher
from ocidist.metadata import MetadataStore
from ocidist.progress import Progress
from ocidist.remotes.docker.resolver import DockerResolver


def default_concurrency() -> int:
    # Transfers wait on sockets, not the CPU; a few per core keeps the pipe full
    # without thrashing a small machine.
    return max(4, min(16, 2 * (os.cpu_count() or 2)))


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
    resolver: DockerResolver,
    store: Store,
    metadata: MetadataStore | None,
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
    """
    name, desc = resolver.resolve(ref)
    r = reference.parse(name)
    handler = FetchHandler(
        store,
        resolver.fetcher(name),
        matcher or default_matcher(),
        limit=limit,
        progress=progress,
        source=(r.domain, r.path),
    )
    dispatch(handler, [desc], concurrency=concurrency or default_concurrency())
    if metadata is not None:
        metadata.put_image(name, desc)
    return PullResult(name, desc, handler.fetched, handler.skipped)
