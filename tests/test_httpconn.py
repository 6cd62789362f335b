"""The transport's own HTTP/1.1 framing against a raw socket server on loopback.

The registry tests cover the common paths (Content-Length bodies, redirects,
faults, chunked error bodies); these pin the rarer framings a registry, proxy
or object store may send, byte for byte.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from ocidist.errors import InvalidContent, Unavailable
from ocidist.remotes.docker.transport import TLSConfig, Transport
from tests.harness.authfixtures import pki
from tests.harness.certs import CA
from tests.harness.hostile import HostileServer, Peer

__all__ = ["pki"]


class RawServer:
    """Answers each request on a connection with the next canned reply (raw bytes)."""

    def __init__(self, replies: list[bytes], close_after: bool = False) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after = close_after
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            # The file too: an open makefile keeps the socket from closing.
            with conn, conn.makefile("rb") as f:
                while self.replies:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = f.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    self.requests.append(head + f.read(length))
                    conn.sendall(self.replies.pop(0))
                    if self.close_after:
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def transport() -> Iterator[Transport]:
    t = Transport()
    yield t
    t.close()


def get(t: Transport, url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    resp = t.request(method, url, headers={"Accept": "*/*"}, body=body)
    data = resp.read_capped(1 << 20)
    return bytes([resp.status % 256]) + data


def test_chunked_body_with_extensions_and_trailers(transport: Transport) -> None:
    srv = RawServer(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]
    )
    try:
        assert get(transport, srv.url + "/a") == b"\xc8hello world"
        assert get(transport, srv.url + "/b") == b"\xc8ok"
        assert srv.connections == 1  # the chunked answer left the connection reusable
    finally:
        srv.close()


def test_continue_folded_header_and_repeated_fields(transport: Transport) -> None:
    srv = RawServer(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=a\r\n"
            b"www-authenticate: Bearer realm=b,\r\n service=x\r\nContent-Length: 0\r\n\r\n"
        ]
    )
    try:
        resp = transport.request("GET", srv.url + "/", headers={})
        assert resp.status == 401
        assert resp.header_all("WWW-Authenticate") == ["Basic realm=a", "Bearer realm=b, service=x"]
        assert resp.header("www-AUTHENTICATE") == "Basic realm=a"
        resp.close()
    finally:
        srv.close()


def test_close_delimited_body_is_not_reused(transport: Transport) -> None:
    srv = RawServer([b"HTTP/1.0 200 OK\r\n\r\nuntil close"], close_after=True)
    try:
        assert get(transport, srv.url + "/") == b"\xc8until close"
    finally:
        srv.close()


def test_head_and_204_have_no_body(transport: Transport) -> None:
    srv = RawServer(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        ]
    )
    try:
        resp = transport.request("HEAD", srv.url + "/", headers={})
        assert resp.status == 200 and resp.content_length() == 1234
        resp.close()
        assert get(transport, srv.url + "/", method="DELETE") == b"\xcc"
        assert get(transport, srv.url + "/") == b"\xc8x"
        assert srv.connections == 1
    finally:
        srv.close()


def test_request_bodies_are_framed(transport: Transport) -> None:
    srv = RawServer([b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"] * 2)
    try:
        get(transport, srv.url + "/put", method="PUT", body=b"abc")
        get(transport, srv.url + "/post", method="POST")
        put, post = srv.requests
        assert put.startswith(b"PUT /put HTTP/1.1\r\n") and put.endswith(b"\r\n\r\nabc")
        assert b"Content-Length: 3\r\n" in put
        assert b"Content-Length: 0\r\n" in post
        assert f"Host: 127.0.0.1:{srv.port}\r\n".encode() in put
    finally:
        srv.close()


def test_stale_keepalive_connection_is_replaced(transport: Transport) -> None:
    # The server closes after each answer without saying so: the pooled
    # connection is dead when the next GET takes it.
    srv = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"] * 2, close_after=True)
    try:
        assert get(transport, srv.url + "/1") == b"\xc8a"
        assert get(transport, srv.url + "/2") == b"\xc8a"
        assert srv.connections == 2
    finally:
        srv.close()


def test_a_stale_connection_is_resent_once_on_a_new_one(transport: Transport) -> None:
    """Two idle connections, each of which the server drops on its next
    request (it looks alive until then): the request is sent again once, on
    a new connection, not on every idle one in turn."""
    seen: list[str] = []

    def script(peer: Peer) -> None:
        if (req := peer.request()) is None or not peer.send(OK2):
            return
        if (req := peer.request()) is not None:
            seen.append(req.path)  # and close without an answer

    with HostileServer(script) as srv:
        first = [transport.request("GET", f"{srv.url}/warm", headers={}) for _ in range(2)]
        for resp in first:  # two connections now, both back in the pool
            assert resp.read_capped(100) == b"ok"
        assert get(transport, srv.url + "/x") == b"\xc8ok"
        assert seen == ["/x"], seen  # one stale try, then a new connection answered
        assert srv.connections == 3


@pytest.mark.parametrize(
    "reply",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
    ],
    ids=["not-http", "two-lengths", "no-colon", "too-many-fields", "long-line"],
)
def test_malformed_answers_fail_in_words(transport: Transport, reply: bytes) -> None:
    srv = RawServer([reply], close_after=True)
    try:
        with pytest.raises(Unavailable, match="invalid HTTP response"):
            transport.request("GET", srv.url + "/", headers={}, what="probe")
    finally:
        srv.close()


def test_body_cut_short_is_a_broken_connection(transport: Transport) -> None:
    srv = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], close_after=True)
    try:
        resp = transport.request("GET", srv.url + "/", headers={}, what="probe")
        with pytest.raises(Unavailable, match="probe: connection broken"):
            resp.read(10)
        resp.close()
    finally:
        srv.close()


def test_header_injection_is_refused(transport: Transport) -> None:
    srv = RawServer([])
    try:
        with pytest.raises(InvalidContent, match="invalid request"):
            transport.request("GET", srv.url + "/", headers={"Authorization": "a\r\nX-Evil: 1"})
        with pytest.raises(InvalidContent, match="invalid request"):
            transport.request("GET", srv.url + "/a b", headers={})
    finally:
        srv.close()


# -- strict framing (issue 15): strict parsing, caps hold, no desync -------------------------
OK2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _serve_each(*replies: bytes) -> HostileServer:
    """A server answering its n-th request (on whichever connection) with
    ``replies[n]``, and the last one again after that."""
    count = [0]

    def script(peer: Peer) -> None:
        while peer.request() is not None:
            n = count[0]
            count[0] += 1
            if not peer.send(replies[min(n, len(replies) - 1)]):
                return

    return HostileServer(script).__enter__()


@pytest.mark.parametrize(
    "first",
    [
        OK2 + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        OK2 + b"garbage",
    ],
    ids=["smuggled-after-length", "smuggled-after-chunked", "garbage-after"],
)
def test_bytes_after_an_answer_are_never_the_next_answer(
    transport: Transport, first: bytes
) -> None:
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
    srv = _serve_each(first, good)
    try:
        assert get(transport, srv.url + "/1") == b"\xc8ok"
        assert get(transport, srv.url + "/2") == b"\xc8good"
        assert srv.connections == 2  # the first connection was not reused
    finally:
        srv.close()


def test_a_body_sent_to_head_drops_the_connection(transport: Transport) -> None:
    srv = _serve_each(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", OK2)
    try:
        resp = transport.request("HEAD", srv.url + "/", headers={})
        assert resp.status == 200 and resp.content_length() == 4
        resp.close()
        assert get(transport, srv.url + "/") == b"\xc8ok"
        assert srv.connections == 2
    finally:
        srv.close()


def test_clean_answers_keep_one_connection(transport: Transport) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    srv = _serve_each(OK2, chunked, b"HTTP/1.1 204 No Content\r\n\r\n", OK2)
    try:
        for status in (b"\xc8ok", b"\xc8ok", b"\xcc", b"\xc8ok"):
            assert get(transport, srv.url + "/") == status
        assert srv.connections == 1
    finally:
        srv.close()


@pytest.mark.parametrize(
    "lengths",
    [
        ["²"],
        ["1" * 5000],
        ["1" * 21],
        ["1, 2"],
        ["1", "2"],
        ["-1"],
        ["0x10"],
        ["12abc"],
        [""],
    ],
    ids=["unicode-digit", "5000-digits", "21-digits", "list", "two-fields", "negative",
         "hex", "suffix", "empty"],
)  # fmt: skip
def test_bad_content_length_fails_in_words(transport: Transport, lengths: list[str]) -> None:
    head = "".join(f"Content-Length: {v}\r\n" for v in lengths)
    srv = _serve_each(f"HTTP/1.1 200 OK\r\n{head}\r\nx".encode())
    try:
        for method in ("GET", "HEAD"):
            with pytest.raises(Unavailable, match="invalid HTTP response") as exc:
                transport.request(method, srv.url + "/", headers={}, what="probe")
            assert len(str(exc.value)) < 200
    finally:
        srv.close()


def test_equal_repeated_lengths_are_one_length(transport: Transport) -> None:
    srv = _serve_each(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
    try:
        assert get(transport, srv.url + "/") == b"\xc8ok"
    finally:
        srv.close()


def test_chunked_wins_over_content_length_and_the_connection_goes(
    transport: Transport,
) -> None:
    both = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    srv = _serve_each(both, OK2)
    try:
        assert get(transport, srv.url + "/") == b"\xc8ok"
        assert get(transport, srv.url + "/") == b"\xc8ok"
        assert srv.connections == 2
    finally:
        srv.close()


def test_unknown_transfer_coding_is_refused(transport: Transport) -> None:
    srv = _serve_each(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    try:
        with pytest.raises(Unavailable, match="invalid HTTP response"):
            transport.request("GET", srv.url + "/", headers={}, what="probe")
    finally:
        srv.close()


def _endless(first: bytes, line: bytes) -> HostileServer:
    """Answers ``first`` then ``line`` over and over until the client leaves."""

    def script(peer: Peer) -> None:
        if peer.request() is None or not peer.send(first):
            return
        block = line * max(1, 16384 // len(line))
        while peer.send(block):
            pass

    return HostileServer(script).__enter__()


@pytest.mark.parametrize(
    ("first", "line", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nX-A: a\r\n", b" folded continuation\r\n", "over 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\n", b"X-Field: value\r\n", "65536 bytes"),
        (b"", b"HTTP/1.1 100 Continue\r\n\r\n", "informational"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", b"X-T: t\r\n", "65536"),
    ],
    ids=["obs-fold", "header-lines", "100-continue", "trailers"],
)
def test_endless_heads_are_capped(
    transport: Transport, first: bytes, line: bytes, words: str
) -> None:
    """Endless header, continuation, 1xx or trailer lines: a clean error at
    the cap, quickly and in bounded memory (not when the server stops)."""
    srv = _endless(first, line)
    try:
        start = time.monotonic()
        with pytest.raises(Unavailable, match=words):
            resp = transport.request("GET", srv.url + "/", headers={}, what="probe")
            resp.read(1 << 20)
        assert time.monotonic() - start < 10
    finally:
        srv.close()


def test_many_fields_under_the_line_limit_are_capped(transport: Transport) -> None:
    # 90 fields of 1000 bytes: each line is short, the block is not.
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(90))
    srv = _serve_each(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")
    try:
        with pytest.raises(Unavailable, match="65536 bytes"):
            transport.request("GET", srv.url + "/", headers={}, what="probe")
    finally:
        srv.close()


def test_a_few_informational_answers_are_skipped(transport: Transport) -> None:
    continues = b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 102 Processing\r\n\r\n"
    srv = _serve_each(continues + OK2)
    try:
        assert get(transport, srv.url + "/") == b"\xc8ok"
    finally:
        srv.close()


def test_the_head_must_arrive_within_the_read_timeout() -> None:
    """Without any deadline, a head trickled one line at a time (each under
    the stall timeout) still ends at the read timeout."""
    from ocidist.errors import TimedOut
    from ocidist.remotes.docker.transport import Timeouts

    def script(peer: Peer) -> None:
        if peer.request() is None or not peer.send(b"HTTP/1.1 200 OK\r\n"):
            return
        while peer.send(b"X-A: a\r\n") and not peer.server.stopping.wait(0.1):
            pass

    t = Transport(timeouts=Timeouts(connect=1.0, read=1.0))
    with HostileServer(script) as srv:
        start = time.monotonic()
        with pytest.raises(TimedOut, match="no complete answer within 1s"):
            t.request("GET", srv.url + "/", headers={}, what="probe")
        assert time.monotonic() - start < 5
    t.close()


def test_what_cannot_change_is_worth_fewer_attempts() -> None:
    """Unknown host: one more try; other connect failures: the policy's."""
    from ocidist.remotes.docker import transport as t

    unknown = t._connect_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "x")
    assert isinstance(unknown, Unavailable) and unknown.attempts == 2
    assert "unknown host" in str(unknown)
    again = t._connect_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "x")
    assert isinstance(again, Unavailable) and again.attempts is None
    refused = t._connect_error(ConnectionRefusedError(111, "refused"), "x")
    assert isinstance(refused, Unavailable) and refused.attempts is None


def test_bytes_after_an_answer_in_the_same_tls_record(pki: CA) -> None:
    """Over TLS, an answer and a smuggled one in one record: the body's last
    read takes only what the length says, and OpenSSL keeps the rest in
    its own buffer, where a poll of the socket does not see it. The
    connection went back to the pool and the smuggled answer was read as
    the next one ("evil" for "good")."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issued = pki.server("smuggle-tls")
    ctx.load_cert_chain(issued.cert_path, issued.key_path)
    body = b"b" * 100_000
    first = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    evil = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    count = [0]

    def script(peer: Peer) -> None:
        while peer.request() is not None:
            count[0] += 1
            reply = (
                first + evil
                if count[0] == 1
                else b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
            )
            if not peer.send(reply):
                return

    transport = Transport()
    tls = TLSConfig(ca_files=(str(pki.cert_path),))
    with HostileServer(script, tls=ctx) as srv:
        try:
            resp = transport.request("GET", f"{srv.url}/1", headers={}, tls=tls)
            assert resp.read_capped(1 << 20) == body
            resp = transport.request("GET", f"{srv.url}/2", headers={}, tls=tls)
            assert resp.read_capped(1 << 20) == b"good"
            assert srv.connections == 2
        finally:
            transport.close()
