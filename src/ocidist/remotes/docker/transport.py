"""HTTP transport: the only module that imports urllib3.

It sends one request and returns a streaming response; urllib3 errors become
``Unavailable``/``TimedOut`` here and nowhere else. Redirects are followed by
hand so that registry credentials are never forwarded to another host (blob
GETs are routinely redirected to object storage with signed URLs).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ocidist.errors import InvalidContent, TimedOut, Unavailable

MAX_REDIRECTS = 10
CHUNK = 1 << 20


@dataclass(frozen=True)
class TLSConfig:
    insecure: bool = False
    ca_files: tuple[str, ...] = ()
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    # A read that sees no byte for this long is a stall; the request is retried.
    read: float = 30.0


class Deadline:
    """The whole command's deadline (``--timeout``), shared by every request."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def check(self, what: str) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise TimedOut(f"{what}: timed out (deadline reached)")

    def cap(self, seconds: float) -> float:
        left = self.remaining()
        return seconds if left is None else max(0.001, min(seconds, left))


class Response:
    """A streaming HTTP response; ``close`` returns the connection to the pool
    when the body was read to the end, and discards it otherwise."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, what: str) -> None:
        self._raw = raw
        self.url = url
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self._what = what
        fp = getattr(raw, "_fp", None)
        self._fp = fp if isinstance(fp, http.client.HTTPResponse) else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return list(self._raw.headers.getlist(name))

    def content_length(self) -> int | None:
        v = self.headers.get("Content-Length")
        if v is None or not v.strip().isdigit():
            return None
        return int(v)

    def readinto(self, buf: bytearray | memoryview) -> int:
        fp = self._fp
        if fp is None:
            try:
                return int(self._raw.readinto(buf))
            except HTTPError as e:
                raise _convert(e, self._what) from e
        # urllib3's readinto reads into a new bytes object and copies that
        # into ``buf``; with no content decoding (we never ask for it) the
        # http.client response beneath fills ``buf`` itself. It still tracks
        # Content-Length and chunking, and closes itself at the end, which is
        # what lets ``close`` hand the connection back to the pool.
        try:
            return fp.readinto(buf)
        except TimeoutError as e:
            raise TimedOut(f"{self._what}: timed out") from e
        except (OSError, http.client.HTTPException) as e:
            # IncompleteRead (body cut short), resets: what urllib3 calls
            # a ProtocolError.
            raise Unavailable(f"{self._what}: connection broken") from e

    def read(self, n: int = -1) -> bytes:
        try:
            return self._raw.read(None if n < 0 else n)
        except HTTPError as e:
            raise _convert(e, self._what) from e

    def read_capped(self, cap: int) -> bytes:
        """The whole body, refusing anything over ``cap`` bytes (manifests, errors)."""
        length = self.content_length()
        if length is not None and length > cap:
            self.close()
            raise InvalidContent(f"{self._what}: response of {length} bytes exceeds {cap}")
        data = self.read(cap + 1)
        if len(data) > cap:
            self.close()
            raise InvalidContent(f"{self._what}: response exceeds {cap} bytes")
        self.close()
        return data

    def close(self) -> None:
        # A fully read body hands its connection back to the pool; a partly
        # read one leaves the socket mid-message, so the connection is dropped.
        if not self._raw.closed:
            self._raw.close()
        self._raw.release_conn()


def _convert(e: BaseException, what: str) -> Exception:
    if isinstance(e, MaxRetryError) and e.reason is not None:
        e = e.reason
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: test it first.
    if isinstance(e, NewConnectionError):
        msg = str(e).lower()
        if "refused" in msg:
            return Unavailable(f"{what}: connection refused")
        if "name or service not known" in msg or "nodename nor servname" in msg:
            return Unavailable(f"{what}: unknown host")
        return Unavailable(f"{what}: cannot connect: {e}")
    if isinstance(e, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        return TimedOut(f"{what}: timed out")
    if isinstance(e, SSLError | ssl.SSLError):
        return Unavailable(f"{what}: TLS error: {e}")
    if isinstance(e, ProtocolError):
        return Unavailable(f"{what}: connection broken")
    return Unavailable(f"{what}: {e}")


def _netloc(url: str, what: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        # A hostile token realm or Location ("http://[::1") fails in words.
        raise InvalidContent(f"{what}: invalid URL") from None


class Transport:
    """Connection pools per TLS configuration, shared by all requests of a command."""

    def __init__(self, *, pool_size: int = 16, timeouts: Timeouts | None = None) -> None:
        self._pool_size = pool_size
        self._timeouts = timeouts or Timeouts()
        self._managers: dict[TLSConfig, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def _manager(self, tls: TLSConfig) -> urllib3.PoolManager:
        with self._lock:
            m = self._managers.get(tls)
            if m is None:
                kw: dict[str, Any] = {}
                if tls.insecure:
                    kw["cert_reqs"] = "CERT_NONE"
                    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                elif tls.ca_files:
                    ctx = ssl.create_default_context()
                    for ca in tls.ca_files:
                        ctx.load_verify_locations(cafile=ca)
                    kw["ssl_context"] = ctx
                if tls.client_cert:
                    kw["cert_file"] = tls.client_cert
                    kw["key_file"] = tls.client_key
                m = urllib3.PoolManager(
                    num_pools=32, maxsize=self._pool_size, block=False, retries=False, **kw
                )
                self._managers[tls] = m
            return m

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | Any = None,
        tls: TLSConfig | None = None,
        deadline: Deadline | None = None,
        what: str = "",
        follow_redirects: bool = True,
        auth_host: str | None = None,
    ) -> Response:
        """One request, following redirects by hand. ``auth_host`` is the host
        that may see the Authorization header; any other host gets it stripped."""
        what = what or f"{method} {url}"
        tls = tls or TLSConfig()
        hdrs = dict(headers)
        origin = auth_host or _netloc(url, what)
        for _ in range(MAX_REDIRECTS + 1):
            if deadline is not None:
                deadline.check(what)
            t = self._timeouts
            timeout = urllib3.Timeout(
                connect=deadline.cap(t.connect) if deadline else t.connect,
                read=deadline.cap(t.read) if deadline else t.read,
            )
            if _netloc(url, what) != origin:
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
            try:
                raw = self._manager(tls).request(
                    method,
                    url,
                    headers=hdrs,
                    body=body,
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    retries=False,
                    timeout=timeout,
                )
            except HTTPError as e:
                raise _convert(e, what) from e
            except OSError as e:
                raise Unavailable(f"{what}: {e.strerror or e}") from e
            if follow_redirects and raw.status in (301, 302, 303, 307, 308):
                loc = raw.headers.get("Location")
                raw.drain_conn()
                raw.release_conn()
                if not loc:
                    raise Unavailable(f"{what}: redirect without Location")
                try:
                    url = urljoin(url, loc)
                except ValueError:
                    raise InvalidContent(f"{what}: redirect to an invalid URL") from None
                if raw.status == 303:
                    method, body = "GET", None
                continue
            return Response(raw, url, what)
        raise Unavailable(f"{what}: too many redirects (more than {MAX_REDIRECTS})")

    def close(self) -> None:
        with self._lock:
            for m in self._managers.values():
                m.clear()
            self._managers.clear()
