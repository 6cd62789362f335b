"""Fetching objects by descriptor, with mid-body resume and verification.

``manifests/`` serves manifest and index types, ``blobs/`` everything else;
a manifest-typed digest that ``manifests/`` does not know is tried under
``blobs/`` only after a 404 (falling back on other errors stored manifests as
octet-stream in containerd #7390). A body that breaks off is continued with
``Range: bytes=N-``; a server that ignores Range (200 instead of 206) gets
its first N bytes discarded — a CDN in front of a registry did exactly that.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ocidist.content.tuning import Tuning
from ocidist.descriptor import ACCEPT_MANIFESTS, MAX_MANIFEST_SIZE, Descriptor, is_manifest_or_index
from ocidist.digest import VerifyingReader
from ocidist.errors import (
    DigestMismatch,
    DistError,
    InvalidContent,
    NotFound,
    RegistryError,
    Unavailable,
)
from ocidist.remotes.docker.auth import pull_scope
from ocidist.remotes.docker.hosts import RegistryHost, first_success
from ocidist.remotes.docker.httpconn import decimal
from ocidist.remotes.docker.retry import Attempts
from ocidist.remotes.docker.session import Session
from ocidist.remotes.docker.transport import Response
from ocidist.stream import Readable
from ocidist.text import quote

if TYPE_CHECKING:
    from ocidist.digest import Digest
    from ocidist.remotes.docker.rangefetch import BlobRanges

SKIP_CHUNK = 1 << 20


# A registry that answers within this (a round trip and its own time) is
# near: this machine or a LAN, where big blobs come in one stream.
NEAR = 0.01


class DockerFetcher:
    def __init__(
        self,
        session: Session,
        hosts: list[RegistryHost],
        path: str,
        tuning: Tuning | None = None,
    ) -> None:
        self._session = session
        self._hosts = hosts
        self._path = path
        # How big blobs are fetched in parallel ranges (content/parallel.py);
        # given (flags, hosts.toml), it holds on any link.
        self.tuning = tuning or Tuning()
        self._tuning_given = tuning is not None

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        """A stream of ``desc``'s bytes from ``offset``. From offset 0 the stream
        is verified: the read that would complete a corrupt object raises instead.
        ``verify=False`` is for a caller that hashes every byte itself (a store
        writer whose commit checks the digest): hashing twice cost ~15 % of a
        large fetch's CPU (docs/BENCHMARKS.md)."""
        if is_manifest_or_index(desc.media_type) and desc.size > MAX_MANIFEST_SIZE:
            raise InvalidContent(
                f"{desc.digest}: manifest of {desc.size} bytes exceeds {MAX_MANIFEST_SIZE}"
            )
        # The object's one retry budget: every break and failed reopen counts.
        tries = self._session.retry.begin(str(desc.digest), self._session.deadline)
        raw: Readable = RemoteBody(self, desc, offset, tries)
        if offset or not verify:
            return raw  # the caller's (resumed) hash verifies the whole
        return VerifyingReader(raw, desc.digest, desc.size, what=str(desc.digest))

    def open(
        self, desc: Descriptor, offset: int, attempts: Attempts | None = None, end: int = -1
    ) -> tuple[Response, int]:
        """GET the object from ``offset`` (up to ``end`` if not -1); returns
        the response and the offset its body actually starts at (0 when the
        server ignored Range). ``attempts``: the object's retry budget
        (retry.py) when this open resumes a body; by default the request has
        its own."""
        what = f"{self._path}@{desc.digest}"
        if not self._hosts:
            raise NotFound(f"{what}: no host is configured to pull from")
        return first_success(
            what,
            self._hosts,
            lambda h: self._open_on(h, desc, offset, attempts, end),
            skip=_blob_host_failure,
        )

    def ranges(self, desc: Descriptor) -> BlobRanges | None:
        """``desc`` as a source of byte ranges (a parallel ranged fetch), or
        None for one stream: by default when the registry answered within
        ``NEAR`` (this machine, a LAN). There one connection is not what
        limits a blob, the CPU is: measured on loopback, ranges cost a
        single 300 MB blob +34 % wall time and +14 % CPU, and two 50 MB
        layers +25 % CPU and +12 MB of memory, for no gain
        (docs/BENCHMARKS.md). The figure is a round trip plus the
        registry's time, the shortest seen; before any answer, ranges.
        None as well for a blob below the tuning's threshold (or with
        ranges off), which is fetched in one stream anyway: a small image
        then never imports the ranged fetch (with ``urllib.parse``, ~3 ms
        between its manifest's answer and its layers' requests)."""
        threshold = self.tuning.threshold
        if not threshold or desc.size < threshold:
            return None
        if not self._tuning_given:
            measured = (self._session.transport.answer_time(h.base) for h in self._hosts)
            took = next((t for t in measured if t is not None), None)
            if took is not None and took < NEAR:
                return None
        from ocidist.remotes.docker.rangefetch import BlobRanges

        return BlobRanges(self, self._session, desc)

    def referrers(
        self, subject: Digest, artifact_type: str = "", *, limit: int
    ) -> tuple[list[Descriptor], bool]:
        """What refers to ``subject`` by the referrers API of the registry
        itself (a mirror caches the upstream's objects, not its lists), at
        most ``limit`` over all pages, and whether it applied the
        ``artifact_type`` filter; NotFound without the API
        (remotes/docker/referrers.py)."""
        from ocidist.remotes.docker.listing import upstream_host
        from ocidist.remotes.docker.referrers import fetch_referrers

        if not self._hosts:
            raise NotFound(f"{self._path}: no host is configured to pull from")
        host = upstream_host(self._hosts)
        return fetch_referrers(self._session, host, self._path, subject, artifact_type, limit=limit)

    def _open_on(
        self,
        host: RegistryHost,
        desc: Descriptor,
        offset: int,
        attempts: Attempts | None,
        end: int = -1,
    ) -> tuple[Response, int]:
        endpoints = ["blobs"]
        if is_manifest_or_index(desc.media_type):
            endpoints = ["manifests", "blobs"]
        headers = {"Accept": f"{desc.media_type}, */*" if desc.media_type else "*/*"}
        if end >= 0:
            headers["Range"] = f"bytes={offset}-{end - 1}"
        elif offset:
            headers["Range"] = f"bytes={offset}-"
        for i, ep in enumerate(endpoints):
            if ep == "manifests":
                headers["Accept"] = ", ".join((desc.media_type, *ACCEPT_MANIFESTS, "*/*"))
            try:
                resp = self._session.request(
                    host,
                    "GET",
                    f"/{self._path}/{ep}/{desc.digest}",
                    scopes=(pull_scope(self._path),),
                    headers=headers,
                    what=f"{self._path}@{desc.digest}",
                    ok=(200, 206),
                    attempts=attempts,
                )
            except NotFound:
                if i + 1 < len(endpoints):
                    continue
                raise
            return resp, _body_start(resp, offset, str(desc.digest))
        raise NotFound(f"{self._path}@{desc.digest}: not found")


def _body_start(resp: Response, offset: int, what: str) -> int:
    if resp.status == 206:
        cr = resp.header("Content-Range") or ""
        # "bytes 100-199/200": the body must start where we asked. ASCII
        # digits only: int() would take "١٢", "1_0" and thousands of digits.
        unit, _, spec = cr.strip().partition(" ")
        start = decimal(spec.partition("-")[0]) if unit == "bytes" else None
        if start is None:
            resp.close()
            raise Unavailable(f"{what}: bad Content-Range '{quote(cr, 60)}'")
        if start != offset:
            resp.close()
            raise Unavailable(f"{what}: asked for bytes from {offset}, got from {start}")
        return offset
    return 0


class RemoteBody(io.RawIOBase):
    """A body that survives broken connections by reopening at its offset.

    The object has one retry budget (retry.Attempts): every break and every
    failed reopen counts, and a reopened response that breaks again before
    gaining ``min_progress`` bytes is a failed attempt, not progress."""

    def __init__(
        self, fetcher: DockerFetcher, desc: Descriptor, offset: int, tries: Attempts
    ) -> None:
        super().__init__()
        self._fetcher = fetcher  # only its public open(): the retry budget is ``tries``
        self._desc = desc
        self._pos = offset
        self._resp: Response | None = None
        self._resp_end = -1  # offset where the current response's body ends, if known
        self._tries = tries
        self._opened_at = offset  # where the current response started
        self._reopen = False

    def readable(self) -> bool:
        return True

    def _connect(self) -> Response:
        # The first open has its own budget (each mirror its own); a reopen
        # spends the object's (an open the session gave up on is not retried
        # here again: that made 5 x 5 requests for one "gave up after 5").
        resp, start = self._fetcher.open(
            self._desc, self._pos, self._tries if self._reopen else None
        )
        self._reopen = True
        self._opened_at = self._pos
        # The server ignored Range: skip what we already hold.
        skip = self._pos - start
        buf = bytearray(min(SKIP_CHUNK, max(skip, 1)))
        try:
            while skip > 0:
                n = resp.readinto(memoryview(buf)[: min(skip, len(buf))])
                if n == 0:
                    raise Unavailable(f"{self._desc.digest}: body ended before offset {self._pos}")
                skip -= n
        except Unavailable as e:
            self._broken(resp, e)  # raises once the object's budget is spent
            return self._connect()
        length = resp.content_length()
        self._resp_end = start + length if length is not None else -1
        self._resp = resp
        return resp

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if len(b) == 0:
            return 0
        while True:
            resp = self._resp or self._connect()
            try:
                n = resp.readinto(b)
            except Unavailable as e:
                self._broken(resp, e)
                continue
            if n == 0 and self._desc.size >= 0 and self._pos < self._desc.size:
                if self._pos == self._resp_end:
                    # The server sent all it meant to: the object is shorter
                    # than its descriptor says.
                    raise DigestMismatch(
                        f"{self._desc.digest}: size mismatch: got {self._pos} bytes, "
                        f"expected {self._desc.size}"
                    )
                # A clean EOF short of the size is a dropped connection too.
                self._broken(
                    resp,
                    Unavailable(
                        f"{self._desc.digest}: connection closed at byte {self._pos} of "
                        f"{self._desc.size}"
                    ),
                )
                continue
            self._pos += n
            if self._desc.size >= 0 and self._pos > self._desc.size:
                raise DigestMismatch(
                    f"{self._desc.digest}: size mismatch: more than {self._desc.size} bytes"
                )
            return n

    def _broken(self, resp: Response, e: Unavailable) -> None:
        """The current response broke off: wait for the next attempt, or raise."""
        resp.close()
        self._resp = None
        self._tries.failed(e, gained=self._pos - self._opened_at)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks: list[bytes] = []
            buf = bytearray(SKIP_CHUNK)
            while True:
                got = self.readinto(buf)
                if not got:
                    return b"".join(chunks)
                chunks.append(bytes(buf[:got]))
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        super().close()


def _blob_host_failure(e: DistError) -> bool:
    # A mirror that is down, lacks the object or answers 5xx is skipped; auth
    # failures (401/403) are not a mirror problem.
    if isinstance(e, RegistryError):
        return 500 <= e.status < 600
    return isinstance(e, NotFound | Unavailable)
