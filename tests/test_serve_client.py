"""`dist serve` driven by our own client (`dist --address`, ocidist.api.client):
client mode, several clients at once, an interrupted Write resumed, leases
against prune, daemon-side pull/push/unpack, and address handling."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty

from ocidist.api import content_service, leases_service
from ocidist.api.client import Daemon
from ocidist.api.gen import content_pb2 as cpb
from ocidist.api.gen import leases_pb2 as lpb
from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tests.dist_cli import json_doc, json_list, one_error_line, run_dist
from tests.harness import Registry, push_image, simple_image
from tests.test_serve import CTR, Served, ok, served, sha256, sockdir, start_serve

__all__ = ["served", "sockdir"]  # fixtures shared with test_serve.py


@pytest.fixture
def daemon(served: Served) -> Iterator[Daemon]:
    d = Daemon(served.sock)
    yield d
    d.close()


# -- client mode ---------------------------------------------------------------------


def test_dist_fetch_through_the_daemon(served: Served, registry: Registry, repo_name: str) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    out = ok(served.dist("fetch", ref))
    assert out.split() == [ref, img.digest]
    # Written by the daemon into its root: visible without --address.
    listed = json_list(ok(served.local("images", "ls", "--json")))
    assert [(i["name"], i["digest"]) for i in listed] == [(ref, img.digest)]
    stored = {e["digest"] for e in json_list(ok(served.local("content", "ls", "--json")))}
    assert {b.digest for b in img.objects()} <= stored
    # DIST_ADDRESS is the same as --address; inspect reads the tree remotely.
    proc = run_dist("images", "inspect", "--json", ref, env={"DIST_ADDRESS": served.sock})
    tree = json_doc(ok(proc))["tree"]
    assert tree["digest"] == img.digest and all(c["present"] for c in tree["children"])
    # A second fetch finds everything present.
    again = served.dist("fetch", "--json", ref)
    assert json_doc(ok(again).splitlines()[-1])["fetched"] == 0
    ok(served.dist("content", "verify"))
    ok(served.dist("images", "rm", ref))
    assert json_list(ok(served.local("images", "ls", "--json"))) == []
    doomed = {b["digest"] for b in json_doc(ok(served.dist("content", "prune", "--json")))["blobs"]}
    assert doomed == {b.digest for b in img.objects()}


def test_dist_content_ingest_resumes_through_the_daemon(served: Served) -> None:
    data = os.urandom(2_500_000)
    dgst = sha256(data)
    args = ("content", "ingest", "--expected-digest", dgst, "--expected-size", str(len(data)))
    part = served.dist(*args, "resume-me", input=data[:1_000_000])
    assert part.returncode == 1 and "stream ended" in one_error_line(part)
    active = json_list(ok(served.dist("content", "active", "--json")))
    assert [(a["key"], a["offset"], a["total"]) for a in active] == [
        ("resume-me", 1_000_000, len(data))
    ]
    assert ok(served.dist(*args, "resume-me", input=data)).strip() == dgst
    assert served.local("content", "get", dgst).stdout == data
    assert json_list(ok(served.dist("content", "active", "--json"))) == []


def test_client_errors_are_one_line(served: Served) -> None:
    missing = "sha256:" + "0" * 64
    proc = served.dist("content", "get", missing)
    assert proc.returncode == 1
    assert one_error_line(proc) == f"dist: content {missing}: not found"
    proc = served.dist("images", "inspect", "no/such:image")
    assert proc.returncode == 1 and "not found" in one_error_line(proc)


def test_no_daemon_is_connection_refused(tmp_path: Path) -> None:
    proc = run_dist("--address", str(tmp_path / "nobody.sock"), "content", "ls")
    assert proc.returncode == 1
    assert "connection refused" in one_error_line(proc)


# -- several clients ------------------------------------------------------------------


def test_several_clients_write_and_read_at_once(served: Served) -> None:
    blobs = [os.urandom(1_200_000 + i) for i in range(12)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        d = Daemon(served.sock)
        try:
            store = d.store()
            data = blobs[i]
            dgst = Digest.parse(sha256(data))
            w = store.writer(f"many-{i}", total=len(data), expected=dgst)
            try:
                for off in range(0, len(data), 256 * 1024):
                    w.write(data[off : off + 256 * 1024])
                w.commit(len(data), dgst)
            finally:
                w.close()
            # Read back what the neighbours wrote, whenever they are done.
            for j in (i, (i + 1) % len(blobs)):
                want = Digest.parse(sha256(blobs[j]))
                deadline = time.monotonic() + 60
                while not store.exists(want):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                with store.reader(want) as f:
                    f.seek(1000)
                    assert f.read() == blobs[j][1000:]
        except BaseException as e:
            errors.append(e)
        finally:
            d.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(blobs))]
    extra = [os.urandom(700_000 + i) for i in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocidist",
                "--address",
                served.sock,
                "content",
                "ingest",
                f"proc-{i}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(len(extra))
    ]
    if CTR is not None:
        procs += [
            subprocess.Popen(
                [CTR, "--address", served.sock, "content", "ingest", f"ctr-{i}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(len(extra))
        ]
    for t in threads:
        t.start()
    for i, p in enumerate(procs):
        _, err = p.communicate(extra[i % len(extra)], timeout=120)
        assert p.returncode == 0, err.decode()
    for t in threads:
        t.join(120)
    assert not errors, errors
    stored = {
        e["digest"]: e["size"] for e in json_list(ok(served.local("content", "ls", "--json")))
    }
    for data in blobs + extra:
        assert stored[sha256(data)] == len(data)
    ok(served.local("content", "verify"))
    assert json_list(ok(served.dist("content", "active", "--json"))) == []


def test_one_writer_per_key(daemon: Daemon) -> None:
    store = daemon.store()
    data = b"x" * 100_000
    dgst = Digest.parse(sha256(data))
    first = store.writer("contended", total=len(data), expected=dgst)
    first.write(data[:50_000])
    with pytest.raises(FailedPrecondition, match="locked"):
        store.writer("contended", wait=False)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            store.writer("contended", total=len(data), expected=dgst).close()
        except BaseException as e:
            outcome.append(e)

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "the second writer waits for the first"
    first.write(data[50_000:])
    first.commit(len(data), dgst)
    waiter.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyExists)


# -- interrupted writes -------------------------------------------------------------

_HOLD_WRITER = r"""
import sys, time
from ocidist.api.client import Daemon
from ocidist.digest import Digest
sock, key, dgst, total, n = sys.argv[1:6]
w = Daemon(sock).store().writer(key, total=int(total), expected=Digest.parse(dgst))
data = sys.stdin.buffer.read()
for off in range(0, int(n), 1 << 20):
    w.write(data[off : min(off + (1 << 20), int(n))])
print(w.status().offset, flush=True)
time.sleep(600)
"""


def hold_writer(sock: str, key: str, data: bytes, upto: int) -> subprocess.Popen[bytes]:
    """A client process that writes ``upto`` bytes of ``data`` under ``key``
    and then sits on the open Write stream."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WRITER, sock, key, sha256(data), str(len(data)), str(upto)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.close()
    line = proc.stdout.readline()
    assert line.strip() == str(upto).encode(), proc.stderr.read() if proc.stderr else b""
    return proc


def wait_offset(key: str, want: int, daemon: Daemon) -> None:
    store = daemon.store()
    deadline = time.monotonic() + 30
    while True:
        try:
            # The key is free again once the daemon has seen the client go.
            w = store.writer(key, wait=False)
        except FailedPrecondition:
            assert time.monotonic() < deadline, "the daemon never let go of the ingest"
            time.sleep(0.05)
            continue
        assert w.status().offset == want
        w.close()
        return


def test_client_killed_mid_write_leaves_a_resumable_ingest(
    served: Served, daemon: Daemon, tmp_path: Path
) -> None:
    data = os.urandom(5 * (1 << 20) + 123)
    dgst = sha256(data)
    writer = hold_writer(served.sock, "killed-client", data, 3 << 20)
    writer.kill()  # SIGKILL: no goodbye on the stream
    writer.wait()
    wait_offset("killed-client", 3 << 20, daemon)
    status = daemon.store().status("killed-client")
    assert (status.offset, status.total, str(status.expected)) == (3 << 20, len(data), dgst)
    if CTR is not None:
        # containerd's client resumes it: it seeks its input past the bytes
        # the daemon says it holds (so stdin must be a file).
        src = tmp_path / "data"
        src.write_bytes(data)
        with open(src, "rb") as f:
            proc = subprocess.run(
                [
                    CTR,
                    "--address",
                    served.sock,
                    "content",
                    "ingest",
                    "--expected-digest",
                    dgst,
                    "--expected-size",
                    str(len(data)),
                    "killed-client",
                ],
                stdin=f,
                capture_output=True,
                timeout=120,
                check=False,
            )
        ok(proc)
    else:
        ok(served.dist("content", "ingest", "--expected-digest", dgst, "killed-client", input=data))
    assert served.local("content", "get", dgst).stdout == data
    with pytest.raises(NotFound):
        daemon.store().status("killed-client")


def test_sigterm_with_a_write_in_flight(tmp_path: Path, sockdir: str) -> None:
    sock = os.path.join(sockdir, "d.sock")
    s = start_serve(tmp_path / "root", sock)
    data = os.urandom(3 << 20)
    writer = hold_writer(sock, "in-flight", data, 2 << 20)
    try:
        started = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - started < 12  # the grace period, not forever
        assert not os.path.exists(sock)
    finally:
        writer.kill()
        writer.wait()
    listed = json_list(
        ok(run_dist("--root", str(tmp_path / "root"), "content", "active", "--json"))
    )
    assert [(a["key"], a["offset"]) for a in listed] == [("in-flight", 2 << 20)]
    # A new daemon on the same root and socket resumes it.
    s = start_serve(tmp_path / "root", sock)
    try:
        out = s.dist(
            "content", "ingest", "--expected-digest", sha256(data), "in-flight", input=data
        )
        assert ok(out).strip() == sha256(data)
    finally:
        assert s.stop() == 0


# -- leases ------------------------------------------------------------------------


def test_leases_protect_content_from_prune(served: Served, daemon: Daemon) -> None:
    held = b"held by a lease"
    by_header = b"written under a lease header"
    loose = b"nobody holds this"
    other_ns = b"held by a lease of another namespace"
    for i, data in enumerate((held, by_header, loose, other_ns)):
        ok(served.dist("content", "ingest", f"lease-{i}", input=data))
    svc = leases_service.SERVICE
    daemon.unary(svc, "Create", lpb.CreateRequest(id="keep"), lpb.CreateResponse)
    daemon.unary(
        svc,
        "AddResource",
        lpb.AddResourceRequest(id="keep", resource=lpb.Resource(id=sha256(held), type="content")),
        Empty,
    )
    # containerd clients name their lease in the `containerd-lease` header of
    # a Write; the content it commits joins that lease.
    daemon.unary(svc, "Create", lpb.CreateRequest(id="fetching"), lpb.CreateResponse)
    payload = b"written under a lease header, fresh"
    with grpc.insecure_channel(f"unix://{served.sock}") as ch:
        write = ch.stream_stream(
            f"/{content_service.SERVICE}/Write",
            request_serializer=cpb.WriteContentRequest.SerializeToString,
            response_deserializer=cpb.WriteContentResponse.FromString,
        )
        reqs = [
            cpb.WriteContentRequest(action=cpb.STAT, ref="leased-write"),
            cpb.WriteContentRequest(
                action=cpb.COMMIT, offset=0, data=payload, expected=sha256(payload)
            ),
        ]
        lease_md = (("containerd-lease", "fetching"),)
        # The lease is looked up in the call's namespace: none, none found.
        with pytest.raises(grpc.RpcError) as refused:
            list(write(iter(reqs), metadata=lease_md))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert "namespace is required" in (refused.value.details() or "")  # type: ignore[attr-defined]
        ns_md = (("containerd-namespace", "default"), *lease_md)
        answers = list(write(iter(reqs), metadata=ns_md))
    assert answers[-1].digest == sha256(payload)
    res = daemon.unary(
        svc, "ListResources", lpb.ListResourcesRequest(id="fetching"), lpb.ListResourcesResponse
    )
    assert [(r.id, r.type) for r in res.resources] == [(sha256(payload), "content")]
    # An expired lease protects nothing.
    daemon.unary(
        svc,
        "Create",
        lpb.CreateRequest(id="old", labels={"containerd.io/gc.expire": "2000-01-01T00:00:00Z"}),
        lpb.CreateResponse,
    )
    daemon.unary(
        svc,
        "AddResource",
        lpb.AddResourceRequest(id="old", resource=lpb.Resource(id=sha256(loose), type="content")),
        Empty,
    )

    # A lease of another namespace protects too (gc asks every namespace).
    other = (("containerd-namespace", "elsewhere"),)
    daemon.unary(svc, "Create", lpb.CreateRequest(id="keep"), lpb.CreateResponse, other)
    daemon.unary(
        svc,
        "AddResource",
        lpb.AddResourceRequest(
            id="keep", resource=lpb.Resource(id=sha256(other_ns), type="content")
        ),
        Empty,
        other,
    )

    def doomed(*via: str) -> set[str]:
        proc = run_dist(*via, "content", "prune", "--json")
        return {b["digest"] for b in json_doc(ok(proc))["blobs"]}

    want = {sha256(loose), sha256(by_header)}
    assert doomed("--root", str(served.root)) == want
    assert doomed("--address", served.sock) == want  # leases asked of the daemon
    ok(served.local("content", "prune", "--force"))
    left = {e["digest"] for e in json_list(ok(served.local("content", "ls", "--json")))}
    assert left == {sha256(held), sha256(payload), sha256(other_ns)}
    if CTR is not None:
        ok(served.ctr("leases", "rm", "keep", "fetching"))
    else:
        for lease in ("keep", "fetching"):
            daemon.unary(svc, "Delete", lpb.DeleteRequest(id=lease), Empty)
    assert doomed("--root", str(served.root)) == {sha256(held), sha256(payload)}
    daemon.unary(svc, "Delete", lpb.DeleteRequest(id="keep"), Empty, other)
    assert doomed("--address", served.sock) == {sha256(held), sha256(payload), sha256(other_ns)}


# -- daemon-side operations ----------------------------------------------------------


def test_daemon_pull_push_unpack(
    served: Served, daemon: Daemon, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    events = list(daemon.pull(ref))
    assert events[-1].event == "complete" and events[-1].name == ref
    assert events[-1].descriptor is not None and str(events[-1].descriptor.digest) == img.digest
    done = {str(e.descriptor.digest) for e in events if e.event == "done" and e.descriptor}
    assert {b.digest for b in img.objects()} <= done
    listed = json_list(ok(served.local("images", "ls", "--json")))
    assert [(i["name"], i["digest"]) for i in listed] == [(ref, img.digest)]

    copy_ref = f"{registry.host}/{repo_name}:pushed"
    events = list(daemon.push(ref, copy_ref))
    assert events[-1].event == "complete"
    assert json_doc(ok(run_dist("resolve", "--json", copy_ref)))["digest"] == img.digest

    dest = tmp_path / "unpack" / "rootfs"  # below the daemon's --unpack-root
    events = list(daemon.unpack(ref, str(dest)))
    assert events[-1].event == "complete"
    assert (dest / "etc" / "os-release").read_bytes().startswith(b"ID=ocidist-test")
    with pytest.raises(Exception, match="absolute"):
        list(daemon.unpack(ref, "relative/dir"))


def test_daemon_pull_of_a_missing_image_is_not_found(
    daemon: Daemon, registry: Registry, repo_name: str
) -> None:
    with pytest.raises(NotFound):
        list(daemon.pull(f"{registry.host}/{repo_name}:absent"))


def test_daemon_operation_failing_before_it_starts_ends_the_call(
    tmp_path: Path, sockdir: str
) -> None:
    """A Pull, Push or Unpack whose resolver cannot be made (a proxy variable
    the daemon cannot use) is that error, at once: the call waited forever on
    the events of a worker thread that had died before it could say so."""
    (tmp_path / "unpack").mkdir(mode=0o700)
    bad = {"HTTPS_PROXY": "ftp://proxy.invalid", "HTTP_PROXY": "ftp://proxy.invalid"}
    s = start_serve(
        tmp_path / "root",
        os.path.join(sockdir, "bad-proxy.sock"),
        "--unpack-root",
        str(tmp_path / "unpack"),
        env=bad,
    )
    d = Daemon(s.sock)
    calls = {
        "pull": lambda: list(d.pull("127.0.0.1:9/x/y:v1")),
        "push": lambda: list(d.push("127.0.0.1:9/x/y:v1", "127.0.0.1:9/x/z:v1")),
        "unpack": lambda: list(d.unpack("127.0.0.1:9/x/y:v1", str(tmp_path / "unpack" / "r"))),
    }
    try:
        for name, call in calls.items():
            outcome: list[BaseException] = []

            def run(
                call: Callable[[], object] = call, outcome: list[BaseException] = outcome
            ) -> None:
                try:
                    call()
                except BaseException as e:
                    outcome.append(e)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(60)  # well past what the answer takes (milliseconds)
            assert not t.is_alive(), f"{name}: the call hangs"
            assert len(outcome) == 1 and isinstance(outcome[0], InvalidArgument), (name, outcome)
            assert "only http:// proxies are supported" in str(outcome[0])
    finally:
        d.close()
        code = s.stop()
    assert code == 0
    assert s.proc.stderr is not None
    log = s.proc.stderr.read().decode()
    assert "Traceback" not in log, log


# -- addresses -----------------------------------------------------------------------


def test_second_daemon_on_the_same_socket_is_refused(served: Served) -> None:
    proc = run_dist("--root", str(served.root), "serve", "--address", f"unix://{served.sock}")
    assert proc.returncode == 1
    assert one_error_line(proc).endswith("address already in use")
    ok(served.dist("content", "ls"))  # the first one still serves


def test_stale_socket_file_is_replaced(tmp_path: Path, sockdir: str) -> None:
    sock = os.path.join(sockdir, "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(sock)  # bound, never listening: what a killed daemon leaves
    served = start_serve(tmp_path / "root", sock)
    try:
        ok(served.dist("content", "ls"))
    finally:
        assert served.stop() == 0


def test_tcp_loopback_and_port_in_use(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ocidist",
            "--root",
            str(tmp_path / "root"),
            "serve",
            "--address",
            "tcp://127.0.0.1:0",
            # Needed as root (test_serve_safety.py); harmless otherwise.
            "--unauthenticated-tcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        m = re.search(r"listening on (tcp://127\.0\.0\.1:(\d+))", line)
        assert m, line
        address = m.group(1)
        ok(run_dist("--address", address, "content", "ingest", "k", input=b"over tcp"))
        assert sha256(b"over tcp") in ok(run_dist("--address", address, "content", "ls"))
        second = run_dist(
            "--root",
            str(tmp_path / "other"),
            "serve",
            "--address",
            address,
            "--unauthenticated-tcp",
        )
        assert second.returncode == 1
        assert one_error_line(second).endswith("address already in use")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    "address",
    ["tcp://0.0.0.0:5000", "tcp://10.1.2.3:1", "http://x", "tcp://127.0.0.1", "unix://"],
)
def test_bad_addresses_are_usage_errors(tmp_path: Path, address: str) -> None:
    proc = run_dist("--root", str(tmp_path), "serve", "--address", address)
    assert proc.returncode == 2
    assert "invalid address" in one_error_line(proc)
