"""``--timeout`` on the paths test_hostile_http.py does not take: an upload
the registry stops reading (the client blocked in a send) or never answers,
a token endpoint that accepts and says nothing, a proxy that accepts the
CONNECT and says nothing. Each must end within the deadline plus slack, in
one line, whatever the server does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.hostile import HostileRegistry, HostileServer, Peer, Request, answer
from tests.harness.tinyproxy import loopback_name
from tests.test_hostile_http import dist, fails

DEADLINE = 3.0
SLACK = 4.0  # interpreter start-up on a loaded machine, and the pauses of the run


def _head(peer: Peer) -> tuple[str, str] | None:
    """Read one request head (not its body): method and path."""
    while b"\r\n\r\n" not in peer._buf:
        if not peer.alive or not peer._fill():
            return None
    head, peer._buf = peer._buf.split(b"\r\n\r\n", 1)
    method, path, _ = [*head.decode("latin-1").split("\r\n")[0].split(" ", 2), "", ""][:3]
    return method, path


def _upload_then(stall_reading: bool) -> object:
    """A registry that starts uploads, then either stops reading the body of
    the PATCH/PUT that follows (the client blocks in its send once the
    socket buffers are full) or reads it all and never answers."""

    def script(peer: Peer) -> None:
        while (got := _head(peer)) is not None:
            method, path = got
            if method == "HEAD":
                peer.send(answer(404, head=True))
            elif method == "GET" and path.rstrip("/") == "/v2":
                peer.send(answer(200, b"{}"))
            elif method == "POST":
                peer.send(answer(202, headers={"Location": "/v2/a/blobs/uploads/u1"}))
            elif stall_reading:
                peer.hold()
                return
            else:
                while peer._fill():  # the body, until the client gives up
                    peer._buf = b""
                return
            if not peer.alive:
                return

    return script


@pytest.mark.parametrize("stall_reading", [True, False], ids=["body-never-read", "never-answered"])
def test_timeout_holds_in_an_upload(tmp_path: Path, stall_reading: bool) -> None:
    blob = tmp_path / "blob"
    # Far more than loopback's socket buffers hold, so a send must block.
    blob.write_bytes(hashlib.sha256(b"x").digest() * (1 << 20))  # 32 MiB
    with HostileServer(_upload_then(stall_reading)) as srv:  # type: ignore[arg-type]
        r = dist(tmp_path, "--timeout", f"{DEADLINE:g}s", "push-object", f"{srv.host}/a",
                 str(blob))  # fmt: skip
        line = fails(r, "timed out", within=DEADLINE + SLACK)
        # The deadline said once ("timed out after 1 attempts (timed out …)" before).
        assert line.count("timed out") == 1, line


@pytest.fixture
def silent() -> Iterator[HostileServer]:
    """Accepts connections and never says a thing."""
    with HostileServer(lambda peer: peer.hold()) as s:
        yield s


def test_timeout_holds_in_a_token_fetch(tmp_path: Path, silent: HostileServer) -> None:
    with HostileRegistry() as reg:
        realm = f"{silent.url}/token"

        def challenge(peer: Peer, req: Request) -> bool:
            hdrs = {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'}
            return peer.send(answer(401, b"{}", hdrs))

        reg.on(None, "^/v2/", challenge)
        r = dist(tmp_path, "--timeout", f"{DEADLINE:g}s", "resolve", reg.ref())
        line = fails(r, "timed out", within=DEADLINE + SLACK)
        assert "token" in line, line


def test_timeout_holds_in_a_proxy_connect(
    tmp_path: Path, silent: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that takes the CONNECT and never answers it."""
    name = loopback_name()
    if name is None:
        pytest.skip("no host name resolves to loopback here (the proxy skips loopback)")
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                "https_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", silent.url)
    d = tmp_path / "certs.d" / f"{name}:443"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(f'server = "https://{name}:443"\n')
    r = dist(tmp_path, "--hosts-dir", str(tmp_path / "certs.d"), "--timeout",
             f"{DEADLINE:g}s", "resolve", f"{name}:443/a/b:v1")  # fmt: skip
    line = fails(r, "timed out", within=DEADLINE + SLACK)
    assert "proxy" in line, line


# -- upload resumes: attempts count per blob and need progress --------------------------
def test_an_upload_that_gains_a_byte_per_attempt_gives_up(tmp_path: Path) -> None:
    """Each PATCH is read and left unanswered (the connection closes); the
    status GET then says the registry holds one byte more than last time.
    One more byte is not progress: the push gives up after the policy's
    attempts, not one PATCH per byte."""
    held = [0]
    with HostileRegistry() as reg:

        def post(peer: Peer, req: Request) -> bool:
            return peer.send(answer(202, headers={"Location": "/v2/a/blobs/uploads/u1"}))

        def patch(peer: Peer, req: Request) -> bool:
            held[0] += 1
            return False  # close without an answer

        def status(peer: Peer, req: Request) -> bool:
            hdrs = {"Location": "/v2/a/blobs/uploads/u1", "Range": f"0-{held[0] - 1}"}
            return peer.send(answer(204, headers=hdrs))

        reg.on("HEAD", "/blobs/", lambda peer, req: peer.send(answer(404, head=True)))
        reg.on("POST", "/blobs/uploads/$", post)
        reg.on("PATCH", "/blobs/uploads/u1$", patch)
        reg.on("GET", "/blobs/uploads/u1$", status)
        blob = tmp_path / "blob"
        blob.write_bytes(b"z" * (6 << 20))  # chunked: over the monolithic maximum
        r = dist(tmp_path, "--timeout", "60s", "push-object", f"{reg.host}/a", str(blob))
        line = fails(r, "gave up after 5 attempts", within=30)
        assert len(reg.requests("PATCH")) <= 5, line
