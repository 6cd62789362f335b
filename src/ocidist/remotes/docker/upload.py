"""One blob upload session: a content ``Writer`` whose bytes go to a registry.

Small blobs (up to ``monolithic_max``) are held in memory and sent when the
writer commits: in one ``POST …/blobs/uploads/?digest=`` carrying the body
where the registry takes that (the spec's single-request upload), else with
``POST`` (a session) and one ``PUT <location>?digest=``. Larger ones of
known size are streamed into one ``PATCH`` with ``Content-Range:
start-end`` for the rest of the blob (or ``chunk_size`` bytes per PATCH), as
the copy writes them (uploadstream.py): no round trip per chunk. Each
answer's ``Location`` replaces the last and its ``Range`` says how far the
registry got. When a PATCH breaks off, the writer asks the registry (``GET
<location>`` → ``Range: 0-N``) and raises ``UploadRestarted``: its offset
is now N, and ``content.copy`` feeds it again from there (a consumed
request body is never replayed blindly; nothing is held to replay). When
the registry cannot say (the session is gone, or an offset past what was
sent, which would skip bytes) the session is restarted and the offset drops
to 0. A blob of unknown size goes in held chunks of ``BUFFERED_CHUNK``,
each re-sent from memory from the registry's offset when lost.

The writer checks sizes but does not hash: the registry hashes what it
received and refuses a ``digest=`` that does not match (``DIGEST_INVALID``,
raised here as ``DigestMismatch``; Distribution 2.8.2 stores nothing then).
That check covers what was actually sent, resumed chunks included, where a
local hash would only see what was written to us — a second sha256 of
bytes the store verified at ingest (or the fetcher verifies in a copy), and
half our CPU when pushing large layers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, NoReturn

from ocidist.content import Status
from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    DigestMismatch,
    FailedPrecondition,
    NotFound,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UploadRestarted,
)
from ocidist.remotes.docker.hosts import RegistryHost
from ocidist.remotes.docker.httpconn import decimal
from ocidist.remotes.docker.retry import RETRYABLE_STATUS
from ocidist.remotes.docker.session import Session
from ocidist.remotes.docker.singlepost import SinglePost
from ocidist.remotes.docker.transport import Response
from ocidist.remotes.docker.uploadstream import OneShot, Sender
from ocidist.text import quote

KiB = 1 << 10
MiB = 1 << 20


class PushOptions(NamedTuple):
    # Bytes per PATCH; 0 = one PATCH for the rest of the blob. The bytes are
    # streamed into it as the copy reads them (uploadstream.py), so this is
    # no longer the memory an upload holds, only how often it waits a round
    # trip for an answer: 4 MiB chunks over 80 ms and 20 MB/s spent a third
    # of a 1 GB push waiting (84 s, where one connection carries it in 50).
    chunk_size: int = 0
    # Blobs up to this size go in one request with no PATCH round trip
    # (a single POST, or the PUT to a session); held whole until commit.
    monolithic_max: int = 4 * MiB
    # Objects smaller than this are sent without asking first (HEAD) whether
    # the registry has them: on a registry that lacks them (the usual case for
    # a push) the HEAD is a wasted round trip, and where it has them, sending
    # one again costs about what asking does. 512 KiB is one round trip's
    # worth of bytes at ~10 MB/s and ~50 ms; larger blobs are looked up first.
    lookup_min: int = 512 * KiB
    # Try the single-request upload (POST ?digest= with the body) for small
    # blobs; a registry that does not take it is remembered (SinglePost).
    single_post: bool = True


StartFunc = Callable[[], Response]

# Chunks of an upload of unknown size (held until confirmed, then sent),
# when no chunk size is given; and the PATCHes a streamed upload falls back to
# when the registry refuses one PATCH for the whole blob.
BUFFERED_CHUNK = 4 * MiB


class BlobWriter:
    """A registry upload session as a content Writer (see module docstring)."""

    def __init__(
        self,
        session: Session,
        host: RegistryHost,
        scopes: tuple[str, ...],
        what: str,
        dgst: Digest,
        total: int,
        start: StartFunc,
        first: Response | None,
        options: PushOptions,
        *,
        exists: Callable[[], bool],
        uploads: str = "",
        single: SinglePost | None = None,
    ) -> None:
        """``first`` is the answer that opened the session, or None to open
        one only when bytes must go (a small blob then goes at commit, in one
        POST to ``uploads`` when ``single`` says the registry takes that)."""
        self._session = session
        self._host = host
        self._scopes = scopes
        self._what = what
        self._expected = dgst
        self._total = total
        self._start = start  # opens a fresh session (POST) when the old one is lost
        self._exists = exists
        self._options = options
        self._uploads = uploads
        self._single = single
        self._started_at = self._updated_at = time.time()
        self._committed = False
        self._closed = False
        self._location = ""  # the session's upload URL; "" until one is open
        self._chunk = options.chunk_size
        self._min_chunk = 0  # the registry's OCI-Chunk-Min-Length
        self._stream: Sender | None = None  # the PATCH being streamed, if any
        # One retry budget for the whole blob (retry.py); _mark is how far the
        # registry had confirmed at the last failure (progress since resets it).
        self._tries = session.retry.begin(what, session.deadline)
        self._mark = 0
        self._reset()
        if first is not None:
            self._open(first)

    # -- session state -------------------------------------------------------

    def _reset(self) -> None:
        self._sent = 0  # bytes the registry has confirmed
        self._buf = bytearray()  # bytes written but not confirmed, from _sent on
        self._chunked = self._total > self._options.monolithic_max
        self._drop_stream()

    def _drop_stream(self) -> None:
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            stream.stop()

    def _open(self, resp: Response) -> None:
        """Take the session that ``resp`` (a 202 to a POST) opened."""
        self._location = _location(resp, self._what)
        self._min_chunk = _int_header(resp, "OCI-Chunk-Min-Length") or 0
        chunk = self._chunk
        self._chunk = max(chunk, self._min_chunk) if chunk > 0 else 0

    def _buffered_chunk(self) -> int:
        """The chunk of an upload of unknown size (held, then sent)."""
        return max(self._chunk or BUFFERED_CHUNK, 1)

    def _new_session(self) -> None:
        resp = self._start()
        resp.close()
        self._open(resp)

    def _restart(self, why: str) -> UploadRestarted:
        self._reset()
        self._new_session()
        return UploadRestarted(f"{self._what}: {why}; upload restarted from byte 0")

    # -- Writer ----------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> int:
        if self._closed or self._committed:
            raise FailedPrecondition(f"{self._what}: writer is closed")
        n = len(data)
        self._updated_at = time.time()
        if self._chunked and self._total >= 0:
            self._stream_write(data)
            return n
        self._buf += data
        if not self._chunked and len(self._buf) > self._options.monolithic_max:
            self._chunked = True  # size was unknown and turned out large
        if self._chunked and not self._location and len(self._buf) >= self._buffered_chunk():
            self._new_session()  # may raise the chunk size (OCI-Chunk-Min-Length)
        while self._chunked and len(self._buf) >= self._buffered_chunk():
            self._send(self._buffered_chunk())
        return n

    # -- streamed PATCHes (uploadstream.py) ----------------------------------------

    def _stream_write(self, data: bytes | memoryview) -> None:
        if self._stream is None:
            if not self._location:
                self._new_session()
            self._stream = Sender(self._location, self._sent, self._total, self._chunk, self._patch)
        # A copy: the caller reuses its buffer as soon as this returns.
        if not self._stream.feed(bytes(data)):
            self._recover(self._stream)

    def _patch(self, location: str, start: int, end: int, body: OneShot) -> tuple[int, str]:
        """One streamed PATCH of bytes ``[start, end)`` (the sender's thread):
        the offset the registry confirmed and the session's next Location.
        Touches no state of the writer (the Sender keeps what it returns)."""
        resp = self._session.request(
            self._host,
            "PATCH",
            location,
            scopes=self._scopes,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{end - 1}",
                "Content-Length": str(end - start),
            },
            body=body,
            what=self._what,
            idempotent=False,
            ok=(202, 204),
        )
        resp.read_capped(64 * 1024)
        got = _range_end(resp)
        reached = end if got is None else got
        if reached != end:
            raise Unavailable(
                f"{self._what}: registry reports offset {reached} after a chunk "
                f"of bytes {start}-{end - 1}"
            )
        return reached, _location(resp, self._what, location)

    def _adopt(self, stream: Sender) -> BaseException | None:
        """Wait for ``stream`` to end and take what the registry answered it."""
        self._stream = None
        e = stream.wait()
        stream.stop()
        self._location = stream.location
        self._sent = stream.confirmed
        return e

    def _recover(self, stream: Sender) -> NoReturn:
        """The stream failed: ask the registry how far it got, then raise
        UploadRestarted for the copy to feed the writer again from there
        (the bytes after it are not held).

        A PATCH for the whole rest of the blob that the registry refused, or
        that broke off before the registry kept any of it (a proxy with a
        body size limit answers 413 and closes while we send), is not tried
        again that way: the rest goes in PATCHes of ``BUFFERED_CHUNK``, as
        registries that take chunks at all take them."""
        e = self._adopt(stream)
        if self._closed or e is None:
            raise FailedPrecondition(f"{self._what}: writer is closed")
        if not isinstance(e, Unavailable | RegistryError):
            raise e
        refused = isinstance(e, RegistryError) and _refusal(e) and not _digest_invalid(e)
        whole = stream.chunk <= 0
        if isinstance(e, RegistryError) and not (_recoverable(e) or (whole and refused)):
            raise e
        fallback = max(BUFFERED_CHUNK, self._min_chunk)
        if whole and refused:
            self._chunk = fallback  # before the status GET, which may restart
        before = self._sent
        reached = self._status()
        if not 0 <= reached <= stream.fed:
            # More than the stream was ever handed (or than the blob has):
            # going on from there would skip bytes never sent, with only the
            # registry's digest check left to notice. As _resync does for
            # held chunks, the upload starts again.
            raise self._restart(f"registry holds {reached} bytes, of which {stream.fed} were sent")
        self._sent = reached
        if whole and reached == before:
            self._chunk = fallback
        if not refused:
            self._failed(e)
        restarted = UploadRestarted(
            f"{self._what}: upload broke off ({e}); resumed from byte {reached}"
        )
        restarted.gained = max(reached - before, 0)
        raise restarted

    def _status(self) -> int:
        """How many bytes the registry holds of the upload (a status GET);
        restarts the upload when it no longer knows the session."""
        try:
            resp = self._session.request(
                self._host,
                "GET",
                self._location,
                scopes=self._scopes,
                what=self._what,
                ok=(204, 200),
            )
            resp.read_capped(64 * 1024)
        except (NotFound, RegistryError) as e:
            raise self._restart(f"upload session lost ({e})") from e
        self._location = _location(resp, self._what, self._location)
        got = _range_end(resp)
        # Distribution 2.8.2 answers "0-0" both for an empty upload and for
        # one byte (2026-11): taken to hold nothing (the byte goes again).
        return 0 if got is None or got == 1 else got

    def status(self) -> Status:
        held = self._stream.fed if self._stream is not None else self._sent + len(self._buf)
        return Status(
            key=f"push-{self._expected}",
            offset=held,
            total=self._total,
            expected=self._expected,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    def digest(self) -> Digest:
        # The digest the upload is for; the registry verifies it on commit.
        return self._expected

    def truncate(self, size: int) -> None:
        if size != 0:
            raise FailedPrecondition(f"{self._what}: an upload can only restart from 0")
        if not self._location:
            self._reset()  # nothing has gone out yet
        elif self._stream is not None or self._sent + len(self._buf):
            raise self._restart("truncated")

    def commit(self, size: int, expected: Digest, labels: Mapping[str, str] | None = None) -> None:
        """Finish the upload (labels mean nothing to a registry)."""
        if self._committed:
            raise AlreadyExists(f"{self._what}: already committed")
        held = self.status().offset
        if held != size:
            raise DigestMismatch(
                f"{self._what}: size mismatch: wrote {held} bytes, expected {size}"
            )
        if expected != self._expected:
            raise DigestMismatch(
                f"{self._what}: digest mismatch: committing as {expected}, opened for "
                f"{self._expected}"
            )
        if self._chunked and self._total >= 0:
            stream = self._stream
            if stream is not None and self._adopt(stream) is not None:
                self._recover(stream)  # raises: the copy feeds the rest again
            if not self._location:
                self._new_session()
            self._finish(expected, b"")
        elif self._chunked:
            if not self._location:
                self._new_session()
            while self._buf:
                self._send(len(self._buf))
            self._finish(expected, b"")
        else:
            # The buffer itself, not a copy: nothing changes it from here on.
            body = self._buf
            if self._location or not self._post_whole(expected, body):
                self._finish(expected, body)
        self._committed = True

    def close(self) -> None:
        # An unfinished session is left to the registry's upload purger: a
        # DELETE here would cost a round trip on every failure path.
        self._closed = True
        self._buf = bytearray()
        self._drop_stream()

    # -- requests --------------------------------------------------------------

    def _post_whole(self, expected: Digest, body: bytearray) -> bool:
        """Upload ``body`` in one POST if the registry takes that; False when
        the upload must go on with a PUT to the (then open) session."""
        single = self._single
        if single is None or not self._uploads or not single.claim(len(body)):
            self._new_session()
            return False
        url = with_query(self._uploads, "digest", str(expected))
        try:
            resp = self._session.request(
                self._host,
                "POST",
                url,
                scopes=self._scopes,
                headers={"Content-Type": "application/octet-stream"},
                body=body,
                what=self._what,
                # The whole blob in one request from bytes we hold: a replay is
                # a fresh complete upload of content-addressed bytes, never a
                # stream resumed blindly (at worst the registry keeps a stray
                # session it expires).
                idempotent=True,
                ok=(201, 202),
            )
            resp.read_capped(64 * 1024)
        except (NotFound, RegistryError) as e:
            if isinstance(e, RegistryError) and _digest_invalid(e):
                single.settle(None)
                raise _mismatch(expected, self._what) from e
            if isinstance(e, RegistryError) and not _refusal(e):
                single.settle(None)
                raise
            # The registry does not know the form (405, 404, 400 …): the
            # two-request path it must support.
            single.settle(False)
            self._new_session()
            return False
        except BaseException:
            single.settle(None)
            raise
        if resp.status == 201:
            single.settle(True)
            check_digest(resp, expected, self._what)
            return True
        # 202: the registry opened an ordinary session and ignored the body
        # (Distribution 2.8.2, 2026-11); the PUT to that session carries it.
        single.settle(False)
        if resp.header("Location"):
            self._open(resp)
        else:
            self._new_session()  # a 202 without a session to use: open one
        return False

    def _send(self, n: int) -> None:
        """PATCH the first ``n`` held bytes; on loss, continue from the registry's offset."""
        end = self._sent + n
        while self._sent < end:
            start = self._sent
            count = end - start
            try:
                resp = self._session.request(
                    self._host,
                    "PATCH",
                    self._location,
                    scopes=self._scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{start + count - 1}",
                    },
                    body=memoryview(self._buf)[:count],
                    what=self._what,
                    idempotent=False,
                    ok=(202, 204),
                )
                resp.read_capped(64 * 1024)
                self._location = _location(resp, self._what, self._location)
                got = _range_end(resp)
                reached = start + count if got is None else got
                if not start < reached <= start + len(self._buf):
                    raise Unavailable(
                        f"{self._what}: registry reports offset {reached} after a chunk "
                        f"of bytes {start}-{start + count - 1}"
                    )
                self._confirm(reached)
            except (Unavailable, RegistryError) as e:
                if isinstance(e, RegistryError) and not _recoverable(e):
                    raise
                self._failed(e)
                self._resync(start)

    def _confirm(self, reached: int) -> None:
        done = reached - self._sent
        if done:
            # A new buffer for the rest, not an in-place delete: a request body
            # view of the old one may still be alive.
            self._buf = bytearray(memoryview(self._buf)[done:])
            self._sent = reached

    def _resync(self, start: int) -> None:
        """Ask the registry how far the upload got; keep going from there."""
        try:
            resp = self._session.request(
                self._host,
                "GET",
                self._location,
                scopes=self._scopes,
                what=self._what,
                ok=(204, 200),
            )
            resp.read_capped(64 * 1024)
        except (NotFound, RegistryError) as e:
            # Distribution 2.8 cancels a session whose stored size disagrees
            # with the offset signed into its _state (a chunk that landed in
            # part): the status GET then fails (docker-registry 2.8.2, 2026-11).
            raise self._restart(f"upload session lost ({e})") from e
        self._location = _location(resp, self._what, self._location)
        got = _range_end(resp)
        # Distribution 2.8.2 answers "0-0" both for an empty upload and for one
        # byte (2026-11); an upload whose chunk started at 0 is taken to hold nothing.
        reached = 0 if got is None or (got == 1 and start == 0) else got
        if not self._sent <= reached <= self._sent + len(self._buf):
            held = self._sent + len(self._buf)
            raise self._restart(f"registry holds {reached} bytes, expected {self._sent}..{held}")
        self._confirm(reached)

    def _failed(self, e: Unavailable | RegistryError) -> None:
        """An attempt at this blob failed: wait for the next, or raise (retry.py)."""
        gained, self._mark = self._sent - self._mark, self._sent
        self._tries.failed(e, gained=max(gained, 0))

    def _finish(self, expected: Digest, body: bytes | bytearray) -> None:
        url = with_query(self._location, "digest", str(expected))
        headers = {"Content-Type": "application/octet-stream"}
        while True:
            try:
                resp = self._session.request(
                    self._host,
                    "PUT",
                    url,
                    scopes=self._scopes,
                    headers=headers,
                    body=body,
                    what=self._what,
                    # A PUT carrying data goes once: on loss we look before resending.
                    idempotent=not body,
                    ok=(201, 204),
                    attempts=self._tries,
                )
                resp.read_capped(64 * 1024)
                check_digest(resp, expected, self._what)
                return
            except (Unavailable, RegistryError) as e:
                if isinstance(e, RegistryError) and _digest_invalid(e):
                    raise _mismatch(expected, self._what) from e
                if isinstance(e, RegistryError) and not (_recoverable(e) or e.status in (400, 404)):
                    raise
                # The PUT may have landed with its answer lost.
                if self._exists():
                    return
                if not body:
                    raise
                # A monolithic upload holds all its bytes: a fresh session and
                # the same PUT again is a resend of held data, not a blind replay.
                self._failed(e)
                self._new_session()
                url = with_query(self._location, "digest", str(expected))


def _digest_invalid(e: RegistryError) -> bool:
    return e.status == 400 and "DIGEST_INVALID" in e.codes


def _mismatch(expected: Digest, what: str) -> DigestMismatch:
    return DigestMismatch(
        f"{what}: digest mismatch: the registry says the content is not {expected}"
    )


def _refusal(e: RegistryError) -> bool:
    """A 4xx/501 that says "not this way" rather than auth, throttling or an outage."""
    if isinstance(e, Unauthorized | TooManyRequests):
        return False
    if e.status == 501:
        return True
    return 400 <= e.status < 500 and e.status not in RETRYABLE_STATUS


def _recoverable(e: RegistryError) -> bool:
    # 416: the registry's offset differs from the chunk's start; ask it where it is.
    return e.status in RETRYABLE_STATUS or e.status == 416


def _location(resp: Response, what: str, previous: str | None = None) -> str:
    loc = resp.header("Location")
    if not loc:
        if previous is not None:
            return previous
        raise RegistryError(f"{what}: registry answered {resp.status} without Location")
    if loc.startswith(("http://", "https://")):
        return loc  # absolute (Distribution 2.8 sends these): nothing to resolve
    # Relative Locations ("/v2/…") resolve against the URL that answered,
    # which keeps a mirror's or proxy's host. (Imported here: urllib.parse
    # costs ~2 ms of start-up, and a push to Distribution never needs it.)
    from urllib.parse import urljoin

    return urljoin(resp.url, loc)


def with_query(url: str, key: str, value: str) -> str:
    """``url`` with ``key=value`` added to whatever query state it carries.

    The registry's own query (``_state=…``) is kept byte for byte: it is
    signed, and re-encoding it could change it."""
    base, hashmark, fragment = url.partition("#")
    # A digest needs only its ":" escaped; anything else goes through quote().
    if _PLAIN.fullmatch(value):
        quoted = value.replace(":", "%3A")
    else:
        from urllib.parse import quote

        quoted = quote(value, safe="")
    if "?" not in base:
        base += "?"
    elif not base.endswith(("?", "&")):
        base += "&"
    return f"{base}{key}={quoted}{hashmark}{fragment}"


_PLAIN = re.compile(r"[A-Za-z0-9._:-]*")


def _range_end(resp: Response) -> int | None:
    """The offset after the last byte the registry holds (``Range: 0-N`` → N+1)."""
    value = resp.header("Range")
    if not value:
        return None
    text = value.strip()
    if text.startswith("bytes="):
        text = text[len("bytes=") :]
    first, sep, last = text.partition("-")
    start, end = decimal(first), decimal(last)
    if not sep or start != 0 or end is None:
        raise Unavailable(f"bad Range '{quote(value, 40)}' in upload answer")
    return end + 1


def _int_header(resp: Response, name: str) -> int | None:
    return decimal(resp.header(name))


def check_digest(resp: Response, expected: Digest, what: str) -> None:
    header = resp.header("Docker-Content-Digest")
    if header and header.strip() != str(expected):
        shown = quote(header.strip(), 80)
        raise DigestMismatch(f"{what}: registry stored '{shown}', expected {expected}")
