"""Remote contracts: a Resolver turns a reference into (name, descriptor) and
hands out Fetchers (bytes by descriptor) and Pushers (writers by descriptor).

The registry implementation lives in ``remotes.docker``; anything else that
can resolve and fetch (an OCI layout, a daemon) can implement these too.

What only some remotes can do is a Protocol of its own, as containerd has
optional interfaces (``remotes.ReferrersFetcher``, ``FetcherByDigest``):
``RangeFetcher`` (a big blob as parallel byte ranges: checked with
``isinstance``, as a fetcher may be a layout directory), and ``Registry``,
the resolver of a registry, for the commands that only make sense against
one (objects by digest, referrers).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ocidist.content import Writer
from ocidist.descriptor import Descriptor
from ocidist.stream import Readable

if TYPE_CHECKING:
    from ocidist.content.parallel import RangeSource
    from ocidist.digest import Digest


class Fetcher(Protocol):
    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        """Stream the object from ``offset``. From offset 0 with ``verify`` the
        stream raises DigestMismatch before handing out the final bytes of a
        corrupt object; a caller that verifies itself (a store writer hashes
        what it takes) passes ``verify=False`` so nothing is hashed twice."""
        ...


@runtime_checkable
class RangeFetcher(Fetcher, Protocol):
    """A fetcher that can also serve a big blob as concurrent byte ranges
    (a registry's: content/parallel.py)."""

    def ranges(self, desc: Descriptor) -> RangeSource | None: ...


class ReferrersFetcher(Fetcher, Protocol):
    """A fetcher that lists what refers to a manifest (OCI distribution-spec
    1.1's referrers API; containerd's ``remotes.ReferrersFetcher``)."""

    def referrers(
        self, subject: Digest, artifact_type: str = "", *, limit: int
    ) -> tuple[list[Descriptor], bool]:
        """The referrers of ``subject`` (GraphLimit past ``limit`` of them)
        and whether the remote applied the ``artifact_type`` filter;
        NotFound when it has no referrers API."""
        ...


class Pusher(Protocol):
    """Writers into one repository, made by ``Resolver.pusher(ref)``.

    What only a push needs travels as containerd carries it: the tag is the
    ref's (``repo:tag``, or ``repo:tag@digest`` to tag only that manifest),
    and repositories to mount a blob from are the descriptor's
    ``containerd.io/distribution.source.<registry>`` annotation.
    """

    def push(self, desc: Descriptor) -> Writer:
        """A writer uploading ``desc``; AlreadyExists when the remote has it
        (``errors.Mounted`` when a cross-repository mount made it so)."""
        ...

    def exists(self, desc: Descriptor) -> bool:
        """Whether the remote holds ``desc`` (a tagged manifest: under the tag)."""
        ...

    def asks_first(self, desc: Descriptor) -> bool:
        """Whether ``push(desc)`` looks the object up before sending it (a
        small one may be sent without asking)."""
        ...

    def put_manifest(self, desc: Descriptor, data: bytes) -> str | None:
        """Send manifest ``data`` (exactly these bytes) as ``desc``, under the
        pusher's tag when its ref gave one, else by digest; returns the
        subject the remote says it recorded ``desc`` as a referrer of (the
        ``OCI-Subject`` answer), None when it said nothing."""
        ...


class Resolver(Protocol):
    def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """``ref``'s canonical name and descriptor."""
        ...

    def resolve_manifest(self, ref: str) -> tuple[str, Descriptor, bytes | None]:
        """As ``resolve``, with the manifest bytes read on the way when the
        resolver has them (verified against the descriptor)."""
        ...

    def fetcher(self, ref: str) -> Fetcher: ...
    def pusher(self, ref: str) -> Pusher: ...


@runtime_checkable
class Warmer(Protocol):
    """A resolver that can open connections to a reference's registry ahead
    of use (in the background, best effort), so the first blobs of a pull do
    not each pay a handshake while the manifest is still being read."""

    def warm(self, ref: str, n: int) -> None: ...


class Registry(Resolver, Protocol):
    """A registry's resolver: objects by digest alone, and referrers."""

    def describe(self, ref: str, dgst: Digest, media_type: str = "") -> Descriptor:
        """The descriptor of object ``dgst`` in ``ref``'s repository (a blob
        or a manifest; ``media_type`` a hint of which)."""
        ...

    def fetcher(self, ref: str) -> ReferrersFetcher: ...


class WithManifest:
    """A ``Fetcher`` that serves one object it was handed (the manifest a
    resolver read) from memory and asks ``fetcher`` for everything else."""

    def __init__(self, fetcher: Fetcher, desc: Descriptor, data: bytes) -> None:
        self._fetcher = fetcher
        self._desc = desc
        self._data = data

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        if desc.digest == self._desc.digest:
            return io.BytesIO(self._data[offset:])  # verified when it was read
        return self._fetcher.fetch(desc, offset, verify=verify)

    def ranges(self, desc: Descriptor) -> RangeSource | None:
        """The wrapped fetcher's byte ranges of a big blob, where it has them
        (a registry's: content/parallel.py)."""
        if isinstance(self._fetcher, RangeFetcher):
            return self._fetcher.ranges(desc)
        return None


def resolve_to_fetch(resolver: Resolver, ref: str) -> tuple[str, Descriptor, Fetcher]:
    """Name, descriptor and a fetcher for ``ref``: the fetcher already holds
    the manifest when the resolver read it (one round trip less)."""
    name, desc, data = resolver.resolve_manifest(ref)
    fetcher = resolver.fetcher(name)
    return name, desc, fetcher if data is None else WithManifest(fetcher, desc, data)
