"""Big blobs come in parallel ranges only where the link needs them.

On this machine or a LAN one connection is not what limits a blob, the CPU
is, and ranges only cost (docs/BENCHMARKS.md, "Ranged fetch on a near
link"): by default a registry that answered within ``fetcher.NEAR`` gets one
stream per blob. One that answers slower gets ranges, and ranges asked for
(flags, hosts.toml) are used on any link. The registry here is the hostile
one, answering its manifest as a registry would, after a pause or not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ocidist.content.parallel import Tuning
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.remotes.docker.fetcher import NEAR
from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions
from tests.harness.hostile import HostileRegistry, Peer, Request

MANIFEST = b'{"schemaVersion":2}'
BIG = Descriptor("application/octet-stream", Digest.from_bytes(b"big"), 1 << 30)


@pytest.fixture
def reg() -> Iterator[HostileRegistry]:
    with HostileRegistry() as r:
        r.manifest("v1", "application/vnd.oci.image.manifest.v1+json", MANIFEST)
        yield r


def _ranges_after_resolve(reg: HostileRegistry, ranges: Tuning | None = None) -> bool:
    resolver = DockerResolver(ResolverOptions(plain_http=True, ranges=ranges))
    try:
        for _ in range(5):  # the shortest answer counts: a loaded machine pauses some
            resolver.resolve(reg.ref())
        return resolver.fetcher(reg.ref()).ranges(BIG) is not None
    finally:
        resolver.close()


def test_a_near_registry_gets_one_stream(reg: HostileRegistry) -> None:
    assert not _ranges_after_resolve(reg)


def test_ranges_asked_for_hold_on_a_near_link(reg: HostileRegistry) -> None:
    assert _ranges_after_resolve(reg, Tuning(threshold=1 << 20))


def test_a_far_registry_gets_ranges(reg: HostileRegistry) -> None:
    def slow(peer: Peer, req: Request) -> bool:
        time.sleep(NEAR * 3)  # a registry a long round trip away
        return peer.send(reg.proper(req))

    reg.on(None, "/manifests/", slow)
    assert _ranges_after_resolve(reg)


def test_before_any_answer_ranges(reg: HostileRegistry) -> None:
    resolver = DockerResolver(ResolverOptions(plain_http=True))
    try:
        assert resolver.fetcher(reg.ref()).ranges(BIG) is not None
    finally:
        resolver.close()
