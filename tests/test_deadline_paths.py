"""``--timeout`` on the paths test_hostile_http.py does not take: an upload
the registry stops reading (the client blocked in a send) or never answers,
a token endpoint that accepts and says nothing, a proxy that accepts the
CONNECT and says nothing; and the waits that have no deadline of their own
(another process's lock on an ingest, a `dist serve` that stopped
answering), which the deadline's backstop ends. Each must end within the
deadline plus slack, in one line, whatever the server does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.hostile import HostileRegistry, HostileServer, Peer, Request, answer
from tests.harness.tinyproxy import loopback_name
from tests.test_hostile_http import dist, fails
from tests.test_serve import sockdir, start_serve

__all__ = ["sockdir"]  # the fixture, for the daemon case

DEADLINE = 3.0
SLACK = 4.0  # interpreter start-up on a loaded machine, and the pauses of the run
# Deadline bounds: with the other bounded tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("timing")


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


# -- waits with no deadline of their own: the backstop ----------------------------------
def test_timeout_holds_behind_another_process_ingest(tmp_path: Path) -> None:
    """A second writer of an ingest waits for the first (a second `dist
    fetch` of the same layer does); with --timeout it waits no longer. It
    waited until the first one ended, forever if that one never did."""
    root = str(tmp_path / "root")
    holder = subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", root, "content", "ingest",
         "--expected-size", "100", "k1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdin is not None
    try:
        deadline = time.monotonic() + 60
        while True:  # until the holder has the ingest (and its lock)
            active = dist(tmp_path, "content", "active", "--json").proc.stdout
            if b'"k1"' in active:
                break
            assert holder.poll() is None and time.monotonic() < deadline, holder.stderr
            time.sleep(0.1)
        r = dist(tmp_path, "--timeout", f"{DEADLINE:g}s", "content", "ingest",
                 "--expected-size", "5", "k1")  # fmt: skip
        fails(r, "timed out", within=DEADLINE + SLACK)
        # The holder was not disturbed: it goes on and commits.
        _, err = holder.communicate(b"x" * 100, timeout=60)
        assert holder.returncode == 0, err
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_timeout_holds_with_a_daemon_that_does_not_answer(tmp_path: Path, sockdir: str) -> None:
    """`dist --address`: a daemon that stopped (SIGSTOP; a hung one alike)
    ends the command at --timeout, under --json an error event that says so.
    gRPC gave up on its own only after ~20 s ("connection refused")."""
    served = start_serve(tmp_path / "served", os.path.join(sockdir, "dist.sock"))
    os.kill(served.proc.pid, signal.SIGSTOP)
    try:
        r = dist(tmp_path, "--address", served.sock, "--timeout", f"{DEADLINE:g}s",
                 "--json", "images", "ls")  # fmt: skip
    finally:
        os.kill(served.proc.pid, signal.SIGCONT)
        assert served.stop() == 0
    assert r.proc.returncode == 1, r.proc.stderr
    assert r.seconds < DEADLINE + SLACK, f"took {r.seconds:.1f}s"
    event = json.loads(r.proc.stderr.decode().strip().splitlines()[-1])
    assert event["event"] == "error" and event["error"] == "TimedOut", event
    assert "timed out" in event["message"], event


def test_a_daemon_has_no_deadline(tmp_path: Path, sockdir: str) -> None:
    """DIST_TIMEOUT in the environment of `dist serve` bounds its clients'
    commands, not the daemon's life."""
    served = start_serve(
        tmp_path / "served", os.path.join(sockdir, "dist.sock"), env={"DIST_TIMEOUT": "1s"}
    )
    try:
        time.sleep(1 + 1 + 2)  # the deadline, the backstop's grace, and some
        assert served.proc.poll() is None, served.proc.stderr
        r = dist(tmp_path, "--address", served.sock, "images", "ls")
        assert r.proc.returncode == 0, r.proc.stderr
    finally:
        assert served.stop() == 0


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
