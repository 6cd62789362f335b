"""What containerd's clients rely on beyond the happy path, checked with our
own raw gRPC calls: the error codes of a failed commit and the ingest it
leaves, a locked ref, cancelled streams in the daemon's log, and leases of
a version without namespaces. (containerd's own suite runs in
test_serve_containerd.py.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ocidist.api import content_service
from ocidist.api.client import Daemon
from ocidist.api.gen import content_pb2 as cpb
from ocidist.digest import Digest
from ocidist.errors import DigestMismatch
from ocidist.leases import LeaseStore, Resource
from tests.test_serve import Served, sha256, sockdir, start_serve

__all__ = ["sockdir"]

WRITE = f"/{content_service.SERVICE}/Write"
READ = f"/{content_service.SERVICE}/Read"
NS = (("containerd-namespace", "default"),)


@pytest.fixture
def daemon_proc(tmp_path: Path, sockdir: str) -> Iterator[Served]:
    s = start_serve(tmp_path / "root", os.path.join(sockdir, "dist.sock"))
    try:
        yield s
    finally:
        s.stop()


def _write_call(ch: grpc.Channel) -> grpc.StreamStreamMultiCallable:
    return ch.stream_stream(
        WRITE,
        request_serializer=cpb.WriteContentRequest.SerializeToString,
        response_deserializer=cpb.WriteContentResponse.FromString,
    )


def _stderr_after_stop(s: Served) -> str:
    assert s.stop() == 0
    assert s.proc.stderr is not None
    return s.proc.stderr.read().decode()


def test_a_wrong_commit_is_failed_precondition_and_keeps_the_ingest(daemon_proc: Served) -> None:
    data = b"the bytes that were written"
    wrong = sha256(b"some other bytes")
    with grpc.insecure_channel(f"unix://{daemon_proc.sock}") as ch:
        reqs = [
            cpb.WriteContentRequest(action=cpb.STAT, ref="wrong"),
            cpb.WriteContentRequest(action=cpb.WRITE, offset=0, data=data),
            cpb.WriteContentRequest(action=cpb.COMMIT, offset=len(data), expected=wrong),
        ]
        with pytest.raises(grpc.RpcError) as err:
            list(_write_call(ch)(iter(reqs), metadata=NS))
        # containerd's errdefs has no DATA_LOSS: its clients would see "unknown".
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    # The ingest stays, as containerd leaves it: a next writer finds the bytes.
    d = Daemon(daemon_proc.sock)
    try:
        store = d.store()
        assert store.status("wrong").offset == len(data)
        # Our own client keeps the exact error class (a trailer names it).
        w = store.writer("wrong")
        with pytest.raises(DigestMismatch):
            w.commit(len(data), Digest.parse(wrong))
        w = store.writer("wrong")
        with pytest.raises(DigestMismatch, match="size"):
            w.commit(len(data) + 1, Digest.parse(sha256(data)))
        w = store.writer("wrong")
        w.commit(len(data), Digest.parse(sha256(data)))
        assert store.exists(Digest.parse(sha256(data)))
        assert store.list_statuses() == []
    finally:
        d.close()


def test_a_held_ref_is_unavailable_after_a_short_wait(daemon_proc: Served) -> None:
    with grpc.insecure_channel(f"unix://{daemon_proc.sock}") as ch:
        holder_reqs: list[cpb.WriteContentRequest] = [
            cpb.WriteContentRequest(action=cpb.STAT, ref="held")
        ]
        import queue

        q: queue.Queue[cpb.WriteContentRequest | None] = queue.Queue()
        for r in holder_reqs:
            q.put(r)
        holder = _write_call(ch)(iter(q.get, None), metadata=NS)
        assert next(holder).action == cpb.STAT  # the daemon holds the ref now
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            list(
                _write_call(ch)(
                    iter([cpb.WriteContentRequest(action=cpb.STAT, ref="held")]), metadata=NS
                )
            )
        waited = time.monotonic() - started
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        # It tried again for a while (containerd: ~0.5 s), and gave up.
        assert 0.2 <= waited < 10
        q.put(None)
        list(holder)
        # Let go: the next writer gets it at once.
        again = list(
            _write_call(ch)(
                iter([cpb.WriteContentRequest(action=cpb.STAT, ref="held")]), metadata=NS
            )
        )
        assert again[0].action == cpb.STAT


_DROPPER = textwrap.dedent(
    """
    import queue, sys, grpc
    from ocidist.api.gen import content_pb2 as cpb
    ch = grpc.insecure_channel("unix://" + sys.argv[1])
    call = ch.stream_stream(
        "/containerd.services.content.v1.Content/Write",
        request_serializer=cpb.WriteContentRequest.SerializeToString,
        response_deserializer=cpb.WriteContentResponse.FromString,
    )
    q = queue.Queue()
    q.put(cpb.WriteContentRequest(action=cpb.STAT, ref="dropped"))
    answers = call(iter(q.get, None), metadata=(("containerd-namespace", "default"),))
    next(answers)
    q.put(cpb.WriteContentRequest(action=cpb.WRITE, offset=0, data=b"x" * 1000))
    assert next(answers).offset == 1000  # the daemon holds the bytes now
    sys.stdout.write("written\\n")
    sys.stdout.flush()
    sys.stdin.read()  # until killed, the stream open
    """
)


def test_cancelled_and_dropped_streams_are_logged_as_cancelled(daemon_proc: Served) -> None:
    big = os.urandom(8 << 20)
    d = Daemon(daemon_proc.sock)
    try:
        w = d.store().writer("big", total=len(big))
        w.write(big)
        w.commit(len(big), Digest.parse(sha256(big)))
    finally:
        d.close()
    with grpc.insecure_channel(f"unix://{daemon_proc.sock}") as ch:
        # A Write stream the client cancels halfway.
        import queue

        q: queue.Queue[cpb.WriteContentRequest | None] = queue.Queue()
        q.put(cpb.WriteContentRequest(action=cpb.STAT, ref="cancelled"))
        write = _write_call(ch)(iter(q.get, None), metadata=NS)
        next(write)
        q.put(cpb.WriteContentRequest(action=cpb.WRITE, offset=0, data=b"partial"))
        next(write)
        write.cancel()  # type: ignore[attr-defined]
        # A Read stream cancelled after its first chunk.
        read = ch.unary_stream(
            READ,
            request_serializer=cpb.ReadContentRequest.SerializeToString,
            response_deserializer=cpb.ReadContentResponse.FromString,
        )(cpb.ReadContentRequest(digest=sha256(big)), metadata=NS)
        next(read)
        read.cancel()  # type: ignore[attr-defined]
    # A client process that dies with a Write stream open.
    dropper = subprocess.Popen(
        [sys.executable, "-c", _DROPPER, daemon_proc.sock],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert dropper.stdout is not None
    assert dropper.stdout.readline() == b"written\n"
    dropper.kill()
    dropper.wait()
    # The daemon let go of both ingests, keeping their bytes for a resume.
    d = Daemon(daemon_proc.sock)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                for key in ("cancelled", "dropped"):
                    d.store().writer(key, wait=False).close()
                break
            except Exception:
                assert time.monotonic() < deadline, "the ingests stayed locked"
                time.sleep(0.05)
        held = {s.key: s.offset for s in d.store().list_statuses()}
        assert held == {"cancelled": len(b"partial"), "dropped": 1000}
    finally:
        d.close()
    log = _stderr_after_stop(daemon_proc)
    assert "Traceback" not in log and "internal error" not in log, log
    assert "Exception" not in log, log
    assert "Content.Write: cancelled by the client" in log, log
    assert "Content.Read: cancelled by the client" in log, log


def test_leases_of_a_version_without_namespaces_move_to_default(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE leases (id TEXT PRIMARY KEY, created_at REAL NOT NULL,
                             labels_json TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE lease_resources (lease TEXT NOT NULL REFERENCES leases(id)
                             ON DELETE CASCADE, type TEXT NOT NULL, id TEXT NOT NULL,
                             PRIMARY KEY (lease, type, id));
        """
    )
    dgst = sha256(b"kept by an old lease")
    db.execute("INSERT INTO leases VALUES ('old', 1.5, '{\"a\": \"b\"}')")
    db.execute("INSERT INTO lease_resources VALUES ('old', 'content', ?)", (dgst,))
    db.commit()
    db.close()
    store = LeaseStore(str(path))
    try:
        leases = store.list_leases("default")
        assert [(x.id, x.created_at, dict(x.labels)) for x in leases] == [("old", 1.5, {"a": "b"})]
        assert store.resources("default", "old") == [Resource(dgst, "content")]
        assert store.protected() == {Digest.parse(dgst)}
        assert store.list_leases("other") == []
    finally:
        store.close()
    # Opened again: nothing left to move, nothing lost.
    store = LeaseStore(str(path))
    try:
        assert [x.id for x in store.list_leases("default")] == ["old"]
    finally:
        store.close()
