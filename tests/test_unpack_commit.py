"""`dist unpack` commits an image's index and manifest in another thread
while their children's requests are out (images.handlers' commit_behind;
issue 20: each commit's fsyncs were on the critical path of a far
registry's chain of round trips). What that must not change: a commit that
fails fails the unpack, in one line, and no name is recorded for content
that is not in the store; a manifest is still checked against its digest
before anything it names is asked for."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.digest import Digest
from ocidist.errors import DistError, InvalidContent
from ocidist.images.handlers import FetchHandler
from ocidist.images.platforms import default_matcher
from ocidist.images.walk import platform_children
from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions
from ocidist.unpack import unpack_image
from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    Blob,
    BuiltImage,
    FaultProxy,
    Registry,
    http_push,
    multiplatform_index,
    push_image,
    simple_image,
)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Nothing can be added to ``path`` (root included): ext4's immutable flag."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_index_that_cannot_be_committed_fails_the_unpack(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """Everything but the index and its manifests is in the store already;
    then no blob can be added. The index's commit (in the committer
    thread) fails: the unpack says so and exits non-zero, DIR is not left
    behind, no name is recorded."""
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    assert run_dist("--root", str(root), "pull", "--all-platforms", ref).returncode == 0
    graph = [idx.digest, *(m.digest for m in idx.children)]
    assert run_dist("--root", str(root), "images", "rm", ref).returncode == 0
    assert run_dist("--root", str(root), "content", "rm", *graph).returncode == 0
    dest = tmp_path / "rootfs"
    with immutable(root / "blobs" / "sha256"):
        proc = run_dist("--root", str(root), "unpack", ref, str(dest))
    assert proc.returncode == 1, proc.stderr.decode()
    line = one_error_line(proc)
    assert line == f"dist: commit {idx.digest}: operation not permitted", line
    assert not dest.exists()
    listed = run_dist("--root", str(root), "images", "ls", "-q")
    assert listed.returncode == 0 and repo_name not in listed.stdout.decode()


@pytest.mark.parametrize("command", ["unpack", "pull"])
def test_a_manifest_that_is_not_its_digest_is_refused_before_it_is_read(
    command: str, tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """The platform manifest comes with one byte changed (in a digest it
    names, which makes the JSON invalid UTF-8): the unpack fails on its
    digest, checked before the bytes are parsed (the tree before parsed
    them first and failed on the JSON), and no blob is asked for."""
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    amd64 = next(m for m in idx.children if (m.platform or {}).get("architecture") == "amd64")
    offset = amd64.raw.index(b'"digest"') + len(b'"digest": "sha256:') + 3
    fault_proxy.flip_byte(offset, f"/manifests/{amd64.digest}", times=None)
    dest = tmp_path / "rootfs"
    args = [command, f"{fault_proxy.host}/{repo_name}:v1"] + (
        [str(dest)] if command == "unpack" else []
    )
    proc = run_dist("--root", str(tmp_path / "root"), *args)
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "digest mismatch" in line and amd64.digest in line, line
    assert not [e.path for e in fault_proxy.log if "/blobs/" in e.path]
    assert not dest.exists()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _artifact(repo: str) -> BuiltImage:
    """A manifest whose config is no image config (a signature, an SBOM):
    unpack refuses it as soon as it has read the manifest."""
    config = Blob.of("application/vnd.example.sbom.v1+json", json.dumps({"r": repo}).encode())
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
           "layers": []}  # fmt: skip
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return BuiltImage(OCI_MANIFEST, raw, None, config, ())


def _files(root: Path) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, n), root): os.stat(os.path.join(d, n)).st_size
        for d, _, names in os.walk(root)
        for n in names
    }


def test_a_failed_unpack_leaves_no_commit_running(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """When unpack_image has raised, nothing of it still writes into the
    store (scheduler.py's promise for a process that goes on: `dist serve`,
    a program using the client): the manifest it fetched and verified is
    committed by then, and the store does not change after."""
    art = _artifact(repo_name)
    http_push(registry, repo_name, "a", art)
    root = tmp_path / "root"
    store = LocalStore(str(root))
    with pytest.raises(InvalidContent, match="not a container image"):
        unpack_image(
            DockerResolver(ResolverOptions()),
            store,
            None,
            f"{registry.host}/{repo_name}:a",
            str(tmp_path / "dest"),
        )
    assert store.exists(Digest.parse(art.digest))
    seen = _files(root)
    time.sleep(0.3)
    assert _files(root) == seen


def test_dist_unpack_that_fails_leaves_no_half_commit(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """`dist` exits with os._exit right after its error line: a commit
    still running then is cut short (a .put- file left in ingest, which
    nothing removes, or a blob without its labels). The manifest fetched is
    in the store, labelled, and ingest holds no temporary file."""
    art = _artifact(repo_name)
    http_push(registry, repo_name, "a", art)
    root = tmp_path / "root"
    for attempt in range(3):
        proc = run_dist("--root", str(root), "unpack", f"{registry.host}/{repo_name}:a",
                        str(tmp_path / f"dest{attempt}"))  # fmt: skip
        assert proc.returncode == 1
        assert "not a container image" in one_error_line(proc)
        ingest = root / "ingest"
        left = [n for n in os.listdir(ingest) if n.startswith(".put-")] if ingest.exists() else []
        assert left == []
        store = LocalStore(str(root))
        dgst = Digest.parse(art.digest)
        assert store.exists(dgst)
        assert store.info(dgst).labels, "the manifest's source label"


def test_held_after_a_failed_commit_raises_that_failure(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """fetch_parts reads the manifest with ``held``, the walk having
    handed its commit to the committer. Where that commit has failed by
    then (the store cannot take it: its ingest directory is a file, so
    "not a directory", for root too), ``held`` found no bytes held and
    read the store: NotFound, where the error is the commit's (fetch_parts
    calls settle only after held; which of the two threads comes first is
    a race, here settled by waiting for the committer)."""
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    root = tmp_path / "root"
    root.mkdir()
    (root / "ingest").write_bytes(b"")
    ref = f"{registry.host}/{repo_name}:v1"
    resolver = DockerResolver(ResolverOptions())
    _, desc = resolver.resolve(ref)
    handler = FetchHandler(
        LocalStore(str(root)), resolver.fetcher(ref), platform_children(default_matcher(), 1),
        commit_behind=True,
    )  # fmt: skip
    handler(desc)
    with pytest.raises(DistError, match="not a directory"):
        handler.settle()  # the commit has failed: the race's outcome, for sure
    time.sleep(0.2)  # and the committer has let its bytes go
    with pytest.raises(DistError, match="not a directory"):
        handler.held(desc)


def test_a_manifest_commit_that_fails_is_the_error(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """The store cannot take the index nor the manifest (its ingest directory is a file:
    every commit fails with "not a directory", for root too). The unpack's
    error is that failure, not "not found" from reading back a manifest
    whose commit had failed already."""
    img = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    root = tmp_path / "root"
    root.mkdir()
    (root / "ingest").write_bytes(b"")
    for attempt in range(5):
        proc = run_dist("--root", str(root), "unpack", f"{registry.host}/{repo_name}:v1",
                        str(tmp_path / f"dest{attempt}"), "--platform", "linux/arm64")  # fmt: skip
        assert proc.returncode == 1
        line = one_error_line(proc)
        assert "not a directory" in line, line


def test_the_commits_are_made_in_the_walk_when_no_thread_can_start(
    tmp_path: Path, registry: Registry, repo_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "can't start new thread" for the committer: the index and manifest
    are committed in the walk's own thread, as without commit_behind, and
    the unpack succeeds (a refused thread is no failure: the scheduler's
    rule too)."""
    real = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == "commit":
            raise RuntimeError("can't start new thread")
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    img = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    store = LocalStore(str(tmp_path / "root"))
    dest = tmp_path / "dest"
    ref = f"{registry.host}/{repo_name}:v1"
    unpack_image(DockerResolver(ResolverOptions()), store, None, ref, str(dest))
    assert store.exists(Digest.parse(img.digest))
    assert (dest / "etc" / "platform").exists()
