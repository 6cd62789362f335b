"""`dist serve` driven by containerd's own `ctr` (a client we did not write),
with what ctr does checked through `dist` on the same root, with and
without --address."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dist_cli import json_doc, json_list, run_dist
from tests.harness import Registry, multiplatform_index, push_image, simple_image

CTR = shutil.which("ctr")
needs_ctr = pytest.mark.skipif(CTR is None, reason="ctr is not installed (run `make deps`)")


@dataclass
class Served:
    """A running `dist serve` process over ``root`` on the unix socket ``sock``."""

    root: Path
    sock: str
    proc: subprocess.Popen[bytes]

    def dist(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """`dist` through the daemon."""
        return run_dist("--address", self.sock, *args, input=input)

    def local(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """`dist` on the same root, without the daemon."""
        return run_dist("--root", str(self.root), *args, input=input)

    def ctr(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        assert CTR is not None
        return subprocess.run(
            [CTR, "--address", self.sock, *args],
            input=input,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def stop(self) -> int:
        """SIGTERM by PID; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def wait_connectable(sock: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"dist serve exited with {proc.returncode}: {err}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(sock)
                return
            except OSError:
                time.sleep(0.05)
    raise AssertionError(f"dist serve did not listen on {sock}")


def start_serve(root: Path, sock: str, *extra: str, env: dict[str, str] | None = None) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", str(root), "serve", "--address", sock, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_connectable(sock, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Served(root, sock, proc)


@pytest.fixture
def sockdir() -> Iterator[str]:
    # A unix socket path must fit in 107 bytes; pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="dserve-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(tmp_path: Path, sockdir: str) -> Iterator[Served]:
    # Unpack may write below tmp_path/unpack only (test_serve_safety.py).
    (tmp_path / "unpack").mkdir(mode=0o700)
    s = start_serve(
        tmp_path / "root",
        os.path.join(sockdir, "dist.sock"),
        "--unpack-root",
        str(tmp_path / "unpack"),
    )
    try:
        yield s
    finally:
        code = s.stop()
    assert code == 0
    assert not os.path.exists(s.sock), "the socket is removed on shutdown"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


# -- content -----------------------------------------------------------------------


@needs_ctr
def test_ctr_ingest_ls_get_and_dist_sees_it(served: Served) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several Write messages
    dgst = sha256(data)
    ok(
        served.ctr(
            "content",
            "ingest",
            "--expected-digest",
            dgst,
            "--expected-size",
            str(len(data)),
            "ctr-ingest-1",
            input=data,
        )
    )
    assert dgst in ok(served.ctr("content", "ls", "-q")).split()
    assert served.ctr("content", "get", dgst).stdout == data
    # The same blob through dist: the store on disk and through the daemon.
    assert dgst in ok(served.local("content", "ls"))
    listed = json_list(ok(served.dist("content", "ls", "--json")))
    assert [e["size"] for e in listed if e["digest"] == dgst] == [len(data)]
    assert served.dist("content", "get", dgst).stdout == data
    assert ok(served.local("content", "verify")) == ""


@needs_ctr
def test_ctr_reads_and_labels_what_dist_wrote(served: Served) -> None:
    data = b"written by dist\n" * 1000
    dgst = ok(served.dist("content", "ingest", "dist-key")).strip()
    assert dgst == sha256(b"")  # stdin was empty: an empty blob
    dgst = ok(served.dist("content", "ingest", "dist-key-2", input=data)).strip()
    assert dgst == sha256(data)
    assert served.ctr("content", "get", dgst).stdout == data
    ok(served.ctr("content", "label", dgst, "io.example/who=ctr"))
    info = [
        e for e in json_list(ok(served.local("content", "ls", "--json"))) if e["digest"] == dgst
    ]
    assert info[0]["labels"] == {"io.example/who": "ctr"}
    # A filter on the label, answered by the daemon.
    assert ok(served.ctr("content", "ls", "-q", 'labels."io.example/who"==ctr')).split() == [dgst]
    ok(served.ctr("content", "rm", dgst))
    assert dgst not in ok(served.local("content", "ls"))
    missing = served.ctr("content", "get", dgst)
    assert missing.returncode != 0 and b"not found" in missing.stderr


@needs_ctr
def test_ctr_ingest_rejects_a_wrong_digest(served: Served) -> None:
    data = b"some bytes"
    bad = sha256(b"other bytes")
    proc = served.ctr("content", "ingest", "--expected-digest", bad, "bad-ref", input=data)
    assert proc.returncode != 0
    assert b"mismatch" in proc.stderr
    assert bad not in ok(served.local("content", "ls"))
    assert sha256(data) not in ok(served.local("content", "ls"))


# -- fetch from a registry ---------------------------------------------------------


@needs_ctr
def test_ctr_content_fetch_lands_in_dist(
    served: Served, registry: Registry, repo_name: str
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    ok(served.ctr("content", "fetch", "--plain-http", ref))
    assert ok(served.ctr("images", "ls", "-q")).split() == [ref]

    for images in (served.local, served.dist):
        listed = json_list(ok(images("images", "ls", "--json")))
        assert [(i["name"], i["digest"]) for i in listed] == [(ref, img.digest)]
    stored = {e["digest"]: e for e in json_list(ok(served.local("content", "ls", "--json")))}
    want = {b.digest for b in img.objects()}
    assert want <= set(stored)
    # containerd's labels, written through our Update: gc refs on the
    # manifest, the distribution source on every blob.
    labels = stored[img.digest]["labels"]
    assert labels[f"containerd.io/distribution.source.{registry.host.split(':')[0]}"] == repo_name
    assert labels["containerd.io/gc.ref.content.config"] == img.config.digest  # type: ignore[union-attr]
    ok(served.local("content", "verify"))
    # Every blob is reachable from the name: nothing to prune, and the
    # lease ctr held while fetching is gone.
    assert json_doc(ok(served.local("content", "prune", "--json")))["blobs"] == []
    assert ok(served.ctr("leases", "ls", "-q")).split() == []


@needs_ctr
def test_ctr_fetch_all_platforms_of_an_index(
    served: Served, registry: Registry, repo_name: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "multi", idx)
    ref = f"{registry.host}/{repo_name}:multi"
    ok(served.ctr("content", "fetch", "--plain-http", "--all-platforms", ref))
    stored = {e["digest"] for e in json_list(ok(served.dist("content", "ls", "--json")))}
    assert {b.digest for b in idx.objects()} <= stored
    tree = json_doc(ok(served.local("images", "inspect", "--json", ref)))["tree"]
    assert tree["digest"] == idx.digest and len(tree["children"]) == len(idx.children)
    assert all(child["present"] for child in tree["children"])


@needs_ctr
def test_ctr_sees_what_dist_fetched_and_exports_it(
    served: Served, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    ok(served.dist("fetch", ref))
    out = ok(served.ctr("images", "ls"))
    assert ref in out and img.digest in out
    assert served.ctr("content", "get", img.digest).stdout == img.raw
    # `ctr images check` reads every blob's info: complete. (Its unpack
    # check needs the snapshots service, which dist serve does not offer.)
    assert "complete (4/4)" in served.ctr("images", "check").stdout.decode()
    archive = tmp_path / "export.tar"
    ok(served.ctr("images", "export", str(archive), ref))
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = set(tar.getnames())
    assert index["manifests"][0]["digest"] == img.digest
    assert {f"blobs/sha256/{b.digest.split(':')[1]}" for b in img.objects()} <= names


@needs_ctr
def test_ctr_image_names_tag_label_rm(served: Served, registry: Registry, repo_name: str) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    other = f"{registry.host}/{repo_name}:copy"
    ok(served.dist("fetch", ref))
    ok(served.ctr("images", "tag", ref, other))
    ok(served.ctr("images", "label", other, "io.example/x=1"))
    listed = {i["name"]: i for i in json_list(ok(served.local("images", "ls", "--json")))}
    assert listed[other]["digest"] == img.digest
    assert listed[other]["labels"] == {"io.example/x": "1"}
    assert ok(served.ctr("images", "ls", "-q", f"name=={other}")).split() == [other]
    assert ok(served.ctr("images", "ls", "-q", 'labels."io.example/x"==1')).split() == [other]
    again = served.ctr("images", "tag", ref, other)
    assert again.returncode != 0 and b"already exists" in again.stderr
    ok(served.ctr("images", "rm", other))
    assert [i["name"] for i in json_list(ok(served.dist("images", "ls", "--json")))] == [ref]


@needs_ctr
def test_ctr_commands_that_need_other_services_fail_cleanly(
    served: Served, registry: Registry, repo_name: str
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    # `ctr images pull` fetches (that part works) and then unpacks through
    # containerd's snapshotter and diff services, which dist serve lacks.
    pulled = served.ctr("images", "pull", "--plain-http", ref)
    assert pulled.returncode != 0 and b"not implemented" in pulled.stderr
    assert img.digest in ok(served.local("images", "ls"))
    for args in (("containers", "ls"), ("snapshots", "ls")):
        proc = served.ctr(*args)
        assert proc.returncode != 0 and b"not implemented" in proc.stderr, args
    version = served.ctr("version")
    assert b"ocidist" in version.stdout  # the Version service answers


# -- leases ---------------------------------------------------------------------------


@needs_ctr
def test_ctr_leases_create_ls_rm(served: Served) -> None:
    ok(served.ctr("leases", "create", "--id", "my-lease", "--expires", "1h"))
    listed = ok(served.ctr("leases", "ls"))
    assert "my-lease" in listed and "containerd.io/gc.expire" in listed
    dup = served.ctr("leases", "create", "--id", "my-lease")
    assert dup.returncode != 0 and b"already exists" in dup.stderr
    ok(served.ctr("leases", "rm", "my-lease"))
    assert ok(served.ctr("leases", "ls", "-q")).split() == []


@needs_ctr
def test_ctr_leases_belong_to_a_namespace(served: Served) -> None:
    ok(served.ctr("-n", "team-a", "leases", "create", "--id", "shared-id"))
    assert ok(served.ctr("-n", "team-a", "leases", "ls", "-q")).split() == ["shared-id"]
    assert ok(served.ctr("leases", "ls", "-q")).split() == []  # the default namespace
    ok(served.ctr("-n", "team-b", "leases", "create", "--id", "shared-id"))
    names = [line.split()[0] for line in ok(served.ctr("namespaces", "ls")).splitlines()[1:]]
    assert names == ["default", "team-a", "team-b"]
    assert ok(served.ctr("namespaces", "ls", "-q")).split() == names
    gone = served.ctr("-n", "team-c", "leases", "rm", "shared-id")
    assert gone.returncode != 0 and b"not found" in gone.stderr
    ok(served.ctr("-n", "team-a", "leases", "rm", "shared-id"))
    assert ok(served.ctr("-n", "team-b", "leases", "ls", "-q")).split() == ["shared-id"]
    made = served.ctr("namespaces", "create", "team-d")
    assert made.returncode != 0 and b"not implemented" in made.stderr
