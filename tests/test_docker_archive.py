"""`docker save` archives: `dist export --format docker` and `dist import`, checked
against skopeo's docker-archive transport in both directions and against the
structure `docker load` reads, with hand-made archives for the edge cases.
The real `docker load` and `docker save` (a private dockerd) are in
tests/test_docker_daemon.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.dist_cli import json_list, one_error_line
from tests.harness import (
    Registry,
    build_image,
    build_layer,
    multiplatform_index,
    run_skopeo,
    simple_image,
    write_layout,
)
from tests.harness.fstree import tree
from tests.test_layout import assert_store_verifies, dist, ok, pulled, store_digests


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_export_has_the_docker_save_structure(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    out = tmp_path / "saved.tar"
    ok(dist(root, "export", "--format", "docker", ref, str(out)))
    m = members(out)
    [entry] = json.loads(read_member(out, "manifest.json"))
    assert set(entry) == {"Config", "RepoTags", "Layers"}
    assert entry["RepoTags"] == [f"{registry.host}/{repo_name}:v1"]
    # The config is the stored one, named by its digest.
    assert image.config is not None
    config = read_member(out, entry["Config"])
    assert (
        entry["Config"] == image.config.digest[7:] + ".json" and sha(config) == image.config.digest
    )
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    assert len(entry["Layers"]) == len(diff_ids) == 3
    parent = None
    for path, diff_id in zip(entry["Layers"], diff_ids, strict=True):
        layer_id, leaf = path.split("/")
        assert leaf == "layer.tar" and m[layer_id].isdir()
        data = read_member(out, path)
        # Plain tars, as docker save writes them: their digest is the diff_id.
        assert sha(data) == diff_id and data[257:262] == b"ustar"
        assert read_member(out, f"{layer_id}/VERSION") == b"1.0"
        legacy = json.loads(read_member(out, f"{layer_id}/json"))
        assert legacy["id"] == layer_id and legacy.get("parent") == parent
        parent = layer_id
    assert json.loads(read_member(out, "repositories")) == {
        f"{registry.host}/{repo_name}": {"v1": parent}
    }
    # Deterministic: the same image saves to the same bytes.
    ok(dist(root, "export", "--format", "docker", ref, str(tmp_path / "again.tar")))
    assert (tmp_path / "again.tar").read_bytes() == out.read_bytes()


def test_skopeo_reads_our_docker_archive(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    out = tmp_path / "saved.tar"
    ok(dist(root, "export", "--format", "docker", ref, str(out)))
    info = json.loads(run_skopeo("inspect", f"docker-archive:{out}").stdout)
    assert image.config is not None
    config = json.loads(image.config.data or b"{}")
    assert info["Layers"] == config["rootfs"]["diff_ids"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    raw_config = run_skopeo("inspect", "--config", "--raw", f"docker-archive:{out}").stdout
    assert sha(raw_config) == image.config.digest
    # skopeo copies it on into an OCI layout; that unpacks like the original.
    layout = tmp_path / "layout"
    run_skopeo("copy", f"docker-archive:{out}", f"oci:{layout}:x")
    root2 = tmp_path / "root2"
    ok(dist(root2, "import", str(layout), "--name", "example.com/via-skopeo"))
    ok(dist(root, "unpack", ref, str(tmp_path / "a")))
    ok(dist(root2, "unpack", "example.com/via-skopeo:x", str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_import_skopeo_written_archive(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str, compress: bool
) -> None:
    image = simple_image(tag=repo_name)
    layout = write_layout(tmp_path / "src", image, "v1")
    saved = tmp_path / "skopeo.tar"
    run_skopeo("copy", f"oci:{layout}:v1", f"docker-archive:{saved}:example.com/team/app:2")
    if compress:  # `docker save | gzip`: docker load takes it, so do we
        saved.write_bytes(gzip.compress(saved.read_bytes()))
    root = tmp_path / "root"
    got = json_list(ok(dist(root, "--json", "import", str(saved))).stdout)
    [doc] = got
    assert doc["name"] == "example.com/team/app:2"
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert_store_verifies(root)
    # The config is the very same; the layers are skopeo's plain tars.
    assert image.config is not None
    assert image.config.digest in store_digests(root)
    ok(dist(root, "unpack", "example.com/team/app:2", str(tmp_path / "a")))
    ok(dist(root, "import", str(layout), "--name", "example.com/orig"))
    ok(dist(root, "unpack", "example.com/orig:v1", str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    # The same archive always makes the same manifest; prune keeps what names reach.
    again = json_list(ok(dist(root, "--json", "import", str(saved), "--name", "x.io/y")).stdout)
    assert again[0]["digest"] == doc["digest"] and again[0]["name"] == "x.io/y:2"
    before = store_digests(root)
    ok(dist(root, "content", "prune", "--force"))
    assert store_digests(root) == before


def test_round_trip_through_stdout_and_stdin(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, image)
    saved = ok(dist(root, "export", "--format", "docker", ref, "-")).stdout
    root2 = tmp_path / "root2"
    out = ok(dist(root2, "import", "-", input=saved))
    name, _ = out.stdout.decode().split()
    assert name == ref
    ok(dist(root, "unpack", ref, str(tmp_path / "a")))
    ok(dist(root2, "unpack", ref, str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_export_picks_one_platform_of_an_index(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    root, ref = pulled(tmp_path, registry, repo_name, idx, "--all-platforms")
    out = tmp_path / "arm.tar"
    ok(dist(root, "export", "--format", "docker", "--platform", "linux/arm/v7", ref, str(out)))
    [entry] = json.loads(read_member(out, "manifest.json"))
    assert idx.child("linux/arm/v7").config is not None
    assert entry["Config"] == idx.child("linux/arm/v7").config.digest[7:] + ".json"  # type: ignore[union-attr]


def _archive(tmp_path: Path, entries: dict[str, bytes], name: str = "hand.tar") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w") as tf:
        for member, data in entries.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _hand_made(layers: list[bytes], diff_ids: list[str], tags: list[str]) -> dict[str, bytes]:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    files = {f"{sha(config)[7:]}.json": config}
    paths = []
    for i, data in enumerate(layers):
        paths.append(f"l{i}/layer.tar")
        files[paths[-1]] = data
    manifest = [{"Config": f"{sha(config)[7:]}.json", "RepoTags": tags, "Layers": paths}]
    files["manifest.json"] = json.dumps(manifest).encode()
    return files


def test_gzip_layers_inside_an_archive_are_read(tmp_path: Path, repo_name: str) -> None:
    layer = build_layer({"hello": b"world\n"})
    assert layer.tar is not None
    files = _hand_made([gzip.compress(layer.tar, mtime=0)], [layer.diff_id], ["ex.io/gz:1"])
    root = tmp_path / "root"
    ok(dist(root, "import", str(_archive(tmp_path, files))))
    ok(dist(root, "unpack", "ex.io/gz:1", str(tmp_path / "rootfs")))
    assert (tmp_path / "rootfs/hello").read_bytes() == b"world\n"


def test_bad_archives_fail_cleanly_and_commit_nothing(tmp_path: Path) -> None:
    good = build_layer({"a": b"a\n"})
    other = build_layer({"b": b"b\n"})
    assert good.tar is not None and other.tar is not None
    cases = {
        # A layer whose bytes are not what the config's diff_id says.
        "tampered": _hand_made([other.tar], [good.diff_id], ["ex.io/bad:1"]),
        "missing-layer": {
            k: v for k, v in _hand_made([good.tar], [good.diff_id], ["ex.io/bad:1"]).items()
            if k != "l0/layer.tar"
        },
        "count": _hand_made([good.tar, other.tar], [good.diff_id], ["ex.io/bad:1"]),
        "manifest-not-json": {"manifest.json": b"[{"},
        "no-tags": _hand_made([good.tar], [good.diff_id], []),
    }  # fmt: skip
    for case, files in cases.items():
        root = tmp_path / f"root-{case}"
        proc = dist(root, "import", str(_archive(tmp_path, files, f"{case}.tar")))
        line = one_error_line(proc)
        assert proc.returncode in (1, 2), (case, line)
        assert (
            not (root / "metadata.db").exists()
            or "ex.io" not in ok(dist(root, "images", "ls")).stdout.decode()
        ), case
        # A layer that failed its check is never in the store.
        assert f"sha256:{hashlib.sha256(other.tar).hexdigest()}" not in store_digests(root), case
    notar = tmp_path / "notar"
    notar.write_bytes(b"\x00garbage" * 100)
    line = one_error_line(dist(tmp_path / "r", "import", str(notar)))
    assert "not a tar" in line or "not a readable tar" in line, line


def test_docker_25_archive_is_read_as_its_oci_layout(tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout with manifest.json beside it: the
    layout's own manifest (its digest) is what gets imported."""
    image = build_image([{"f": b"x\n"}])
    layout = write_layout(tmp_path / "layout", image, "1")
    files = {str(p.relative_to(layout)): p.read_bytes() for p in layout.rglob("*") if p.is_file()}
    assert image.config is not None
    files["manifest.json"] = json.dumps(
        [{
            "Config": f"blobs/sha256/{image.config.digest[7:]}",
            "RepoTags": ["ex.io/d25:1"],
            "Layers": [f"blobs/sha256/{layer.blob.digest[7:]}" for layer in image.layers],
        }]
    ).encode()  # fmt: skip
    root = tmp_path / "root"
    proc = dist(root, "--json", "import", str(_archive(tmp_path, files)), "--name", "ex.io/d25")
    [doc] = json_list(ok(proc).stdout)
    assert doc["name"] == "ex.io/d25:1" and doc["digest"] == image.digest
