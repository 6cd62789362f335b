"""`dist unpack`: parity with umoci, diff_id checks, platforms, offline from the store."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.digest import Digest
from ocidist.errors import NotFound
from ocidist.metadata import MetadataStore
from ocidist.unpack import unpack_image
from tests.conftest import RegistryFactory
from tests.dist_cli import json_doc, one_error_line, run_dist
from tests.harness import (
    BuiltImage,
    Dir,
    FaultProxy,
    Fifo,
    File,
    Hardlink,
    Layer,
    LayerSpec,
    Opaque,
    Registry,
    Symlink,
    Whiteout,
    build_image,
    build_layer,
    multiplatform_index,
    push_image,
    simple_image,
    write_layout,
)
from tests.harness.fstree import tree

LAYERS: list[LayerSpec] = [
    [
        ("etc", Dir()),
        ("etc/passwd", File(b"root:x:0:0::/root:/bin/sh\n")),
        ("etc/shadow", File(b"root:*:1::::::\n", mode=0o600, gid=42)),
        ("usr", Dir()),
        ("usr/bin", Dir()),
        ("usr/bin/tool", File(b"#!/bin/sh\necho hi\n", mode=0o755)),
        ("usr/bin/tool2", Hardlink("usr/bin/tool")),
        ("bin", Symlink("usr/bin")),
        ("opt", Dir()),
        ("opt/app", Dir(mode=0o750)),
        ("opt/app/lower", b"lower"),
        ("opt/app/sub", Dir()),
        ("opt/app/sub/lower2", b"lower2"),
        ("var", Dir()),
        ("var/old", Dir()),
        ("var/old/file", b"old"),
        ("replace-me", b"a file first"),
        ("becomes-file", Dir()),
        ("becomes-file/child", b"c"),
        ("data", Dir()),
        ("data/keep", b"keep"),
        ("data/gone", b"gone"),
        ("run", Dir()),
        ("run/ctl", Fifo(mode=0o600)),
        ("tmp", Dir(mode=0o1777)),
    ],
    [
        # Opaque marker *after* this layer's own entry: "own" must survive.
        ("opt/app/own", b"own"),
        ("opt/app", Opaque()),
        ("var/old", Whiteout()),
        ("data/gone", Whiteout()),
        ("replace-me", Dir(mode=0o750)),
        ("replace-me/inside", b"inside"),
        ("becomes-file", File(b"now a file", mode=0o600)),
        ("etc/passwd", File(b"root:x:0:0::/root:/bin/bash\n")),
        ("etc/passwd-link", Hardlink("etc/passwd")),
    ],
    [
        # Opaque marker *before* this layer's own entries.
        ("usr", Opaque()),
        ("usr/bin", Dir()),
        ("usr/bin/new", File(b"new", mode=0o700, uid=1000, gid=1000)),
        ("etc/alt", Symlink("/etc/passwd")),
        ("bin/via-link", b"written through the bin symlink"),
        ("run/ctl", Whiteout()),
    ],
]


def umoci_unpack(umoci: str, image: BuiltImage, work: Path) -> Path:
    layout = write_layout(work / "layout", image, "t")
    bundle = work / "bundle"
    cmd = [umoci, "unpack", "--image", f"{layout}:t", str(bundle)]
    if os.geteuid() != 0:
        cmd.insert(2, "--rootless")
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return bundle / "rootfs"


def assert_same_tree(ours: Path, theirs: Path) -> None:
    mine, other = tree(ours), tree(theirs)
    assert sorted(mine) == sorted(other)
    for path in other:
        assert mine[path] == other[path], path


def unpack_cli(tmp_path: Path, ref: str, dest: Path, *extra: str) -> dict[str, object]:
    proc = run_dist("--root", str(tmp_path / "root"), "--json", "unpack", ref, str(dest), *extra)
    assert proc.returncode == 0, proc.stderr.decode()
    doc: dict[str, object] = json_doc(proc.stdout)
    return doc


def layers_of(compressions: Sequence[str], fmt: str = "oci") -> list[Layer]:
    return [
        build_layer(spec, fmt=fmt, compression=comp)  # type: ignore[arg-type]
        for spec, comp in zip(LAYERS, compressions, strict=True)
    ]


@pytest.mark.parametrize(
    ("fmt", "compressions"),
    [
        ("oci", ["gzip", "gzip", "gzip"]),
        ("oci", ["zstd", "none", "gzip"]),
        ("docker", ["gzip", "gzip", "gzip"]),
    ],
    ids=["oci-gzip", "oci-zstd-plain-gzip", "docker-schema2"],
)
def test_unpack_matches_umoci(
    tmp_path: Path,
    registry: Registry,
    repo_name: str,
    umoci: str,
    fmt: str,
    compressions: list[str],
) -> None:
    image = build_image(layers_of(compressions, fmt), fmt=fmt)  # type: ignore[arg-type]
    push_image(registry, repo_name, "v1", image)
    ours = tmp_path / "ours"
    doc = unpack_cli(tmp_path, f"{registry.host}/{repo_name}:v1", ours)
    assert doc["diffIDs"] == [layer.diff_id for layer in image.layers]
    assert doc["digest"] == image.digest and doc["fromStore"] is False
    assert isinstance(doc["downloadSeconds"], float) and isinstance(doc["applySeconds"], float)
    # umoci reads OCI layouts only: give it the same layers with OCI types
    # (the trees must not depend on media types or compression).
    reference = build_image(layers_of(["gzip"] * 3))
    theirs = umoci_unpack(umoci, reference, tmp_path / "umoci")
    assert_same_tree(ours, theirs)
    # The fixture exercises what it claims to.
    assert not (ours / "opt/app/lower").exists() and (ours / "opt/app/own").exists()
    assert not (ours / "usr/bin/tool").exists() and (ours / "usr/bin/new").exists()
    assert (ours / "usr/bin/via-link").read_bytes() == b"written through the bin symlink"
    assert (ours / "etc/passwd").stat().st_ino == (ours / "etc/passwd-link").stat().st_ino
    assert not (ours / "var/old").exists() and (ours / "data/keep").exists()
    assert (ours / "replace-me/inside").exists() and (ours / "becomes-file").is_file()
    assert not (ours / "run/ctl").exists() and os.readlink(ours / "etc/alt") == "/etc/passwd"


def test_unpack_simple_image_matches_umoci(
    tmp_path: Path, registry: Registry, repo_name: str, umoci: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    ours = tmp_path / "ours"
    unpack_cli(tmp_path, f"{registry.host}/{repo_name}:v1", ours)
    assert_same_tree(ours, umoci_unpack(umoci, image, tmp_path / "umoci"))


def wrong_diff_id_image(tag: str) -> BuiltImage:
    layers = [build_layer(spec) for spec in LAYERS]
    ids = [layer.diff_id for layer in layers]
    ids[1] = ids[2]  # the config lies about the middle layer
    return build_image(layers, config={"rootfs": {"type": "layers", "diff_ids": ids}})


@pytest.mark.parametrize("dest_exists", [False, True], ids=["new-dir", "empty-dir"])
def test_diff_id_mismatch_fails_and_claims_nothing(
    tmp_path: Path, registry: Registry, repo_name: str, dest_exists: bool
) -> None:
    image = wrong_diff_id_image(repo_name)
    push_image(registry, repo_name, "bad", image)
    ref = f"{registry.host}/{repo_name}:bad"
    dest = tmp_path / "dest"
    if dest_exists:
        dest.mkdir()
    root = tmp_path / "root"
    proc = run_dist("--root", str(root), "unpack", ref, str(dest))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "diff" in line and "digest mismatch" in line, line
    assert image.layers[1].blob.digest in line
    assert proc.stdout == b""
    # Nothing that looks like a finished tree, no name recorded.
    if dest_exists:
        assert list(dest.iterdir()) == []
    else:
        assert not dest.exists()
    with MetadataStore(str(root / "metadata.db")) as md:
        assert md.list_images() == []


def test_unpack_platform_of_index(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "multi", idx)
    ref = f"{registry.host}/{repo_name}:multi"
    dest = tmp_path / "arm64"
    doc = unpack_cli(tmp_path, ref, dest, "--platform", "linux/arm64")
    chosen = idx.child("linux/arm64/v8")
    assert doc["digest"] == idx.digest
    assert doc["manifest"]["digest"] == chosen.digest  # type: ignore[index]
    assert doc["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert (dest / "etc/platform").read_bytes() == b"linux/arm64/v8\n"
    # Only that platform's content came in.
    store = LocalStore(str(tmp_path / "root"))
    other = idx.child("linux/amd64")
    assert not any(store.exists(_dgst(d)) for d in (other.digest, other.layers[1].blob.digest))
    # A platform the index lacks.
    proc = run_dist("--root", str(tmp_path / "root"), "unpack", "--platform", "linux/s390x",
                    ref, str(tmp_path / "none"))  # fmt: skip
    assert proc.returncode == 1
    assert "no manifest for platform linux/s390x (the index has linux/amd64" in one_error_line(proc)
    assert not (tmp_path / "none").exists()


def test_layers_are_requested_while_the_config_is_coming(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """The config and the layers are all named by the manifest: the layers'
    requests go out without waiting for the config's answer (on a far link
    that answer is a round trip). The config's first GET is answered 503
    with Retry-After: 2; the layers are asked for before its second GET."""
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    assert img.config is not None
    config = img.config.digest
    fault_proxy.respond(503, f"/blobs/{config}", retry_after="2", method="GET")
    dest = tmp_path / "rootfs"
    unpack_cli(tmp_path, f"{fault_proxy.host}/{repo_name}:v1", dest)
    blobs = [e.path.rsplit("/", 1)[-1] for e in fault_proxy.log if "/blobs/sha256:" in e.path]
    layers = {layer.blob.digest for layer in img.layers}
    assert blobs.count(config) == 2, blobs
    second = blobs.index(config, blobs.index(config) + 1)
    assert layers <= set(blobs[:second]), blobs


def test_the_config_is_asked_for_before_the_layers(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """The config shares the layers' walk, and the applier waits for it
    before the first layer: with fewer slots than blobs it goes first, not
    behind every bigger layer (--concurrency 1: one blob at a time, in the
    walk's order; layers of random bytes, each bigger than the config)."""
    rnd = random.Random(5)
    img = build_image([[(f"f{i}", File(rnd.randbytes(8192)))] for i in range(3)])
    push_image(registry, repo_name, "v1", img)
    assert img.config is not None
    dest = tmp_path / "rootfs"
    proc = run_dist("--root", str(tmp_path / "root"), "unpack", "--concurrency", "1",
                    f"{fault_proxy.host}/{repo_name}:v1", str(dest))  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    blobs = [e.path.rsplit("/", 1)[-1] for e in fault_proxy.log if "/blobs/sha256:" in e.path]
    assert blobs[0] == img.config.digest, blobs


def test_big_layers_come_in_turns_in_the_order_they_are_applied(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """Layers fetched in ranges: two at a time, in manifest order, so the
    first ones arrive early and are applied while the rest come (started
    all at once they shared the link and all arrived at the end). The third
    layer's first request is sent only once the first layer's last range
    is in."""
    rnd = random.Random(11)
    specs: list[LayerSpec] = [[(f"f{i}", File(rnd.randbytes(1 << 20)))] for i in range(3)]
    img = build_image(specs)
    push_image(registry, repo_name, "v1", img)
    ranges = ("--range-threshold", "256KiB", "--range-size", "64KiB", "--max-ranges", "2")
    ref = f"{fault_proxy.host}/{repo_name}:v1"
    dest = tmp_path / "rootfs"
    proc = run_dist("--root", str(tmp_path / "root"), *ranges, "unpack", ref, str(dest))
    assert proc.returncode == 0, proc.stderr.decode()
    assert (dest / "f2").read_bytes() == specs[2][0][1].data  # type: ignore[union-attr]
    digests = [layer.blob.digest for layer in img.layers]
    seen = [e.path.rsplit("/", 1)[-1] for e in fault_proxy.log if "/blobs/sha256:" in e.path]
    first_of = {d: seen.index(d) for d in digests}
    last_of = {d: len(seen) - 1 - seen[::-1].index(d) for d in digests}
    assert seen.count(digests[0]) >= 16  # it did come in ranges
    assert first_of[digests[2]] > last_of[digests[0]], seen
    assert first_of[digests[1]] < last_of[digests[0]], seen  # two at a time


def test_a_failed_layer_is_the_error_while_the_config_is_still_coming(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """A layer the registry does not have (404) fails the layer walk while
    the config's answer is still to come (its first GET answered 503
    Retry-After: 3). The unpack's one error line is that layer's failure,
    not the "transfer stopped" that the walk's stop makes the config's
    transfer raise when it resumes."""
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    assert img.config is not None
    config = img.config.digest
    missing = img.layers[0].blob.digest
    fault_proxy.respond(503, f"/blobs/{config}", retry_after="3", method="GET")
    fault_proxy.respond(404, f"/blobs/{missing}", method="GET", times=None)
    dest = tmp_path / "rootfs"
    proc = run_dist(
        "--root", str(tmp_path / "root"), "unpack", f"{fault_proxy.host}/{repo_name}:v1", str(dest)
    )
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "transfer stopped" not in line, line
    assert missing in line, line


def _dgst(text: str) -> Digest:
    return Digest.parse(text)


def test_unpack_from_store_without_network(
    tmp_path: Path, fresh_registry: RegistryFactory, repo_name: str
) -> None:
    reg = fresh_registry()
    image = simple_image(tag=repo_name)
    push_image(reg, repo_name, "v1", image)
    ref = f"{reg.host}/{repo_name}:v1"
    root = tmp_path / "root"
    assert run_dist("--root", str(root), "pull", ref).returncode == 0
    reg.stop()
    doc = unpack_cli(tmp_path, ref, tmp_path / "a")
    assert doc["fromStore"] is True and doc["fetched"] == 0
    assert (tmp_path / "a/app/main.py").read_bytes() == f"print({repo_name!r})\n".encode()
    # Pinned by digest, also from the store alone.
    doc = unpack_cli(tmp_path, f"{reg.host}/{repo_name}@{image.digest}", tmp_path / "b")
    assert doc["fromStore"] is True
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    # Something never pulled does need the (stopped) registry.
    proc = run_dist("--root", str(root), "unpack", f"{reg.host}/{repo_name}:other",
                    str(tmp_path / "c"))  # fmt: skip
    assert proc.returncode == 1 and "connection refused" in one_error_line(proc)
    # The library with no resolver at all.
    with MetadataStore(str(root / "metadata.db")) as md:
        result = unpack_image(None, LocalStore(str(root)), md, ref, str(tmp_path / "d"))
        assert result.from_store and [str(d) for d in result.diff_ids] == [
            layer.diff_id for layer in image.layers
        ]
        with pytest.raises(NotFound):
            unpack_image(None, LocalStore(str(root)), md, "nothing:here", str(tmp_path / "e"))


def test_dest_must_be_empty_unless_force(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_bytes(b"keep me")
    proc = run_dist("--root", str(tmp_path / "root"), "unpack", ref, str(dest))
    assert proc.returncode == 2 and "not empty" in one_error_line(proc)
    assert sorted(p.name for p in dest.iterdir()) == ["mine"]
    unpack_cli(tmp_path, ref, dest, "--force")
    assert (dest / "mine").read_bytes() == b"keep me" and (dest / "app/main.py").exists()
    (tmp_path / "file").write_bytes(b"")
    proc = run_dist("--root", str(tmp_path / "root"), "unpack", ref, str(tmp_path / "file"))
    assert proc.returncode == 2 and "not a directory" in one_error_line(proc)


def test_unpack_bad_input(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    root = str(tmp_path / "root")
    proc = run_dist("--root", root, "unpack", "library/UPPER", str(tmp_path / "x"))
    assert proc.returncode == 2 and "invalid reference" in one_error_line(proc)
    proc = run_dist("--root", root, "unpack", f"{registry.host}/{repo_name}:missing",
                    str(tmp_path / "x"))  # fmt: skip
    assert proc.returncode == 1 and "not found" in one_error_line(proc)
    assert not (tmp_path / "x").exists()
    proc = run_dist("--root", root, "unpack", "--concurrency", "-1", "a", str(tmp_path / "x"))
    assert proc.returncode == 2


def test_small_layers_are_inflated_without_a_thread_of_their_own(
    tmp_path: Path, registry: Registry, repo_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer up to INLINE_LAYER (compressed) is inflated inline; a bigger
    one still by a decompression thread, which overlaps inflating and
    writing. Starting that thread (~0.4 ms) cost more than applying a small
    layer: 41 of them in the bench's many-small image."""
    import threading

    from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions
    from ocidist.unpack import INLINE_LAYER

    started: list[str] = []
    real = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    rnd = random.Random(3)
    big = File(rnd.randbytes(INLINE_LAYER + 4096))  # random bytes: gzip keeps the size
    img = build_image([[("small", File(b"tiny\n"))], [("big", big)]])
    push_image(registry, repo_name, "v1", img)
    dest = tmp_path / "d"
    ref = f"{registry.host}/{repo_name}:v1"
    unpack_image(DockerResolver(ResolverOptions()), LocalStore(str(tmp_path / "root")), None,
                 ref, str(dest))  # fmt: skip
    assert (dest / "small").read_bytes() == b"tiny\n"
    assert started.count("layer-decompress") == 1, started
