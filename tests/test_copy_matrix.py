"""`dist copy` between every pair of transports, and a corrupt source for each.

Each pair copies the same image and is read back: the config's exact bytes
everywhere, the manifest's exact bytes wherever neither side is a
docker-archive (which keeps no manifest), and otherwise the unpacked tree.
A source with one flipped byte in a layer stops every copy with a digest
mismatch, and leaves no destination at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_cli import one_error_line
from tests.harness import Registry, inspect_raw, push_image, simple_image
from tests.harness.fstree import tree
from tests.test_layout import dist, ok

KINDS = ["registry", "oci", "oci-archive", "docker-archive", "store"]
PAIRS = [(s, d) for s in KINDS for d in KINDS if not s == d == "registry"]


def where(kind: str, tmp_path: Path, registry: Registry, repo: str, name: str) -> str:
    ref = f"{registry.host}/{repo}/{name}:1"
    return {
        "registry": ref,
        "oci": f"oci:{tmp_path / name}:1",
        "oci-archive": f"oci-archive:{tmp_path / name}.tar:1",
        "docker-archive": f"docker-archive:{tmp_path / name}.tar:{ref}",
        "store": f"store:{ref}",
    }[kind]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS, ids=[f"{s}-to-{d}" for s, d in PAIRS])
def test_every_pair_copies_the_image(
    tmp_path: Path, registry: Registry, repo_name: str, src_kind: str, dst_kind: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    origin = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    src = origin
    if src_kind != "registry":
        src = where(src_kind, tmp_path, registry, repo_name, "src")
        ok(dist(root, "copy", origin, src))
    dst = where(dst_kind, tmp_path, registry, repo_name, "dst")
    ok(dist(root, "copy", src, dst))
    config = ok(dist(root, "inspect", "--config", origin)).stdout
    assert ok(dist(root, "inspect", "--config", dst)).stdout == config
    if "docker-archive" not in (src_kind, dst_kind):
        assert ok(dist(root, "inspect", "--raw", dst)).stdout == image.raw
        if dst_kind == "registry":
            assert inspect_raw(registry, f"{repo_name}/dst:1") == image.raw
        return
    # Through a docker-archive the manifest is made anew: compare the trees.
    check = f"{registry.host}/{repo_name}/check:1"
    if dst_kind != "store":
        ok(dist(root, "copy", dst, f"store:{check}"))
    else:
        check = dst.removeprefix("store:")
    ok(dist(root, "unpack", check, str(tmp_path / "copied")))
    ok(dist(tmp_path / "fresh", "unpack", origin, str(tmp_path / "original")))
    assert tree(tmp_path / "copied") == tree(tmp_path / "original")


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dst_kind", ["registry", "oci", "oci-archive", "docker-archive", "store"])
@pytest.mark.parametrize("src_kind", ["oci", "oci-archive", "docker-archive", "store"])
def test_a_corrupt_source_leaves_no_destination(
    tmp_path: Path, registry: Registry, repo_name: str, src_kind: str, dst_kind: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    root = tmp_path / "root"
    src = where(src_kind, tmp_path, registry, repo_name, "src")
    ok(dist(tmp_path / "maker", "copy", f"{registry.host}/{repo_name}:v1", src))
    layer = image.layers[1].blob
    if src_kind == "oci":
        _flip(tmp_path / "src" / "blobs" / "sha256" / layer.digest[7:], layer.size // 2)
    elif src_kind == "store":
        root = tmp_path / "maker"
        _flip(root / "blobs" / "sha256" / layer.digest[7:], layer.size // 2)
    else:
        # The layer's bytes inside the tar: find them, flip one.
        archive = tmp_path / "src.tar"
        data = archive.read_bytes()
        plain = layer.read()
        if src_kind == "docker-archive":  # the layer is stored uncompressed there
            import gzip

            plain = gzip.decompress(plain)
        at = data.find(plain)
        assert at > 0
        _flip(archive, at + len(plain) // 2)
    dst = where(dst_kind, tmp_path, registry, repo_name, "dst")
    proc = dist(root, "copy", src, dst)
    assert proc.returncode == 1, proc.stderr
    assert "digest mismatch" in one_error_line(proc)
    assert not (tmp_path / "dst").exists() and not (tmp_path / "dst.tar").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".ocidist", ".tmp-"))]
    if dst_kind == "registry":
        gone = dist(root, "inspect", dst)
        assert gone.returncode == 1 and "not found" in one_error_line(gone)
    if dst_kind == "store":
        listed = ok(dist(root, "images", "ls")).stdout.decode()
        assert f"{repo_name}/dst" not in listed
