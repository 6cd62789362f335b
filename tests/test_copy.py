"""`dist copy` between registry processes and between repositories of one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from ocidist.content.local import LocalStore
from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    FaultProxy,
    Registry,
    docker_image,
    inspect_digest,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
)

Fresh = Callable[..., Registry]


def test_copy_multiplatform_index_between_registries(
    tmp_path: Path, registry: Registry, fresh_registry: Fresh, repo_name: str
) -> None:
    idx = multiplatform_index(tag="copy-idx")
    push_image(registry, repo_name, "multi", idx)
    dst = fresh_registry()
    root = tmp_path / "root"
    out = run_dist("--root", str(root), "--json", "copy", f"{registry.host}/{repo_name}:multi",
                   f"{dst.host}/copied/multi:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    done = json.loads(out.stdout.decode().splitlines()[-1])
    assert done["digest"] == idx.digest
    assert inspect_digest(dst, "copied/multi:v1") == inspect_digest(
        registry, f"{repo_name}:multi"
    ) == idx.digest  # fmt: skip
    assert inspect_raw(dst, "copied/multi:v1") == idx.raw
    for child in idx.children:
        assert inspect_raw(dst, f"copied/multi@{child.digest}") == child.raw
    run_skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{dst.host}/copied/multi:v1",
               f"oci:{tmp_path / 'oci'}:x")  # fmt: skip
    # Streaming: nothing went through a local store.
    assert not (root / "blobs").exists()


def test_copy_docker_types_and_by_digest(
    registry: Registry, fresh_registry: Fresh, repo_name: str
) -> None:
    idx = multiplatform_index(fmt="docker", tag="copy-docker")
    img = docker_image(tag="copy-docker-single")
    push_image(registry, repo_name, "list", idx)
    push_image(registry, repo_name, "single", img)
    dst = fresh_registry()
    out = run_dist("copy", f"{registry.host}/{repo_name}@{idx.digest}", f"{dst.host}/d/list:v1")
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(dst, "d/list:v1") == idx.raw
    # A digest destination: stored by digest only.
    out = run_dist("copy", f"{registry.host}/{repo_name}:single", f"{dst.host}/d/one@{img.digest}")
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(dst, f"d/one@{img.digest}") == img.raw
    # No tag was made: Distribution 2.8 knows no tags for the repository at all.
    out = run_dist("tags", f"{dst.host}/d/one")
    assert out.returncode == 1 and "not found" in one_error_line(out)


def test_copy_one_platform_tags_its_manifest(
    registry: Registry, fresh_registry: Fresh, repo_name: str
) -> None:
    idx = multiplatform_index(tag="copy-plat")
    push_image(registry, repo_name, "multi", idx)
    dst = fresh_registry()
    out = run_dist("copy", "--platform", "linux/arm/v7", f"{registry.host}/{repo_name}:multi",
                   f"{dst.host}/p/arm:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    child = idx.child("linux/arm/v7")
    assert out.stdout.decode().split() == [f"{dst.host}/p/arm:v1", child.digest]
    assert inspect_raw(dst, "p/arm:v1") == child.raw
    # Blobs of other platforms did not travel.
    others = set().union(*(c.blobs() for c in idx.children if c is not child)) - set(child.blobs())
    for dgst in others:
        out = run_dist("fetch-object", f"{dst.host}/p/arm", dgst)
        assert out.returncode == 1
    out = run_dist("copy", "--platform", "linux/amd64", "--all-platforms", "a/b", "c/d")
    assert out.returncode == 2 and "exclude" in one_error_line(out)
    out = run_dist("copy", "--platform", "plan9/mips", f"{registry.host}/{repo_name}:multi",
                   f"{dst.host}/p/none:v1")  # fmt: skip
    assert out.returncode == 1 and "platform" in one_error_line(out)


def test_copy_within_registry_mounts(
    registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    img = simple_image(tag="copy-mount")
    push_image(registry, f"{repo_name}/src", "v1", img)
    out = run_dist("copy", f"{fault_proxy.host}/{repo_name}/src:v1",
                   f"{fault_proxy.host}/{repo_name}/dst:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    posts = [e for e in fault_proxy.log if e.method == "POST"]
    assert {parse_qs(e.query)["mount"][0] for e in posts} == set(img.blobs())
    assert all(parse_qs(e.query)["from"] == [f"{repo_name}/src"] for e in posts)
    assert not [e for e in fault_proxy.log if "/blobs/uploads/" in e.path and e.method != "POST"]
    # No blob bytes were read from the source either.
    assert not [e for e in fault_proxy.log if e.method == "GET" and "/blobs/" in e.path]
    assert inspect_raw(registry, f"{repo_name}/dst:v1") == img.raw


def test_copy_via_store_keeps_a_local_copy(
    tmp_path: Path, registry: Registry, fresh_registry: Fresh, repo_name: str
) -> None:
    img = simple_image(tag="copy-via-store")
    push_image(registry, repo_name, "v1", img)
    dst = fresh_registry()
    root = tmp_path / "root"
    out = run_dist("--root", str(root), "copy", "--via-store", f"{registry.host}/{repo_name}:v1",
                   f"{dst.host}/via/app:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(dst, "via/app:v1") == img.raw
    store = LocalStore(str(root))
    for dgst in [*img.blobs(), img.digest]:
        from ocidist.digest import Digest

        d = Digest.parse(dgst)
        assert store.verify(d)
        labels = store.info(d).labels
        assert labels[f"containerd.io/distribution.source.{registry.host}"] == repo_name


def test_copy_source_missing(registry: Registry, fresh_registry: Fresh, repo_name: str) -> None:
    dst = fresh_registry()
    out = run_dist("copy", f"{registry.host}/{repo_name}:nope", f"{dst.host}/x/y:v1")
    assert out.returncode == 1 and "not found" in one_error_line(out)
