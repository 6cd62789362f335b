"""Remote contracts: a Resolver turns a reference into (name, descriptor) and
hands out Fetchers (bytes by descriptor) and Pushers (writers by descriptor).

The registry implementation lives in ``remotes.docker``; anything else that
can resolve and fetch (an OCI layout, a daemon) can implement these too.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol

from ocidist.content import Writer
from ocidist.descriptor import Descriptor
from ocidist.stream import Readable

if TYPE_CHECKING:
    from ocidist.content.parallel import RangeSource


class Fetcher(Protocol):
    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        """Stream the object from ``offset``. From offset 0 with ``verify`` the
        stream raises DigestMismatch before handing out the final bytes of a
        corrupt object; a caller that verifies itself (a store writer hashes
        what it takes) passes ``verify=False`` so nothing is hashed twice."""
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
        make = getattr(self._fetcher, "ranges", None)
        return make(desc) if make is not None else None


def resolve_to_fetch(resolver: Resolver, ref: str) -> tuple[str, Descriptor, Fetcher]:
    """Name, descriptor and a fetcher for ``ref``: the fetcher already holds
    the manifest when the resolver read it (one round trip less)."""
    name, desc, data = resolver.resolve_manifest(ref)
    fetcher = resolver.fetcher(name)
    return name, desc, fetcher if data is None else WithManifest(fetcher, desc, data)
