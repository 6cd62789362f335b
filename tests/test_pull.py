"""`dist fetch`/`pull` of whole images into a content store."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ocidist.content import ingest_key_for
from ocidist.content.local import LocalStore
from ocidist.descriptor import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.errors import NotFound
from ocidist.metadata import MetadataStore
from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    BuiltImage,
    FaultProxy,
    Registry,
    large_image,
    multiplatform_index,
    push_image,
    simple_image,
    tar_bytes,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blobs_in(root: Path) -> set[str]:
    d = root / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in d.iterdir()} if d.exists() else set()


def expected_objects(image: BuiltImage, platforms: list[str] | None) -> set[str]:
    """Digests a pull of ``image`` must store for ``platforms`` (None: all)."""
    out = {image.digest}
    kids = image.children if image.is_index else ()
    chosen = [c for c in kids if platforms is None or any(c == image.child(p) for p in platforms)]
    for img in chosen or ([] if image.is_index else [image]):
        out.add(img.digest)
        out.update(img.blobs())
    return out


def verify_store(root: Path) -> None:
    for dgst in blobs_in(root):
        data = (root / "blobs" / "sha256" / dgst.split(":")[1]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == dgst


def test_fetch_single_manifest_records_name(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    out = run_dist("--root", str(tmp_path), "fetch", ref)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == [ref, img.digest]
    assert blobs_in(tmp_path) == expected_objects(img, None)
    verify_store(tmp_path)
    meta = MetadataStore(str(tmp_path / "metadata.db"))
    assert str(meta.get_image(ref).target.digest) == img.digest
    meta.close()
    # A second fetch transfers nothing.
    out = run_dist("--root", str(tmp_path), "--json", "fetch", ref)
    done = json.loads(out.stdout.decode().splitlines()[-1])
    assert done["fetched"] == 0 and done["digest"] == img.digest


def test_fetch_asks_once_per_object(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    # The manifest is resolved with GET and its body reused by the walk: no
    # HEAD, and no second GET of the root by digest (one round trip less).
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    out = run_dist("--root", str(tmp_path), "fetch", f"{fault_proxy.host}/{repo_name}:v1")
    assert out.returncode == 0, out.stderr
    assert fault_proxy.count("HEAD", "/") == 0
    assert fault_proxy.count("GET", "/manifests/v1$") == 1
    assert fault_proxy.count("GET", "/manifests/sha256:") == 0
    blobs = img.blobs()
    assert len(blobs) >= 2
    for dgst in blobs:
        assert fault_proxy.count("GET", f"/blobs/{dgst}$") == 1, dgst
    assert blobs_in(tmp_path) == expected_objects(img, None)
    # `dist resolve` alone still asks with HEAD (Docker Hub does not count it).
    out = run_dist("resolve", f"{fault_proxy.host}/{repo_name}:v1")
    assert out.returncode == 0, out.stderr
    assert fault_proxy.count("HEAD", "/manifests/v1$") == 1


def test_resolve_body_dropped_is_asked_again(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    # fetch resolves with GET; a body that breaks off is fetched again whole
    # (twice here), never spliced with Range (a tag may have moved).
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    fault_proxy.drop("/manifests/v1$", after_bytes=50, times=2)
    out = run_dist("--root", str(tmp_path), "fetch", f"{fault_proxy.host}/{repo_name}:v1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split()[1] == img.digest
    assert fault_proxy.count("GET", "/manifests/v1$") == 3
    assert blobs_in(tmp_path) == expected_objects(img, None)
    verify_store(tmp_path)


def test_duplicate_children_fetched_once(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    # A manifest naming one layer 3 times, and an index naming that manifest
    # 50 times: the registry takes both; the walk asks for each object once.
    def push(obj: bytes, media_type: str, ref: str) -> None:
        path = tmp_path / "obj"
        path.write_bytes(obj)
        out = run_dist("push-object", "--media-type", media_type, ref, str(path))
        assert out.returncode == 0, out.stderr

    def desc(media_type: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    repo = f"{registry.host}/{repo_name}"
    layer = gzip.compress(tar_bytes({"a": b"x"}), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    child = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": desc(OCI_CONFIG, config),
                        "layers": [desc(OCI_LAYER_GZIP, layer)] * 3}).encode()  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [desc(OCI_MANIFEST, child)] * 50}).encode()  # fmt: skip
    push(layer, OCI_LAYER_GZIP, repo)
    push(config, OCI_CONFIG, repo)
    push(child, OCI_MANIFEST, f"{repo}@{sha(child)}")
    push(index, OCI_INDEX, f"{repo}:v1")
    out = run_dist(
        "--root", str(tmp_path / "root"), "fetch", "--all-platforms",
        f"{fault_proxy.host}/{repo_name}:v1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert fault_proxy.count("GET", f"/blobs/{sha(layer)}$") == 1
    assert fault_proxy.count("GET", f"/manifests/{sha(child)}$") == 1
    assert blobs_in(tmp_path / "root") == {sha(index), sha(child), sha(config), sha(layer)}


def test_platform_selection(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    idx = multiplatform_index()
    push_image(registry, repo_name, "multi", idx)
    ref = f"{registry.host}/{repo_name}:multi"
    cases: list[tuple[list[str], list[str] | None]] = [
        (["--platform", "linux/arm64"], ["linux/arm64/v8"]),
        (
            ["--platform", "linux/amd64", "--platform", "linux/arm/v7"],
            ["linux/amd64", "linux/arm/v7"],
        ),
        (["--all-platforms"], None),
    ]  # fmt: skip
    for i, (args, platforms) in enumerate(cases):
        root = tmp_path / f"root{i}"
        out = run_dist("--root", str(root), "pull", ref, *args)
        assert out.returncode == 0, out.stderr
        assert blobs_in(root) == expected_objects(idx, platforms), args
        verify_store(root)


def test_invalid_platform_and_conflicts(tmp_path: Path) -> None:
    out = run_dist("--root", str(tmp_path), "fetch", "example.com/a:b", "--platform", "linux")
    assert out.returncode == 2 and "platform" in one_error_line(out)
    out = run_dist(
        "--root", str(tmp_path), "fetch", "example.com/a:b", "--platform", "linux/amd64",
        "--all-platforms",
    )  # fmt: skip
    assert out.returncode == 2


def _held(root: Path, key: str) -> int:
    """Bytes the ingest ``key`` holds (0 before it starts, or once committed)."""
    try:
        return LocalStore(str(root)).status(key).offset
    except NotFound:
        return 0


def _big_image(tmp_path: Path, registry: Registry, repo: str) -> tuple[BuiltImage, str]:
    img = large_image(tmp_path / "img", total_compressed=8 << 20, layers=2)
    push_image(registry, repo, "big", img)
    biggest = max(img.blobs().values(), key=lambda b: b.size)
    return img, biggest.digest


def test_dropped_connection_resumes_and_counts_bytes(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img, big = _big_image(tmp_path, registry, repo_name)
    fault_proxy.drop(f"/blobs/{big}", after_bytes=2_000_000, times=2)
    root = tmp_path / "root"
    out = run_dist("--root", str(root), "fetch", f"{fault_proxy.host}/{repo_name}:big")
    assert out.returncode == 0, out.stderr
    assert blobs_in(root) == expected_objects(img, None)
    verify_store(root)
    size = img.blobs()[big].size
    sent = fault_proxy.bytes_sent[f"/v2/{repo_name}/blobs/{big}"]
    # Two drops after 2 MB each, then the rest: the total is the blob plus at
    # most what was in flight when the connections dropped, never a restart.
    assert size <= sent < size + 2 * (1 << 20)


def test_killed_pull_resumes_with_only_missing_bytes(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img, big = _big_image(tmp_path, registry, repo_name)
    size = img.blobs()[big].size
    root = tmp_path / "root"
    ref = f"{fault_proxy.host}/{repo_name}:big"
    # The big blob stalls after 3 MB: kill the process while it waits there.
    fault_proxy.stall(60, f"/blobs/{big}", after_bytes=3_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", str(root), "-q", "fetch", ref],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        # The stalled blob's own ingest, as the store reports it (no lock
        # taken): the other layer may pass the same size and be committed.
        key = ingest_key_for(Descriptor("", Digest.parse(big), size))
        while time.monotonic() < deadline and _held(root, key) < 2_000_000:
            time.sleep(0.1)
        assert _held(root, key) >= 2_000_000, "the pull never got into the big blob"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held_bytes = _held(root, key)
    assert big not in blobs_in(root)
    before = fault_proxy.bytes_sent[f"/v2/{repo_name}/blobs/{big}"]
    out = run_dist("--root", str(root), "fetch", ref)
    assert out.returncode == 0, out.stderr
    verify_store(root)
    assert blobs_in(root) == expected_objects(img, None)
    second = fault_proxy.bytes_sent[f"/v2/{repo_name}/blobs/{big}"] - before
    assert second == size - held_bytes
    ranged = [e for e in fault_proxy.log if big in e.path and e.header("Range")]
    assert ranged[-1].header("Range") == f"bytes={held_bytes}-"


def test_corrupt_byte_is_rejected_and_nothing_committed(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    layer = img.manifest["layers"][0]["digest"]
    fault_proxy.flip_byte(5, f"/blobs/{layer}", times=None)
    root = tmp_path / "root"
    out = run_dist("--root", str(root), "fetch", f"{fault_proxy.host}/{repo_name}:v1")
    assert out.returncode == 1
    assert "digest mismatch" in one_error_line(out)
    assert layer not in blobs_in(root)
    verify_store(root)
    meta = MetadataStore(str(root / "metadata.db"))
    assert meta.list_images() == []
    meta.close()
    # Once the fault is gone the same root completes.
    fault_proxy.clear()
    out = run_dist("--root", str(root), "fetch", f"{fault_proxy.host}/{repo_name}:v1")
    assert out.returncode == 0, out.stderr
    assert blobs_in(root) == expected_objects(img, None)


def test_concurrent_fetches_into_one_root(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    img, _ = _big_image(tmp_path, registry, repo_name)
    root = tmp_path / "root"
    ref = f"{registry.host}/{repo_name}:big"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ocidist", "--root", str(root), "-q", "fetch", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert blobs_in(root) == expected_objects(img, None)
    verify_store(root)
    store = LocalStore(str(root))
    assert store.list_statuses() == []
    for d in blobs_in(root):
        assert store.verify(Digest.parse(d))
    assert not os.access(root / "blobs" / "sha256" / img.digest.split(":")[1], os.W_OK) or (
        os.geteuid() == 0
    )
