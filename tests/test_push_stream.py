"""A big blob's upload is streamed: one PATCH for the rest of the blob (no
round trip per chunk), fed as the copy reads, and a PATCH that breaks off is
resumed from the offset the registry reports, the copy reading the source
again from there (remotes/docker/uploadstream.py)."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ocidist.client import Client
from ocidist.errors import RegistryError
from ocidist.remotes.docker.uploadstream import Aborted, OneShot
from tests.harness import FaultProxy, Registry, large_image, push_image
from tests.harness.faultrules import Drop
from tests.harness.hostile import HostileRegistry, HostileServer, Peer, Request, answer
from tests.test_hostile_http import dist

MiB = 1 << 20


def test_a_big_blob_goes_in_one_patch(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry
) -> None:
    data = random.Random(5).randbytes(9 * MiB + 123)  # over the monolithic maximum
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    r = dist(tmp_path, "push-object", f"{fault_proxy.host}/stream-one", str(blob))
    assert r.proc.returncode == 0, r.proc.stderr
    patches = [e for e in fault_proxy.log if e.method == "PATCH"]
    # Was one PATCH per 4 MiB chunk, each waiting for its answer.
    assert len(patches) == 1
    assert patches[0].header("Content-Range") == f"0-{len(data) - 1}"
    assert patches[0].header("Content-Length") == str(len(data))
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with urllib.request.urlopen(f"{registry.url}/v2/stream-one/blobs/{dgst}") as resp:
        assert resp.read() == data


def test_a_broken_patch_resumes_at_the_registrys_offset(tmp_path: Path) -> None:
    """The registry keeps part of a PATCH's body and drops the connection;
    its status says how much it holds. The upload goes on from there, in
    one more PATCH with the rest, read again from the source; nothing is
    sent from byte 0 again."""
    data = random.Random(6).randbytes(6 * MiB)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    stored = bytearray()
    loc = {"Location": "/v2/a/blobs/uploads/u1"}
    with HostileRegistry() as reg:

        def patch(peer: Peer, req: Request) -> bool:
            first = req.headers["content-range"].partition("-")[0]
            assert int(first) == len(stored), "a PATCH must start where the registry is"
            if not stored:
                stored.extend(req.body[: len(req.body) // 3])
                return False  # part of it kept, no answer: the connection closes
            stored.extend(req.body)
            return peer.send(answer(202, headers={**loc, "Range": f"0-{len(stored) - 1}"}))

        def status(peer: Peer, req: Request) -> bool:
            return peer.send(answer(204, headers={**loc, "Range": f"0-{len(stored) - 1}"}))

        def put(peer: Peer, req: Request) -> bool:
            ok = hashlib.sha256(stored).hexdigest() == dgst.split(":")[1]
            hdrs = {"Docker-Content-Digest": dgst}
            return peer.send(answer(201, headers=hdrs) if ok else answer(400))

        reg.on("HEAD", "/blobs/", lambda peer, req: peer.send(answer(404, head=True)))
        reg.on("POST", "/blobs/uploads/$", lambda peer, req: peer.send(answer(202, headers=loc)))
        reg.on("PATCH", "/blobs/uploads/u1$", patch)
        reg.on("GET", "/blobs/uploads/u1$", status)
        reg.on("PUT", "/blobs/uploads/u1", put)
        blob = tmp_path / "blob"
        blob.write_bytes(data)
        r = dist(tmp_path, "--timeout", "60s", "push-object", f"{reg.host}/a", str(blob))
        assert r.proc.returncode == 0, r.proc.stderr
        patches = reg.requests("PATCH")
    assert bytes(stored) == data
    assert [p.headers["content-range"] for p in patches] == [
        f"0-{len(data) - 1}",
        f"{len(data) // 3}-{len(data) - 1}",
    ]
    assert len(reg.requests("POST")) == 1  # the same session, not a new one


def test_a_streamed_body_is_sent_once() -> None:
    """A request sent again (a 401's retry) must not send what is left of a
    consumed stream under headers that announce all of it."""
    body = OneShot(iter([memoryview(b"abc")]))
    assert [bytes(x) for x in body] == [b"abc"]
    with pytest.raises(Aborted):
        iter(body)


@pytest.mark.parametrize("how", ["413", "drop"])
def test_a_registry_that_refuses_a_whole_blob_patch_gets_chunks(tmp_path: Path, how: str) -> None:
    """A registry (or the proxy in front of it) that takes no PATCH over
    4 MiB: it answers 413, or drops the connection having kept nothing (as
    nginx with client_max_body_size does while the body is still coming).
    The rest goes in 4 MiB PATCHes, on the same session, and the registry
    verifies every byte at the end."""
    limit = 4 * MiB
    data = random.Random(7).randbytes(9 * MiB + 5)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    stored = bytearray()
    loc = {"Location": "/v2/a/blobs/uploads/u1"}
    with HostileRegistry() as reg:

        def held() -> dict[str, str]:
            return {**loc, "Range": f"0-{max(len(stored) - 1, 0)}"}

        def patch(peer: Peer, req: Request) -> bool:
            first = int(req.headers["content-range"].partition("-")[0])
            assert first == len(stored), "a PATCH must start where the registry is"
            if len(req.body) > limit:
                if how == "drop":
                    return False
                return peer.send(answer(413, b"too large"))
            stored.extend(req.body)
            return peer.send(answer(202, headers=held()))

        def put(peer: Peer, req: Request) -> bool:
            ok = hashlib.sha256(stored).hexdigest() == dgst.split(":")[1]
            hdrs = {"Docker-Content-Digest": dgst}
            return peer.send(answer(201, headers=hdrs) if ok else answer(400))

        reg.on("HEAD", "/blobs/", lambda peer, req: peer.send(answer(404, head=True)))
        reg.on("POST", "/blobs/uploads/$", lambda peer, req: peer.send(answer(202, headers=loc)))
        reg.on("PATCH", "/blobs/uploads/u1$", patch)
        reg.on(
            "GET", "/blobs/uploads/u1$", lambda peer, req: peer.send(answer(204, headers=held()))
        )
        reg.on("PUT", "/blobs/uploads/u1", put)
        blob = tmp_path / "blob"
        blob.write_bytes(data)
        r = dist(tmp_path, "--timeout", "60s", "push-object", f"{reg.host}/a", str(blob))
        assert r.proc.returncode == 0, r.proc.stderr
        ranges = [p.headers["content-range"] for p in reg.requests("PATCH")]
    assert bytes(stored) == data
    n = len(data)
    assert ranges == [
        f"0-{n - 1}",
        f"0-{limit - 1}",
        f"{limit}-{2 * limit - 1}",
        f"{2 * limit}-{n - 1}",
    ]
    assert len(reg.requests("POST")) == 1


def test_a_dropped_whole_blob_patch_ends_in_a_verified_blob(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry
) -> None:
    """Against Distribution: the one PATCH for the whole blob is cut off
    before the registry sees it; the upload goes on in the same session
    (4 MiB PATCHes from the offset the registry reports) and the registry
    stores exactly the blob's bytes under its digest."""
    data = random.Random(8).randbytes(9 * MiB + 7)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    fault_proxy.add(Drop(before_headers=True), method="PATCH", path="/blobs/uploads/", times=1)
    r = dist(
        tmp_path, "--timeout", "60s", "push-object", f"{fault_proxy.host}/stream-drop", str(blob)
    )
    assert r.proc.returncode == 0, r.proc.stderr
    ranges = [e.header("Content-Range") for e in fault_proxy.log if e.method == "PATCH"]
    n = len(data)
    assert ranges[0] == f"0-{n - 1}"
    assert ranges[1:] == [f"0-{4 * MiB - 1}", f"{4 * MiB}-{8 * MiB - 1}", f"{8 * MiB}-{n - 1}"]
    posts = [e for e in fault_proxy.log if e.method == "POST"]
    assert len(posts) == 1  # the same session
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with urllib.request.urlopen(f"{registry.url}/v2/stream-drop/blobs/{dgst}") as resp:
        assert resp.read() == data


def test_a_registry_offset_past_what_was_sent_restarts_the_upload(tmp_path: Path) -> None:
    """The streamed PATCH breaks off after the registry read 1 MiB of it, and
    its status then claims all but the last byte of a 64 MiB blob: more than
    the client can have handed over (its pipe holds 8 MiB). Going on from
    there would skip bytes never sent, leaving only the registry's digest
    check between the client and a wrong blob; as the held-chunk path does
    (a claim past what was sent restarts), the upload starts again in a new
    session and the registry ends with exactly the blob."""
    data = random.Random(9).randbytes(64 * MiB)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    stored: dict[str, bytearray] = {}
    sessions: list[str] = []
    lied: list[int] = []
    starts: list[tuple[str, int]] = []

    def script(peer: Peer) -> None:
        while True:
            while b"\r\n\r\n" not in peer._buf:
                if not peer.alive or not peer._fill():
                    return
            raw, rest = peer._buf.split(b"\r\n\r\n", 1)
            head = raw.decode("latin-1")
            if head.startswith("PATCH "):
                # Bodies read here into a bytearray (Peer.request's bytes
                # concatenation is quadratic in a body this size).
                sid = head.split(" ", 2)[1].rsplit("/", 1)[-1]
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:])
                )
                length = int(fields["content-length"])
                start = int(fields["content-range"].partition("-")[0])
                starts.append((sid, start))
                first = sid == "u1" and not lied
                want = MiB if first else length  # the first: 1 MiB of it, then drop
                body, peer._buf = bytearray(rest), b""
                while len(body) < want:
                    try:
                        got = peer.sock.recv(1 << 20)
                    except OSError:
                        return
                    if not got:
                        return
                    body += got
                # Appends what comes, as a registry that does not check the
                # start against what it holds would.
                stored[sid] += body[:want]
                if first:
                    return
                peer._buf = bytes(body[want:])
                hdrs = {"Location": f"/v2/a/blobs/uploads/{sid}"}
                if not peer.send(
                    answer(202, headers={**hdrs, "Range": f"0-{len(stored[sid]) - 1}"})
                ):
                    return
                continue
            req = peer.request()
            if req is None:
                return
            sid = req.path.rsplit("/", 1)[-1]
            loc = {"Location": f"/v2/a/blobs/uploads/{sid}"}
            if req.method == "HEAD":
                ok = peer.send(answer(404, head=True))
            elif req.method == "POST":
                sid = f"u{len(sessions) + 1}"
                sessions.append(sid)
                stored[sid] = bytearray()
                ok = peer.send(answer(202, headers={"Location": f"/v2/a/blobs/uploads/{sid}"}))
            elif req.method == "GET" and sid in stored:
                held = len(stored[sid])
                if not lied:
                    lied.append(held)
                    held = len(data) - 1  # the lie: far past what was sent
                hdrs = {**loc, "Range": f"0-{max(held - 1, 0)}"}
                ok = peer.send(answer(204, headers=hdrs))
            elif req.method == "PUT":
                good = hashlib.sha256(stored[sid]).hexdigest() == dgst.split(":")[1]
                bad = b'{"errors":[{"code":"DIGEST_INVALID","message":"digest invalid"}]}'
                ok = peer.send(
                    answer(201, headers={"Docker-Content-Digest": dgst})
                    if good
                    else answer(400, bad, {"Content-Type": "application/json"})
                )
            else:
                ok = peer.send(answer(200, b"{}", {"Content-Type": "application/json"}))
            if not ok:
                return

    with HostileServer(script) as reg:
        blob = tmp_path / "blob"
        blob.write_bytes(data)
        r = dist(tmp_path, "--timeout", "60s", "push-object", f"{reg.host}/a", str(blob))
    assert lied, "the status GET was never asked"
    assert r.proc.returncode == 0, r.proc.stderr
    # No PATCH went on from an offset beyond the bytes the session was sent.
    assert ("u1", len(data) - 1) not in starts, starts
    assert bytes(stored[sessions[-1]]) == data


@pytest.mark.slow  # ~12 s: a stall well past FAILURE_GRACE
def test_a_failed_push_sends_nothing_more(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """A push that failed returns while other uploads still run (the
    scheduler waits FAILURE_GRACE for them). In a process that goes on after
    it (dist serve, a program using the client) they must not go on: here
    the registry refuses the config's PUT while it reads nothing of the
    layers' PATCHes for 8 s; once it reads again, the layers used to be sent
    whole and committed (PUT) after push() had raised. They stop at their
    next chunk instead."""
    img = large_image(tmp_path / "img", total_compressed=60 << 20, layers=2)
    push_image(registry, repo_name, "v1", img)
    assert img.config is not None
    config = img.config.digest
    layer_puts: list[str] = []
    sessions: list[str] = []

    def script(peer: Peer) -> None:
        while True:
            while b"\r\n\r\n" not in peer._buf:
                if not peer.alive or not peer._fill():
                    return
            raw, rest = peer._buf.split(b"\r\n\r\n", 1)
            head = raw.decode("latin-1")
            if head.startswith("PATCH "):
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:])
                }
                start = int(fields["content-range"].partition("-")[0])
                length = int(fields["content-length"])
                # Reads nothing for 8 s: well past the failure and
                # FAILURE_GRACE, even on a loaded machine.
                if peer.server.stopping.wait(8):
                    return
                body, peer._buf = bytearray(rest), b""
                while len(body) < length:
                    try:
                        got = peer.sock.recv(1 << 20)
                    except OSError:
                        return
                    if not got:
                        return  # the client gave up on it
                    body += got
                peer._buf = bytes(body[length:])
                loc = head.split(" ", 2)[1]
                hdrs = {"Location": loc, "Range": f"0-{start + length - 1}"}
                if not peer.send(answer(202, headers=hdrs)):
                    return
                continue
            req = peer.request()
            if req is None:
                return
            if req.method == "HEAD":
                ok = peer.send(answer(404, head=True))
            elif req.method == "POST":
                sessions.append(f"/v2/a/blobs/uploads/u{len(sessions)}")
                ok = peer.send(answer(202, headers={"Location": sessions[-1]}))
            elif req.method == "PUT" and config.replace(":", "%3A") in req.target:
                body = b'{"errors":[{"code":"DENIED","message":"no"}]}'
                ok = peer.send(answer(403, body, {"Content-Type": "application/json"}))
            elif req.method == "PUT":
                layer_puts.append(req.target)
                ok = peer.send(answer(201))
            else:
                ok = peer.send(answer(200, b"{}", {"Content-Type": "application/json"}))
            if not ok:
                return

    with Client(tmp_path / "root", concurrency=4) as client:
        name = client.pull(f"{registry.host}/{repo_name}:v1").name
        with HostileServer(script) as reg:
            with pytest.raises(RegistryError, match="denied"):
                client.push(name, f"{reg.host}/a:v1")
            failed = time.monotonic()
            while time.monotonic() - failed < 20 and any(
                t.name.startswith(("push-", "upload-stream")) for t in threading.enumerate()
            ):
                time.sleep(0.1)
            left = [t.name for t in threading.enumerate()]
            assert not [n for n in left if n.startswith(("push-", "upload-stream"))], left
    assert layer_puts == []
