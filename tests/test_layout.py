"""`dist export` / `dist import` of OCI image layouts, read and written by skopeo and umoci."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.digest import Digest
from ocidist.metadata import MetadataStore
from tests.dist_cli import json_list, one_error_line, run_dist
from tests.harness import (
    BuiltImage,
    Registry,
    docker_image,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
    write_layout,
)
from tests.harness.fstree import tree

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"


def dist(root: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_dist("--root", str(root), *args, input=input)


def ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def pulled(
    tmp_path: Path, registry: Registry, repo: str, image: BuiltImage, *flags: str
) -> tuple[Path, str]:
    push_image(registry, repo, "v1", image)
    ref = f"{registry.host}/{repo}:v1"
    root = tmp_path / "root"
    ok(dist(root, "pull", ref, *flags))
    return root, ref


def store_digests(root: Path) -> set[str]:
    d = root / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in d.iterdir()} if d.exists() else set()


def assert_store_verifies(root: Path) -> None:
    store = LocalStore(str(root))
    for dgst in store_digests(root):
        assert store.verify(Digest.parse(dgst)), dgst
    ok(dist(root, "content", "verify"))


def test_export_then_skopeo_pushes_identical_manifest(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str, umoci: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    layout = tmp_path / "layout"
    ok(dist(root, "export", ref, str(layout)))
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == image.digest and entry["size"] == image.size
    assert entry["annotations"] == {REF_NAME: "v1", IMAGE_NAME: ref}
    # Exactly the image's blobs, byte for byte.
    files = {f"sha256:{p.name}": p.read_bytes() for p in (layout / "blobs/sha256").iterdir()}
    assert set(files) == {b.digest for b in image.objects()}
    assert all("sha256:" + hashlib.sha256(data).hexdigest() == d for d, data in files.items())
    # umoci lists it by tag.
    out = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, check=True)
    assert out.stdout.decode().split() == ["v1"]
    # skopeo reads it by tag and pushes the very same manifest.
    target = f"{repo_name}/copy:v1"
    run_skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{registry.host}/{target}"
    )
    assert inspect_raw(registry, target) == image.raw


def test_export_index_all_platforms_to_skopeo(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, idx, "--all-platforms")
    layout = tmp_path / "layout"
    ok(dist(root, "export", ref, str(layout)))
    target = f"{repo_name}/copy:v1"
    run_skopeo(
        "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{layout}:v1", f"docker://{registry.host}/{target}",
    )  # fmt: skip
    assert inspect_raw(registry, target) == idx.raw
    for child in idx.children:
        assert inspect_raw(registry, f"{repo_name}/copy@{child.digest}") == child.raw


def test_export_one_platform_of_index(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    idx = multiplatform_index(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, idx, "--all-platforms")
    layout = tmp_path / "layout"
    ok(dist(root, "export", "--platform", "linux/arm/v7", ref, str(layout)))
    arm = idx.child("linux/arm/v7")
    names = {f"sha256:{p.name}" for p in (layout / "blobs/sha256").iterdir()}
    assert names == {idx.digest, arm.digest, *arm.blobs()}
    # Importing such a partial layout works and unpacks that platform offline.
    root2 = tmp_path / "root2"
    ok(dist(root2, "import", str(layout)))
    out = ok(dist(root2, "unpack", "--platform", "linux/arm/v7", ref, str(tmp_path / "rootfs")))
    assert (tmp_path / "rootfs/etc/platform").read_bytes() == b"linux/arm/v7\n", out.stderr


def test_skopeo_layout_imports(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    layout = tmp_path / "layout"
    run_skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/{repo_name}:v1",
               f"oci:{layout}:mytag")  # fmt: skip
    root = tmp_path / "root"
    # skopeo writes only the tag: a name needs a base.
    proc = dist(root, "import", str(layout))
    assert proc.returncode == 2 and "--name" in one_error_line(proc)
    assert store_digests(root) == set()
    out = ok(dist(root, "--json", "import", str(layout), "--name", "localhost:5000/imported"))
    [doc] = json_list(out.stdout)
    assert doc["name"] == "localhost:5000/imported:mytag" and doc["digest"] == image.digest
    listed = json_list(ok(dist(root, "--json", "images", "ls")).stdout)
    assert [(i["name"], i["digest"]) for i in listed] == [
        ("localhost:5000/imported:mytag", image.digest)
    ]
    assert listed[0]["platforms"] == ["linux/amd64"]
    assert store_digests(root) == {b.digest for b in image.objects()}
    assert_store_verifies(root)
    # gc labels let prune keep what the name reaches.
    ok(dist(root, "content", "prune", "--force"))
    assert store_digests(root) == {b.digest for b in image.objects()}


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_tar_export_round_trips(
    tmp_path: Path, registry: Registry, repo_name: str, fmt: str
) -> None:
    image = simple_image(tag=repo_name) if fmt == "oci" else docker_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    tar = tmp_path / "image.tar"
    ok(dist(root, "export", ref, str(tar)))
    with tarfile.open(tar) as tf:
        names = sorted(m.name for m in tf.getmembers() if m.isfile())
    want = sorted(
        ["oci-layout", "index.json", *(f"blobs/sha256/{b.digest[7:]}" for b in image.objects())]
    )
    assert names == want
    # Deterministic: the same image exports to the same bytes.
    ok(dist(root, "export", ref, str(tmp_path / "again.tar")))
    assert (tmp_path / "again.tar").read_bytes() == tar.read_bytes()
    root2 = tmp_path / "root2"
    out = ok(dist(root2, "import", str(tar)))
    assert out.stdout.decode().split() == [ref, image.digest]
    assert store_digests(root2) == store_digests(root)
    assert_store_verifies(root2)
    # What came in unpacks without any registry (same tree as from the origin store).
    ok(dist(root, "unpack", ref, str(tmp_path / "a")))
    ok(dist(root2, "unpack", ref, str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_export_to_stdout_import_from_stdin(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    tar = ok(dist(root, "export", ref, "-")).stdout
    root2 = tmp_path / "root2"
    ok(dist(root2, "import", "-", "--name", "example.com/piped", input=tar))
    with MetadataStore(str(root2 / "metadata.db")) as md:
        assert str(md.get_image("example.com/piped:v1").target.digest) == image.digest


def test_umoci_unpacks_our_export_like_dist(
    tmp_path: Path, registry: Registry, repo_name: str, umoci: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    layout = tmp_path / "layout"
    ok(dist(root, "export", ref, str(layout)))
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", str(bundle)], check=True,
                   capture_output=True)  # fmt: skip
    ok(dist(root, "unpack", ref, str(tmp_path / "ours")))
    assert tree(tmp_path / "ours") == tree(bundle / "rootfs")


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
@pytest.mark.parametrize("which", ["layer", "manifest"])
def test_corrupt_blob_refused_nothing_committed(
    tmp_path: Path, repo_name: str, as_tar: bool, which: str
) -> None:
    image = simple_image(tag=repo_name)
    layout = write_layout(tmp_path / "layout", image, "v1")
    victim = image.layers[1].blob.digest if which == "layer" else image.digest
    corrupt(layout / "blobs/sha256" / victim[7:])
    src = layout
    if as_tar:
        src = tmp_path / "layout.tar"
        with tarfile.open(src, "w") as tf:
            for p in sorted(layout.rglob("*")):
                tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    root = tmp_path / "root"
    proc = dist(root, "import", str(src), "--name", "localhost/x")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "digest mismatch" in line and victim in line, line
    assert store_digests(root) == set()
    assert LocalStore(str(root)).list_statuses() == []
    with MetadataStore(str(root / "metadata.db")) as md:
        assert md.list_images() == []


def test_import_bad_layouts(tmp_path: Path, repo_name: str) -> None:
    image = simple_image(tag=repo_name)
    root = tmp_path / "root"
    # A missing layer.
    layout = write_layout(tmp_path / "l1", image, "v1")
    (layout / "blobs/sha256" / image.layers[0].blob.digest[7:]).unlink()
    proc = dist(root, "import", str(layout), "--name", "localhost/x")
    assert proc.returncode == 1 and "missing" in one_error_line(proc)
    # Not a layout at all.
    (tmp_path / "empty").mkdir()
    proc = dist(root, "import", str(tmp_path / "empty"))
    assert proc.returncode == 1 and "not an OCI layout" in one_error_line(proc)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    proc = dist(root, "import", str(tmp_path / "junk.tar"))
    assert proc.returncode == 1 and "tar" in one_error_line(proc)
    proc = dist(root, "import", str(tmp_path / "absent.tar"))
    assert proc.returncode == 1 and "not found" in one_error_line(proc)
    assert store_digests(root) == set()


def test_export_errors(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    proc = dist(root, "export", "nope:1", str(tmp_path / "x"))
    assert proc.returncode == 1 and "not found" in one_error_line(proc)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    proc = dist(root, "export", ref, str(busy))
    assert proc.returncode == 2 and "not an OCI layout" in one_error_line(proc)
    # A blob gone from the store: refused, and no half layout left behind as a tar.
    LocalStore(str(root)).delete(Digest.parse(image.layers[0].blob.digest))
    proc = dist(root, "export", ref, str(tmp_path / "out.tar"))
    assert proc.returncode == 1 and "not in the store" in one_error_line(proc)
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
def test_export_refuses_a_corrupt_store_blob(
    tmp_path: Path, registry: Registry, repo_name: str, as_tar: bool
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    victim = image.layers[1].blob.digest
    corrupt(root / "blobs/sha256" / victim[7:])
    dest = tmp_path / ("out.tar" if as_tar else "out")
    proc = dist(root, "export", ref, str(dest))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "digest mismatch" in line and victim in line, line
    # Nothing was left: no tar, and no half-written layout directory (one the
    # export created goes whole; a later export would refuse a non-empty
    # directory that is not a layout).
    assert not dest.exists()
    LocalStore(str(root)).delete(Digest.parse(victim))
    ok(dist(root, "pull", ref))
    ok(dist(root, "export", ref, str(dest)))
    # Into a directory that was there and empty: emptied again on failure.
    if not as_tar:
        empty = tmp_path / "empty"
        empty.mkdir()
        corrupt(root / "blobs/sha256" / victim[7:])
        assert dist(root, "export", ref, str(empty)).returncode == 1
        assert list(empty.iterdir()) == []
