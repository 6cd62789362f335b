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
from google.protobuf.message import Message

from ocidist.api import content_service
from ocidist.api.client import Daemon
from ocidist.api.gen import content_pb2 as cpb
from ocidist.api.gen import descriptor_pb2 as dpb
from ocidist.api.gen import images_pb2 as ipb
from ocidist.digest import Digest
from ocidist.errors import DigestMismatch
from ocidist.leases import LeaseStore, Resource
from tests.test_serve import Served, sha256, sockdir, start_serve

__all__ = ["sockdir"]

WRITE = f"/{content_service.SERVICE}/Write"
READ = f"/{content_service.SERVICE}/Read"
IMAGES = "images.v1.Images"
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


def _code(call: object) -> grpc.StatusCode:
    """The status a raw call ends with (OK when it does not fail)."""
    try:
        answer = call() if callable(call) else call
        if not isinstance(answer, Message):
            list(answer)  # type: ignore[call-overload]
    except grpc.RpcError as e:
        return e.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_error_codes_are_containerds_own(daemon_proc: Served) -> None:
    """The code containerd's own server answers for each refusal (its
    contentserver and metadata stores), so a client that checks codes, not
    just errdefs classes, sees the same: a read past the end or a write at
    the wrong offset is OUT_OF_RANGE; an image label over 4096 bytes or an
    image target of size 0 is INVALID_ARGUMENT."""
    data = b"twelve bytes"
    dgst = sha256(data)
    big = {"k": "v" * 4096}
    target = dpb.Descriptor(media_type="application/vnd.oci.image.manifest.v1+json", digest=dgst)
    with grpc.insecure_channel(f"unix://{daemon_proc.sock}") as ch:

        def unary(service: str, method: str, req: Message, resp: type[Message]) -> object:
            return lambda: ch.unary_unary(
                f"/containerd.services.{service}/{method}",
                request_serializer=type(req).SerializeToString,
                response_deserializer=resp.FromString,
            )(req, metadata=NS)

        def write(*reqs: cpb.WriteContentRequest) -> object:
            return lambda: _write_call(ch)(iter(reqs), metadata=NS)

        def image(method: str, name: str, size: int, labels: dict[str, str]) -> object:
            t = dpb.Descriptor()
            t.CopyFrom(target)
            t.size = size
            img = ipb.Image(name=name, target=t, labels=labels)
            if method == "Create":
                return unary(
                    IMAGES, method, ipb.CreateImageRequest(image=img), ipb.CreateImageResponse
                )
            return unary(IMAGES, method, ipb.UpdateImageRequest(image=img), ipb.UpdateImageResponse)

        commit = cpb.WriteContentRequest(
            action=cpb.COMMIT, ref="x", data=data, total=len(data), expected=dgst
        )
        assert _code(write(commit)) == grpc.StatusCode.OK
        read = ch.unary_stream(
            READ,
            request_serializer=cpb.ReadContentRequest.SerializeToString,
            response_deserializer=cpb.ReadContentResponse.FromString,
        )
        past_end = cpb.ReadContentRequest(digest=dgst, offset=100)
        stat = cpb.WriteContentRequest(action=cpb.STAT, ref="y")
        wrong_offset = cpb.WriteContentRequest(action=cpb.WRITE, offset=7, data=b"x")
        invalid, ok = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK
        cases = {
            "read past the end": (
                lambda: read(past_end, metadata=NS),
                grpc.StatusCode.OUT_OF_RANGE,
            ),
            "write at the wrong offset": (write(stat, wrong_offset), grpc.StatusCode.OUT_OF_RANGE),
            "image with a big label": (image("Create", "a", 12, big), invalid),
            "image of size 0": (image("Create", "b", 0, {}), invalid),
            "image created": (image("Create", "c", 12, {}), ok),
            "image given a big label": (image("Update", "c", 13, big), invalid),
            "image given size 0": (image("Update", "c", 0, {}), invalid),
        }
        got = {what: _code(call) for what, (call, _) in cases.items()}
        assert got == {what: code for what, (_, code) in cases.items()}
        # A refused update changed nothing (not the target before the labels).
        get = ch.unary_unary(
            f"/containerd.services.{IMAGES}/Get",
            request_serializer=ipb.GetImageRequest.SerializeToString,
            response_deserializer=ipb.GetImageResponse.FromString,
        )
        assert get(ipb.GetImageRequest(name="c"), metadata=NS).image.target.size == 12
    # None of it is a bug of the daemon's.
    log = _stderr_after_stop(daemon_proc)
    assert "Traceback" not in log and "internal error" not in log, log


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


# A client that takes nothing it did not ask for: no window beyond a byte
# (no BDP growth), so an answer it does not read waits in the daemon's send.
#
# Why the tests below cancel a stream only then: grpc (Python) tells a
# handler of a cancel or a dropped connection in two steps, "no more
# requests" and then "cancelled". A handler waiting for its next request
# can see the first alone and end as after an ordinary end of the stream
# (a Write without a commit: nothing to say), before grpc marks the call
# cancelled -- under load it did (both Write lines missing from the log).
# The daemon cannot tell the two apart then; no public grpc API does. A
# handler waiting in a send is told by the send failing, with the call
# cancelled, which is the case these tests pin: the daemon logs it.
TIGHT = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1))

_DROPPER = textwrap.dedent(
    """
    import queue, sys, grpc
    from ocidist.api.gen import content_pb2 as cpb
    TIGHT = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1))
    ch = grpc.insecure_channel("unix://" + sys.argv[1], options=TIGHT)
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
    # One more, its answer not read: the daemon waits in its send.
    q.put(cpb.WriteContentRequest(action=cpb.WRITE, offset=1000, data=b"x"))
    sys.stdout.write("written\\n")
    sys.stdout.flush()
    sys.stdin.read()  # until killed, the stream open
    """
)


def _offset_reaches(d: Daemon, key: str, offset: int) -> None:
    """Wait until the daemon has written ``key`` up to ``offset`` (it then
    answers, and waits in that send: the client reads no more)."""
    deadline = time.monotonic() + 60
    while d.store().status(key).offset < offset:
        assert time.monotonic() < deadline, f"{key}: the daemon never took the write"
        time.sleep(0.02)


def test_cancelled_and_dropped_streams_are_logged_as_cancelled(daemon_proc: Served) -> None:
    big = os.urandom(8 << 20)
    d = Daemon(daemon_proc.sock)
    try:
        w = d.store().writer("big", total=len(big))
        w.write(big)
        w.commit(len(big), Digest.parse(sha256(big)))
        with grpc.insecure_channel(f"unix://{daemon_proc.sock}", options=TIGHT) as ch:
            # A Write stream the client cancels halfway.
            import queue

            q: queue.Queue[cpb.WriteContentRequest | None] = queue.Queue()
            q.put(cpb.WriteContentRequest(action=cpb.STAT, ref="cancelled"))
            write = _write_call(ch)(iter(q.get, None), metadata=NS)
            next(write)
            q.put(cpb.WriteContentRequest(action=cpb.WRITE, offset=0, data=b"partial"))
            next(write)
            q.put(cpb.WriteContentRequest(action=cpb.WRITE, offset=7, data=b"!"))
            _offset_reaches(d, "cancelled", len(b"partial!"))
            write.cancel()  # type: ignore[attr-defined]
            # A Read stream cancelled after its first chunk (the next waits to be sent).
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
        _offset_reaches(d, "dropped", 1001)
        dropper.kill()
        dropper.wait()
        # The daemon let go of both ingests, keeping their bytes for a resume.
        deadline = time.monotonic() + 60
        while True:
            try:
                for key in ("cancelled", "dropped"):
                    d.store().writer(key, wait=False).close()
                break
            except Exception:
                assert time.monotonic() < deadline, "the ingests stayed locked"
                time.sleep(0.05)
        held = {s.key: s.offset for s in d.store().list_statuses()}
        assert held == {"cancelled": len(b"partial!"), "dropped": 1001}
    finally:
        d.close()
    log = _stderr_after_stop(daemon_proc)
    assert "Traceback" not in log and "internal error" not in log, log
    assert "Exception" not in log, log
    # Each of the three, said once: the cancelled and the dropped Write, the Read.
    assert log.count("Content.Write: cancelled by the client") == 2, log
    assert log.count("Content.Read: cancelled by the client") == 1, log


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
