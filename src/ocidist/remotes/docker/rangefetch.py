"""One blob as a source of byte ranges, for a parallel ranged fetch.

Each range is a ``GET`` with ``Range: bytes=A-B`` through the fetcher's
hosts (mirrors first, as for any fetch). Registries commonly answer blob
GETs with a redirect to object storage; the transport follows it without
the registry's credentials. The first range that ends up elsewhere leaves
its final URL here, and the next ranges go straight to it: one round trip
each instead of two. Should that URL stop working (a signature that
expired), ranges go through the registry again and learn the new one.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ocidist import logs
from ocidist.content.parallel import RangeIgnored
from ocidist.content.tuning import Tuning
from ocidist.descriptor import Descriptor
from ocidist.errors import DigestMismatch, DistError, RegistryError, Unavailable
from ocidist.remotes.docker.hosts import RegistryHost, first_success
from ocidist.remotes.docker.httpconn import decimal
from ocidist.remotes.docker.retry import Attempts
from ocidist.remotes.docker.transport import Response

if TYPE_CHECKING:
    from ocidist.remotes.docker.fetcher import DockerFetcher
    from ocidist.remotes.docker.session import Session

_LOGGER = "ocidist.remotes.ranges"


class BlobRanges:
    tuning: Tuning

    def __init__(self, fetcher: DockerFetcher, session: Session, desc: Descriptor) -> None:
        self._fetcher = fetcher
        self._session = session
        self._desc = desc
        self.tuning = fetcher.tuning
        self._what = f"{fetcher._path}@{desc.digest}"
        self._lock = threading.Lock()
        # (host whose TLS settings apply, final URL) once a redirect was seen.
        self._direct: tuple[RegistryHost, str] | None = None

    def attempts(self) -> Attempts:
        """The blob's retry budget (retry.py), shared by all its ranges: a
        body that breaks off counts against it unless it brought progress."""
        return self._session.retry.begin(self._what, self._session.deadline)

    def rtt(self) -> float | None:
        """The shortest exchange seen with where the ranges go (parallel.py
        starts wide when it is long)."""
        with self._lock:
            direct = self._direct
        hosts = self._fetcher._hosts
        url = direct[1] if direct is not None else hosts[0].base if hosts else ""
        return self._session.transport.answer_time(url) if url else None

    def open_range(self, start: int, end: int) -> Response:
        with self._lock:
            direct = self._direct
        if direct is not None:
            host, url = direct
            try:
                resp = self._session.request(
                    host,
                    "GET",
                    url,
                    scopes=(),
                    headers={"Range": f"bytes={start}-{end - 1}"},
                    what=self._what,
                    ok=(200, 206),
                )
                return self._checked(resp, start, end)
            except (RegistryError, Unavailable) as e:
                logs.debug(_LOGGER, "%s: redirect target failed (%s)", self._what, e)
                with self._lock:
                    if self._direct == direct:
                        self._direct = None
        hosts = self._fetcher._hosts
        resp, host = first_success(
            self._what, hosts, lambda h: (self._open_on(h, start, end), h), skip=_skip
        )
        if resp.status == 206 and _netloc(resp.url) != _netloc(host.base):
            with self._lock:
                self._direct = (host, resp.url)
        return resp

    def _open_on(self, host: RegistryHost, start: int, end: int) -> Response:
        resp, _ = self._fetcher._open_on(host, self._desc, start, None, end)
        return self._checked(resp, start, end)

    def _checked(self, resp: Response, start: int, end: int) -> Response:
        if resp.status == 200:
            resp.close()
            raise RangeIgnored(self._what)
        cr = resp.header("Content-Range") or ""
        try:
            span, total = cr.split(" ", 1)[1].split("/", 1)
            first, last = span.split("-", 1)
            ok = int(first) == start and int(last) <= end - 1
        except (IndexError, ValueError):
            ok, total = False, "*"
        if not ok:
            resp.close()
            raise Unavailable(f"{self._what}: asked for bytes {start}-{end - 1}, got {cr!r}")
        size = decimal(total)  # "²" is a digit to isdigit() and an error to int()
        if size is not None and size != self._desc.size:
            # The object is not the size its descriptor says: no range can fix that.
            resp.close()
            raise DigestMismatch(
                f"{self._desc.digest}: size mismatch: registry has {size} bytes, "
                f"expected {self._desc.size}"
            )
        return resp


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _skip(e: DistError) -> bool:
    from ocidist.remotes.docker.fetcher import _blob_host_failure

    return _blob_host_failure(e)
