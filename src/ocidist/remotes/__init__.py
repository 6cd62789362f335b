"""Remote contracts: a Resolver turns a reference into (name, descriptor) and
hands out Fetchers (bytes by descriptor) and Pushers (writers by descriptor).

The registry implementation lives in ``remotes.docker``; anything else that
can resolve and fetch (an OCI layout, a daemon) can implement these too.
"""

from __future__ import annotations

from typing import Protocol

from ocidist.content import Writer
from ocidist.descriptor import Descriptor
from ocidist.stream import Readable


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
    def resolve(self, ref: str) -> tuple[str, Descriptor]: ...
    def fetcher(self, ref: str) -> Fetcher: ...
    def pusher(self, ref: str) -> Pusher: ...
