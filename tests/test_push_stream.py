"""A big blob's upload is streamed: one PATCH for the rest of the blob (no
round trip per chunk), fed as the copy reads, and a PATCH that breaks off is
resumed from the offset the registry reports, the copy reading the source
again from there (remotes/docker/uploadstream.py)."""

from __future__ import annotations

import hashlib
import random
import urllib.request
from pathlib import Path

import pytest

from ocidist.remotes.docker.uploadstream import Aborted, OneShot
from tests.harness import FaultProxy, Registry
from tests.harness.faultrules import Drop
from tests.harness.hostile import HostileRegistry, Peer, Request, answer
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
